package auth

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"mellium.im/sasl"

	"wren.im/wren/storage"
)

// TestRFCExamples replays the example exchanges of RFC 5802 §5 and RFC 7677
// §3 (user "user", password "pencil") against credentials derived the way
// NewCredentials derives them, with the server nonce of the examples
// injected.
func TestRFCExamples(t *testing.T) {
	tests := []struct {
		name        string
		mech        string
		h           scramHash
		salt        string
		sNonce      string
		clientFirst string
		serverFirst string
		clientFinal string
		serverFinal string
	}{{
		name:        "RFC5802/SCRAM-SHA-1",
		mech:        ScramSHA1,
		h:           scramSHA1,
		salt:        "QSXCR+Q6sek8bf92",
		sNonce:      "3rfcNHYJY1ZVvWVs7j",
		clientFirst: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
		serverFirst: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
		clientFinal: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
		serverFinal: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
	}, {
		name:        "RFC7677/SCRAM-SHA-256",
		mech:        ScramSHA256,
		h:           scramSHA256,
		salt:        "W22ZaJ0SNY7soEsUEjb6gQ==",
		sNonce:      "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		clientFirst: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		serverFirst: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		clientFinal: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			salt, err := base64.StdEncoding.DecodeString(tc.salt)
			if err != nil {
				t.Fatal(err)
			}
			account := func(password string) *Server {
				cred, err := deriveCredential(tc.h, password, salt, 4096)
				if err != nil {
					t.Fatal(err)
				}
				acct := storage.Account{Username: "user"}
				if tc.h == scramSHA1 {
					acct.SHA1 = cred
				} else {
					acct.SHA256 = cred
				}
				return &Server{Domain: testDomain, Lookup: accounts{"user": acct}.lookup}
			}
			start := func(srv *Server) *Exchange {
				ex, err := srv.Start(context.Background(), tc.mech)
				if err != nil {
					t.Fatal(err)
				}
				ex.sNonce = tc.sNonce
				return ex
			}

			ex := start(account("pencil"))
			got, done, err := ex.Step([]byte(tc.clientFirst))
			if err != nil || done {
				t.Fatalf("client-first: done=%v err=%v", done, err)
			}
			if string(got) != tc.serverFirst {
				t.Fatalf("server-first-message\n got %s\nwant %s", got, tc.serverFirst)
			}
			got, done, err = ex.Step([]byte(tc.clientFinal))
			if err != nil || !done {
				t.Fatalf("client-final: done=%v err=%v", done, err)
			}
			if string(got) != tc.serverFinal {
				t.Fatalf("server-final-message\n got %s\nwant %s", got, tc.serverFinal)
			}
			if ex.Username() != "user" {
				t.Fatalf("Username() = %q, want user", ex.Username())
			}

			// The same messages against another password's credential.
			ex = start(account("pencil2"))
			if _, _, err := ex.Step([]byte(tc.clientFirst)); err != nil {
				t.Fatal(err)
			}
			_, _, err = ex.Step([]byte(tc.clientFinal))
			wantErr(t, err, ErrNotAuthorized)

			// A proof with one bit flipped.
			ex = start(account("pencil"))
			if _, _, err := ex.Step([]byte(tc.clientFirst)); err != nil {
				t.Fatal(err)
			}
			i := strings.Index(tc.clientFinal, ",p=") + 3
			proof, _ := base64.StdEncoding.DecodeString(tc.clientFinal[i:])
			proof[0] ^= 1
			_, _, err = ex.Step([]byte(tc.clientFinal[:i] + base64.StdEncoding.EncodeToString(proof)))
			wantErr(t, err, ErrNotAuthorized)
		})
	}
}

