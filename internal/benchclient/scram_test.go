package benchclient

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"wren.im/wren/auth"
	"wren.im/wren/storage"
)

// wrenAuth returns Wren's SASL server knowing user "o,n=e" (a name that
// needs escaping) with password pass.
func wrenAuth(t *testing.T, pass string) *auth.Server {
	t.Helper()
	s1, s256, err := auth.NewCredentials(pass, 4096)
	if err != nil {
		t.Fatal(err)
	}
	acct := storage.Account{Username: "o,n=e", Created: time.Now(), SHA1: s1, SHA256: s256}
	return &auth.Server{
		Domain: "example.org",
		Lookup: func(_ context.Context, name string) (storage.Account, error) {
			if name != acct.Username {
				return storage.Account{}, fmt.Errorf("%q: %w", name, storage.ErrNotFound)
			}
			return acct, nil
		},
	}
}

// exchange runs our client against Wren's server side.
func exchange(t *testing.T, srv *auth.Server, mech, user, pass string, cache *KeyCache) error {
	t.Helper()
	ex, err := srv.Start(context.Background(), mech)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := NewScram(mech, user, pass, cache)
	if err != nil {
		t.Fatal(err)
	}
	first, done, err := ex.Step(cl.First())
	if err != nil || done {
		return fmt.Errorf("server-first: done=%v: %w", done, err)
	}
	final, err := cl.Final(first)
	if err != nil {
		return fmt.Errorf("client-final: %w", err)
	}
	last, done, err := ex.Step(final)
	if err != nil {
		return fmt.Errorf("server-final: %w", err)
	}
	if !done {
		return errors.New("server not done after client-final")
	}
	if err := cl.Verify(last); err != nil {
		return err
	}
	if ex.Username() != user {
		return fmt.Errorf("server authenticated %q, want %q", ex.Username(), user)
	}
	return nil
}

func TestScramAgainstWren(t *testing.T) {
	const pass = "pencil-ü"
	srv := wrenAuth(t, pass)
	for _, mech := range []string{ScramSHA1, ScramSHA256} {
		t.Run(mech, func(t *testing.T) {
			cache := &KeyCache{}
			for i := range 2 { // the second login uses the cached keys
				if err := exchange(t, srv, mech, "o,n=e", pass, cache); err != nil {
					t.Fatalf("login %d: %v", i+1, err)
				}
			}
			if cache.Len() != 1 {
				t.Errorf("cache holds %d keys, want 1", cache.Len())
			}
			if err := exchange(t, srv, mech, "o,n=e", "wrong", nil); err == nil {
				t.Error("a wrong password was accepted")
			}
		})
	}
}

func TestScramRejectsBadServer(t *testing.T) {
	cl, err := NewScram(ScramSHA256, "u", "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	cl.First()
	for _, sf := range []string{
		"r=someoneelse,s=c2FsdA==,i=4096",
		"r=" + cl.nonce + ",s=c2FsdA==,i=4096", // nonce not extended
		"r=" + cl.nonce + "x,s=,i=4096",
		"r=" + cl.nonce + "x,s=c2FsdA==,i=0",
		"r=" + cl.nonce + "x,s=c2FsdA==,i=99999999",
	} {
		if _, err := cl.Final([]byte(sf)); err == nil {
			t.Errorf("server-first %q accepted", sf)
		}
	}
	if _, err := cl.Final([]byte("r=" + cl.nonce + "x,s=c2FsdA==,i=4096")); err != nil {
		t.Fatal(err)
	}
	if err := cl.Verify([]byte("v=AAAA")); !errors.Is(err, ErrServerSignature) {
		t.Errorf("forged server signature: %v", err)
	}
	if err := cl.Verify([]byte("e=invalid-proof")); err == nil {
		t.Error("server error accepted")
	}
	if _, err := NewScram("PLAIN", "u", "p", nil); err == nil {
		t.Error("PLAIN accepted as a SCRAM mechanism")
	}
}
