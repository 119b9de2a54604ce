package auth

import (
	"bytes"
	"errors"
	"testing"

	"mellium.im/sasl"
)

func TestNewCredentials(t *testing.T) {
	s1, s256, err := NewCredentials("pencil", 4096)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    scramHash
		salt []byte
		iter int
		sk   []byte
	}{{"SHA-1", scramSHA1, s1.Salt, s1.Iterations, s1.StoredKey}, {"SHA-256", scramSHA256, s256.Salt, s256.Iterations, s256.StoredKey}} {
		if len(c.salt) != 16 || c.iter != 4096 {
			t.Errorf("%s: salt of %d bytes, %d iterations", c.name, len(c.salt), c.iter)
		}
		// The stored key matches the password and nothing else.
		want, err := deriveCredential(c.h, "pencil", c.salt, c.iter)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want.StoredKey, c.sk) {
			t.Errorf("%s: StoredKey does not match the password", c.name)
		}
	}
	if !scramSHA1.usable(s1) || !scramSHA256.usable(s256) {
		t.Fatalf("credentials not complete: %+v %+v", s1, s256)
	}
	if bytes.Equal(s1.Salt, s256.Salt) {
		t.Error("SHA-1 and SHA-256 credentials share a salt")
	}
	again, _, err := NewCredentials("pencil", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again.Salt, s1.Salt) || bytes.Equal(again.StoredKey, s1.StoredKey) {
		t.Error("two calls produced the same salt")
	}
}

func TestNewCredentialsErrors(t *testing.T) {
	for _, pw := range []string{"", "pass\u0007word", "\x00", "\xff"} {
		if _, _, err := NewCredentials(pw, 4096); !errors.Is(err, ErrInvalidPassword) {
			t.Errorf("NewCredentials(%q): %v, want ErrInvalidPassword", pw, err)
		}
	}
	for _, n := range []int{0, -1} {
		if _, _, err := NewCredentials("pencil", n); err == nil {
			t.Errorf("NewCredentials with %d iterations succeeded", n)
		}
	}
}

// TestNewCredentialsPreparation checks that the password is prepared with
// OpaqueString, so a client sending the prepared form (mellium's client sends
// the password as given) is accepted.
func TestNewCredentialsPreparation(t *testing.T) {
	accts := accounts{}
	accts.add(t, "juliet", "\u2163 wherefore\u00a0art", 4096) // ROMAN NUMERAL FOUR, NBSP
	srv := &Server{Domain: testDomain, Lookup: accts.lookup}
	_, err := runMellium(t, srv, sasl.ScramSha256, "juliet", "\u2163 wherefore art", "")
	wantErr(t, err, nil)
	_, err = runMellium(t, srv, sasl.ScramSha256, "juliet", "IV wherefore art", "")
	wantErr(t, err, ErrNotAuthorized) // OpaqueString does not apply NFKC
}
