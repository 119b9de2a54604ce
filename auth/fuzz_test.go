package auth

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"hash"
	"strings"
	"testing"
)

// fuzzNonce replaces the random server nonce while fuzzing, so that the
// fuzzer can produce client-final-messages that get past the nonce check.
const fuzzNonce = "FuzzServerNonce"

// FuzzScramServer feeds arbitrary client-first and client-final messages to
// every mechanism offered on a TLS 1.3 stream with both channel bindings.
// The server must never panic, must fail only with the documented sentinel
// errors, and must report a username exactly when it reports success.
func FuzzScramServer(f *testing.F) {
	pair := newTLSPair(f, tls.VersionTLS13)
	// Two iterations keep PLAIN cheap; SCRAM servers run no PBKDF2.
	s1, err := deriveCredential(scramSHA1, "pencil", []byte("NaCl-NaCl-NaCl-!"), 2)
	if err != nil {
		f.Fatal(err)
	}
	s256, err := deriveCredential(scramSHA256, "pencil", []byte("NaCl-NaCl-NaCl-!"), 2)
	if err != nil {
		f.Fatal(err)
	}
	accts := accounts{"user": {Username: "user", SHA1: s1, SHA256: s256}}
	srv := &Server{
		Domain:                testDomain,
		Lookup:                accts.lookup,
		TLS:                   &pair.server,
		ServerCert:            pair.cert,
		AllowPlain:            true,
		UnknownUserSecret:     []byte("fuzz secret"),
		UnknownUserIterations: 2,
	}
	mechs := srv.Mechanisms()

	// Seeds: valid exchanges for every mechanism and binding.
	exporter, err := pair.client.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		f.Fatal(err)
	}
	endPoint := sha256.Sum256(pair.client.PeerCertificates[0].Raw)
	for i, mech := range mechs {
		if mech == Plain {
			f.Add(uint8(i), []byte("\x00user\x00pencil"), []byte(nil))
			f.Add(uint8(i), []byte(nil), []byte("user@example.org\x00user\x00pencil"))
			continue
		}
		var h func() hash.Hash = sha256.New
		if strings.HasPrefix(mech, ScramSHA1) {
			h = sha1.New
		}
		type binding struct {
			flag string
			data []byte
		}
		bindings := []binding{{"n", nil}, {"y", nil}}
		if strings.HasSuffix(mech, "-PLUS") {
			bindings = []binding{{"p=" + TLSExporter, exporter}, {"p=" + TLSServerEndPoint, endPoint[:]}}
		}
		for _, b := range bindings {
			for _, authzid := range []string{"", "user@example.org"} {
				c := &testClient{hash: h, user: "user", pass: "pencil", gs2Flag: b.flag, cbData: b.data, authzid: authzid}
				first := c.first()
				ex, err := srv.Start(context.Background(), mech)
				if err != nil {
					f.Fatal(err)
				}
				ex.sNonce = fuzzNonce
				sf, _, err := ex.Step(first)
				if err != nil {
					f.Add(uint8(i), first, []byte("c=eSws,r=x,p=AAAA"))
					continue
				}
				final, err := c.final(sf)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(uint8(i), first, final)
			}
		}
	}
	f.Add(uint8(0), []byte(nil), []byte("p=tls-exporter,,n=user,r=abc"))
	f.Add(uint8(2), []byte("n,a=a=3Db=2C,n=us=2Cer,r=abc,x=1"), []byte("c=biws,r=abc"+fuzzNonce+",e=x,p=AAAA"))

	f.Fuzz(func(t *testing.T, mech uint8, first, final []byte) {
		name := mechs[int(mech)%len(mechs)]
		ex, err := srv.Start(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		ex.sNonce = fuzzNonce
		for _, msg := range [][]byte{first, final, final} {
			resp, done, err := ex.Step(msg)
			switch {
			case err != nil:
				if !errors.Is(err, ErrNotAuthorized) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidAuthzid) {
					t.Fatalf("%s: error outside the documented classes: %v", name, err)
				}
				if ex.Username() != "" {
					t.Fatalf("%s: Username() = %q after failure", name, ex.Username())
				}
			case done:
				if ex.Username() != "user" {
					t.Fatalf("%s: success with Username() = %q", name, ex.Username())
				}
				if name != Plain && !bytes.HasPrefix(resp, []byte("v=")) {
					t.Fatalf("%s: success with additional data %q", name, resp)
				}
			default:
				if ex.Username() != "" {
					t.Fatalf("%s: Username() = %q before the end", name, ex.Username())
				}
				continue
			}
			if _, _, err := ex.Step(msg); !errors.Is(err, ErrExchangeFinished) {
				t.Fatalf("%s: Step after the end: %v", name, err)
			}
			return
		}
	})
}