func TestMelliumRoundTrip(t *testing.T) {
	srv, _ := newTestServer(t)
	tests := []struct {
		mech       sasl.Mechanism
		user, pass string
		want       string
	}{
		{sasl.ScramSha256, "juliet", julietPass, "juliet"},
		{sasl.ScramSha1, "juliet", julietPass, "juliet"},
		{sasl.ScramSha256, "Juliet", julietPass, "juliet"}, // normalised
		{sasl.ScramSha1, "JULIET", julietPass, "juliet"},
		{sasl.ScramSha256, odd, oddPass, odd}, // saslname escaping
		{sasl.ScramSha1, odd, oddPass, odd},
		{sasl.ScramSha256, "only256", julietPass, "only256"},
		{sasl.ScramSha1, "only1", julietPass, "only1"},
	}
	for _, tc := range tests {
		t.Run(tc.mech.Name+"/"+tc.user, func(t *testing.T) {
			ex, err := runMellium(t, srv, tc.mech, tc.user, tc.pass, "")
			wantErr(t, err, nil)
			if ex.Username() != tc.want {
				t.Fatalf("Username() = %q, want %q", ex.Username(), tc.want)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1} {
		t.Run(mech.Name, func(t *testing.T) {
			ex, err := runMellium(t, srv, mech, "juliet", julietPass+"x", "")
			wantErr(t, err, ErrNotAuthorized)
			if ex.Username() != "" {
				t.Fatalf("Username() = %q after failure", ex.Username())
			}
		})
	}
}

// serverFirstRE matches a server-first-message answering a client-first with
// the client nonce of testClient: 24 random bytes of server nonce, a salt,
// an iteration count.
var serverFirstRE = regexp.MustCompile(`^r=Cl1entN0nce\+/Xyz[A-Za-z0-9+/]{32},s=([A-Za-z0-9+/]+=*),i=([0-9]+)$`)

// firstMessage starts an exchange and returns the server-first-message.
func firstMessage(t *testing.T, srv *Server, mech, user string) string {
	t.Helper()
	ex, err := srv.Start(context.Background(), mech)
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{user: user}
	sf, _, err := ex.Step(c.first())
	if err != nil {
		t.Fatalf("client-first for %q: %v", user, err)
	}
	return string(sf)
}

func TestUnknownUser(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1} {
		t.Run(mech.Name, func(t *testing.T) {
			_, err := runMellium(t, srv, mech, "romeo", julietPass, "")
			wantErr(t, err, ErrNotAuthorized)
			// A known user without a credential for the hash looks the same.
			user := "only1"
			if mech.Name == ScramSHA1 {
				user = "only256"
			}
			_, err = runMellium(t, srv, mech, user, julietPass, "")
			wantErr(t, err, ErrNotAuthorized)
		})
	}

	t.Run("server-first looks normal", func(t *testing.T) {
		for _, user := range []string{"juliet", "romeo", "only1"} {
			sf := firstMessage(t, srv, ScramSHA256, user)
			m := serverFirstRE.FindStringSubmatch(sf)
			if m == nil {
				t.Fatalf("server-first for %q: %q has an unexpected form", user, sf)
			}
			salt, err := base64.StdEncoding.DecodeString(m[1])
			if err != nil || len(salt) != saltSize || m[2] != "4096" {
				t.Fatalf("server-first for %q: salt %q (%d bytes, %v), iterations %s", user, m[1], len(salt), err, m[2])
			}
		}
	})

	t.Run("stable salt with secret", func(t *testing.T) {
		srv, _ := newTestServer(t)
		srv.UnknownUserSecret = []byte("0123456789abcdef0123456789abcdef")
		srv.UnknownUserIterations = 10000
		salt := func(user string) string {
			m := serverFirstRE.FindStringSubmatch(firstMessage(t, srv, ScramSHA256, user))
			if m == nil || m[2] != "10000" {
				t.Fatalf("unexpected server-first for %q: %v", user, m)
			}
			return m[1]
		}
		if a, b := salt("romeo"), salt("romeo"); a != b {
			t.Errorf("salt for unknown user changes between attempts: %s, %s", a, b)
		}
		if a, b := salt("romeo"), salt("mercutio"); a == b {
			t.Errorf("two unknown users get the same salt %s", a)
		}
		if a, b := salt("romeo"), salt("Romeo"); a != b {
			t.Errorf("salt depends on the unnormalised username: %s, %s", a, b)
		}
	})

	t.Run("random salt without secret", func(t *testing.T) {
		a := serverFirstRE.FindStringSubmatch(firstMessage(t, srv, ScramSHA256, "romeo"))
		b := serverFirstRE.FindStringSubmatch(firstMessage(t, srv, ScramSHA256, "romeo"))
		if a[1] == b[1] {
			t.Errorf("same made-up salt twice without a secret: %s", a[1])
		}
	})
}

func TestLookupFailure(t *testing.T) {
	boom := errors.New("database is on fire")
	srv := &Server{Domain: testDomain, Lookup: func(context.Context, string) (storage.Account, error) {
		return storage.Account{}, boom
	}}
	ex, err := srv.Start(context.Background(), ScramSHA256)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ex.Step((&testClient{user: "juliet"}).first())
	if !errors.Is(err, boom) || errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("error %v, want the storage error, not ErrNotAuthorized", err)
	}
}

func TestTampering(t *testing.T) {
	srv, _ := newTestServer(t)
	replaceAttr := func(name, value string) func(string) string {
		return func(without string) string {
			attrs := strings.Split(without, ",")
			for i, a := range attrs {
				if strings.HasPrefix(a, name+"=") {
					attrs[i] = name + "=" + value
				}
			}
			return strings.Join(attrs, ",")
		}
	}
	tests := []struct {
		name   string
		tamper func(string) string
		want   error
	}{
		{"untouched", nil, nil},
		{"extension is ignored", func(w string) string { return w + ",x=ext=ok" }, nil},
		// The proof is computed over the tampered message, so only the
		// server's nonce and channel binding checks can catch these.
		{"nonce truncated", func(w string) string { return w[:len(w)-1] }, ErrNotAuthorized},
		{"nonce extended", func(w string) string { return w + "A" }, ErrNotAuthorized},
		{"client nonce only", replaceAttr("r", "Cl1entN0nce+/Xyz"), ErrNotAuthorized},
		{"c= of another header", replaceAttr("c", base64.StdEncoding.EncodeToString([]byte("y,,"))), ErrNotAuthorized},
		{"c= empty header", replaceAttr("c", base64.StdEncoding.EncodeToString([]byte(",,"))), ErrNotAuthorized},
		{"c= with extra data", replaceAttr("c", base64.StdEncoding.EncodeToString([]byte("n,,x"))), ErrNotAuthorized},
		{"c= not base64", replaceAttr("c", "biw*"), ErrMalformed},
		{"c= unpadded", replaceAttr("c", "bix"), ErrMalformed},
		{"mandatory extension", func(w string) string { return w + ",m=x" }, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runTestClient(t, srv, ScramSHA256, &testClient{
				hash: sha256.New, user: "juliet", pass: julietPass, tamper: tc.tamper,
			})
			wantErr(t, err, tc.want)
		})
	}

	t.Run("message changed after the proof", func(t *testing.T) {
		ex, err := srv.Start(context.Background(), ScramSHA1)
		if err != nil {
			t.Fatal(err)
		}
		c := &testClient{hash: sha1.New, user: "juliet", pass: julietPass}
		sf, _, err := ex.Step(c.first())
		if err != nil {
			t.Fatal(err)
		}
		final, err := c.final(sf)
		if err != nil {
			t.Fatal(err)
		}
		final = []byte(strings.Replace(string(final), ",p=", ",x=y,p=", 1))
		_, _, err = ex.Step(final)
		wantErr(t, err, ErrNotAuthorized)
	})
}

