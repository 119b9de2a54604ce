package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"testing"

	"mellium.im/sasl"
)

// plainServer returns a test server on a TLS stream with PLAIN allowed.
func plainServer(t *testing.T) *Server {
	t.Helper()
	srv, _ := newTestServer(t)
	srv.TLS = &tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}
	srv.AllowPlain = true
	return srv
}

func plainStep(t *testing.T, srv *Server, msg string) (*Exchange, error) {
	t.Helper()
	ex, err := srv.Start(context.Background(), Plain)
	if err != nil {
		t.Fatal(err)
	}
	resp, done, err := ex.Step([]byte(msg))
	if err == nil && (!done || len(resp) != 0) {
		t.Fatalf("PLAIN: done %v, additional data %q", done, resp)
	}
	return ex, err
}

func TestPlain(t *testing.T) {
	srv := plainServer(t)
	tests := []struct {
		name, msg string
		want      error
		user      string
	}{
		{"ok", "\x00juliet\x00" + julietPass, nil, "juliet"},
		{"normalised username", "\x00Juliet\x00" + julietPass, nil, "juliet"},
		{"own JID as authzid", "juliet@example.org\x00juliet\x00" + julietPass, nil, "juliet"},
		{"escaping user", "\x00" + odd + "\x00" + oddPass, nil, odd},
		{"SHA-1 fallback", "\x00only1\x00" + julietPass, nil, "only1"},
		{"SHA-256 only", "\x00only256\x00" + julietPass, nil, "only256"},
		{"wrong password", "\x00juliet\x00" + julietPass + "!", ErrNotAuthorized, ""},
		{"wrong password SHA-1 only", "\x00only1\x00nope", ErrNotAuthorized, ""},
		{"unknown user", "\x00romeo\x00" + julietPass, ErrNotAuthorized, ""},
		{"invalid username", "\x00jul iet\x00" + julietPass, ErrNotAuthorized, ""},
		{"invalid password", "\x00juliet\x00pass\u0007", ErrNotAuthorized, ""},
		{"other authzid", "romeo@example.org\x00juliet\x00" + julietPass, ErrInvalidAuthzid, ""},
		{"full JID authzid", "juliet@example.org/r\x00juliet\x00" + julietPass, ErrInvalidAuthzid, ""},
		{"two fields", "juliet\x00" + julietPass, ErrMalformed, ""},
		{"four fields", "\x00juliet\x00" + julietPass + "\x00x", ErrMalformed, ""},
		{"empty authcid", "\x00\x00" + julietPass, ErrMalformed, ""},
		{"empty password", "\x00juliet\x00", ErrMalformed, ""},
		{"invalid UTF-8", "\x00juliet\x00\xff\xfe", ErrMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := plainStep(t, srv, tc.msg)
			wantErr(t, err, tc.want)
			if ex.Username() != tc.user {
				t.Fatalf("Username() = %q, want %q", ex.Username(), tc.user)
			}
		})
	}
}

func TestPlainPasswordPreparation(t *testing.T) {
	srv := plainServer(t)
	accts := accounts{}
	// U+00A0 NO-BREAK SPACE is mapped to U+0020 by OpaqueString.
	accts.add(t, "juliet", "wherefore\u00a0art thou", 4096)
	srv.Lookup = accts.lookup
	for _, pass := range []string{"wherefore art thou", "wherefore\u00a0art thou", "wherefore\u2003art thou"} {
		_, err := plainStep(t, srv, "\x00juliet\x00"+pass)
		wantErr(t, err, nil)
	}
	_, err := plainStep(t, srv, "\x00juliet\x00wherefore  art thou")
	wantErr(t, err, ErrNotAuthorized)
}

func TestPlainMellium(t *testing.T) {
	srv := plainServer(t)
	ex, err := runMellium(t, srv, sasl.Plain, "juliet", julietPass, "")
	wantErr(t, err, nil)
	if ex.Username() != "juliet" {
		t.Fatalf("Username() = %q", ex.Username())
	}
	_, err = runMellium(t, srv, sasl.Plain, "juliet", "nope", "")
	wantErr(t, err, ErrNotAuthorized)
}

func TestPlainEmptyInitialResponse(t *testing.T) {
	srv := plainServer(t)
	ex, err := srv.Start(context.Background(), Plain)
	if err != nil {
		t.Fatal(err)
	}
	ch, done, err := ex.Step(nil)
	if err != nil || done || len(ch) != 0 {
		t.Fatalf("empty initial response: %q, %v, %v", ch, done, err)
	}
	_, done, err = ex.Step([]byte("\x00juliet\x00" + julietPass))
	if err != nil || !done || ex.Username() != "juliet" {
		t.Fatalf("PLAIN after empty challenge: done %v, err %v, user %q", done, err, ex.Username())
	}

	ex, _ = srv.Start(context.Background(), Plain)
	_, _, _ = ex.Step(nil)
	_, _, err = ex.Step(nil)
	wantErr(t, err, ErrMalformed)
}

func TestPlainNotOffered(t *testing.T) {
	srv, _ := newTestServer(t)
	srv.AllowPlain = true // no TLS
	for _, m := range srv.Mechanisms() {
		if m == Plain {
			t.Fatal("PLAIN offered without TLS")
		}
	}
	if _, err := srv.Start(context.Background(), Plain); !errors.Is(err, ErrInvalidMechanism) {
		t.Fatalf("Start(PLAIN) without TLS: %v", err)
	}
}

func TestPlainSizeLimit(t *testing.T) {
	srv := plainServer(t)
	msg := "\x00juliet\x00" + string(bytes.Repeat([]byte("x"), MaxMessageSize))
	_, err := plainStep(t, srv, msg)
	wantErr(t, err, ErrMalformed)
}