func TestMalformedClientFirst(t *testing.T) {
	srv, _ := newTestServer(t)
	tests := []string{
		"\x00",
		"n",
		"n,",
		"n,,",
		"n,,n=juliet",
		"n,,n=juliet,",
		"n,,n=juliet,r=",
		"n,,r=abc,n=juliet",
		"n,,n=,r=abc",
		"x,,n=juliet,r=abc",
		"N,,n=juliet,r=abc",
		"nn,,n=juliet,r=abc",
		"p,,n=juliet,r=abc",
		"p=,,n=juliet,r=abc",
		"p=tls exporter,,n=juliet,r=abc",
		"n,x=juliet,n=juliet,r=abc",
		"n,a=,n=juliet,r=abc",
		"n,a=jul=iet,n=juliet,r=abc",
		"n,,n=jul=2ciet,r=abc", // escapes are upper case
		"n,,n=jul=3Diet=,r=abc",
		"n,,n=jul=iet,r=abc",
		"n,,n=juliet=2,r=abc",
		"n,,n=juliet=,r=abc",
		"n,,m=ext,n=juliet,r=abc",
		"n,,n=juliet,r=abc,m=ext",
		"n,,n=juliet,r=abc,ext",
		"n,,n=juliet,r=abc,=x",
		"n,,n=juliet,r=abc,1=x",
		"n,,n=juliet,r=abc,x=",
		"n,,n=juliet,r=a c",
		"n,,n=juliet,r=abc\x7f",
		"n,,n=juliet,r=abc\x00",
		"n,,n=jul\x00iet,r=abc",
		"n,,n=jul\xffiet,r=abc",
		"n,,n=juliet,s=abc",
		" n,,n=juliet,r=abc",
		"n,,,n=juliet,r=abc",
	}
	for _, msg := range tests {
		ex, err := srv.Start(context.Background(), ScramSHA256)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = ex.Step([]byte(msg))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("client-first %q: error %v, want ErrMalformed", msg, err)
		}
	}
}

func TestMalformedClientFinal(t *testing.T) {
	srv, _ := newTestServer(t)
	tests := []struct{ name, msg string }{
		{"empty", ""},
		{"proof only", "p=AAAA"},
		{"no proof", "c=biws,r=NONCE"},
		{"proof not last", "c=biws,p=AAAA,r=NONCE"},
		{"no channel binding", "r=NONCE,p=AAAA"},
		{"channel binding second", "r=NONCE,c=biws,p=AAAA"},
		{"no nonce", "c=biws,p=AAAA"},
		{"empty nonce", "c=biws,r=,p=AAAA"},
		{"empty proof", "c=biws,r=NONCE,p="},
		{"proof not base64", "c=biws,r=NONCE,p=AA*A"},
		{"proof with newline", "c=biws,r=NONCE,p=AA\nAA"},
		{"trailing comma", "c=biws,r=NONCE,p=AAAA,"},
		{"bad extension", "c=biws,r=NONCE,ext,p=AAAA"},
		{"NUL", "c=biws,r=NONCE,p=AAAA\x00"},
		{"invalid UTF-8", "c=biws,r=NONCE,x=\xff,p=AAAA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := srv.Start(context.Background(), ScramSHA256)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := ex.Step((&testClient{user: "juliet"}).first()); err != nil {
				t.Fatal(err)
			}
			msg := strings.ReplaceAll(tc.msg, "NONCE", "Cl1entN0nce+/Xyz"+ex.sNonce)
			_, _, err = ex.Step([]byte(msg))
			wantErr(t, err, ErrMalformed)
		})
	}

	t.Run("proof of wrong length", func(t *testing.T) {
		_, err := runTestClient(t, srv, ScramSHA256, &testClient{
			hash: sha1.New, user: "juliet", pass: julietPass, // a SHA-1 proof
		})
		wantErr(t, err, ErrNotAuthorized)
	})
}

func TestInvalidUsername(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, user := range []string{"jul iet", "juliet@example.org", "a/b", "\u0007"} {
		_, err := runTestClient(t, srv, ScramSHA256, &testClient{hash: sha256.New, user: user, pass: julietPass})
		if !errors.Is(err, ErrNotAuthorized) {
			t.Errorf("username %q: error %v, want ErrNotAuthorized", user, err)
		}
	}
}

func TestAuthzid(t *testing.T) {
	srv, _ := newTestServer(t)
	tests := []struct {
		user, authzid string
		want          error
	}{
		{"juliet", "", nil},
		{"juliet", "juliet@example.org", nil},
		{"juliet", "Juliet@EXAMPLE.org", nil},
		{"Juliet", "juliet@example.org.", nil},
		{odd, odd + "@example.org", nil}, // needs escaping in a=
		{"juliet", "romeo@example.org", ErrInvalidAuthzid},
		{"juliet", "juliet@example.org/balcony", ErrInvalidAuthzid},
		{"juliet", "juliet", ErrInvalidAuthzid},
		{"juliet", "example.org", ErrInvalidAuthzid},
		{"juliet", "juliet@example.net", ErrInvalidAuthzid},
		{"juliet", "@example.org", ErrInvalidAuthzid},
	}
	for _, tc := range tests {
		t.Run(tc.user+"/"+tc.authzid, func(t *testing.T) {
			pass := julietPass
			if tc.user == odd {
				pass = oddPass
			}
			ex, err := runTestClient(t, srv, ScramSHA256, &testClient{
				hash: sha256.New, user: tc.user, pass: pass, authzid: tc.authzid,
			})
			wantErr(t, err, tc.want)
			if tc.want == nil && ex.Username() != strings.ToLower(tc.user) {
				t.Fatalf("Username() = %q", ex.Username())
			}
		})
	}

	t.Run("mellium client", func(t *testing.T) {
		_, err := runMellium(t, srv, sasl.ScramSha1, "juliet", julietPass, "juliet@example.org")
		wantErr(t, err, nil)
		_, err = runMellium(t, srv, sasl.ScramSha1, "juliet", julietPass, "romeo@example.org")
		wantErr(t, err, ErrInvalidAuthzid)
	})

	t.Run("no domain configured", func(t *testing.T) {
		srv, _ := newTestServer(t)
		srv.Domain = ""
		_, err := runTestClient(t, srv, ScramSHA256, &testClient{
			hash: sha256.New, user: "juliet", pass: julietPass, authzid: "juliet@example.org",
		})
		wantErr(t, err, ErrInvalidAuthzid)
	})
}

func TestEmptyInitialResponse(t *testing.T) {
	srv, _ := newTestServer(t)
	ex, err := srv.Start(context.Background(), ScramSHA256)
	if err != nil {
		t.Fatal(err)
	}
	ch, done, err := ex.Step(nil)
	if err != nil || done || len(ch) != 0 {
		t.Fatalf("empty initial response: challenge %q, done %v, err %v", ch, done, err)
	}
	c := &testClient{hash: sha256.New, user: "juliet", pass: julietPass}
	sf, done, err := ex.Step(c.first())
	if err != nil || done {
		t.Fatalf("client-first: done %v, err %v", done, err)
	}
	final, err := c.final(sf)
	if err != nil {
		t.Fatal(err)
	}
	sfin, done, err := ex.Step(final)
	if err != nil || !done {
		t.Fatalf("client-final: done %v, err %v", done, err)
	}
	if err := c.verify(sfin); err != nil {
		t.Fatal(err)
	}

	// Two empty messages in a row are not a client-first-message.
	ex, _ = srv.Start(context.Background(), ScramSHA256)
	if _, _, err := ex.Step(nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = ex.Step([]byte{})
	wantErr(t, err, ErrMalformed)
}

func TestMessageSizeLimit(t *testing.T) {
	srv, _ := newTestServer(t)
	prefix := "n,,n=juliet,r="
	for _, size := range []int{MaxMessageSize, MaxMessageSize + 1} {
		ex, err := srv.Start(context.Background(), ScramSHA256)
		if err != nil {
			t.Fatal(err)
		}
		msg := prefix + strings.Repeat("x", size-len(prefix))
		_, _, err = ex.Step([]byte(msg))
		if size <= MaxMessageSize {
			wantErr(t, err, nil)
		} else {
			wantErr(t, err, ErrMalformed)
		}
	}
}

func TestStepAfterEnd(t *testing.T) {
	srv, _ := newTestServer(t)
	ex, err := runMellium(t, srv, sasl.ScramSha256, "juliet", julietPass, "")
	wantErr(t, err, nil)
	if _, _, err := ex.Step([]byte("c=biws")); !errors.Is(err, ErrExchangeFinished) {
		t.Fatalf("Step after success: %v, want ErrExchangeFinished", err)
	}
	if ex.Username() != "juliet" {
		t.Fatalf("Username() = %q after an extra Step", ex.Username())
	}

	ex, err = runMellium(t, srv, sasl.ScramSha256, "juliet", "wrong", "")
	wantErr(t, err, ErrNotAuthorized)
	if _, _, err := ex.Step([]byte("c=biws")); !errors.Is(err, ErrExchangeFinished) {
		t.Fatalf("Step after failure: %v, want ErrExchangeFinished", err)
	}
}

func TestStepDoesNotAliasInput(t *testing.T) {
	srv, _ := newTestServer(t)
	ex, err := srv.Start(context.Background(), ScramSHA256)
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{hash: sha256.New, user: "juliet", pass: julietPass}
	buf := c.first()
	sf, _, err := ex.Step(buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'X' // the caller reuses its buffer
	}
	final, err := c.final(sf)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ex.Step(final); err != nil {
		t.Fatalf("exchange broken by reuse of the caller's buffer: %v", err)
	}
}
