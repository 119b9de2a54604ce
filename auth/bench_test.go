package auth

import (
	"context"
	"crypto/sha256"
	"testing"

	"mellium.im/sasl"
)

// BenchmarkScramSha256 runs complete SCRAM-SHA-256 exchanges (4096
// iterations) between mellium's client and the server. The client's PBKDF2
// dominates.
func BenchmarkScramSha256(b *testing.B) {
	accts := accounts{}
	accts.add(b, "juliet", julietPass, 4096)
	srv := &Server{Domain: testDomain, Lookup: accts.lookup}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := runMellium(b, srv, sasl.ScramSha256, "juliet", julietPass, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScramSha256Server measures the server's share of an exchange:
// Start and both Steps, with the client's messages computed beforehand.
func BenchmarkScramSha256Server(b *testing.B) {
	accts := accounts{}
	accts.add(b, "juliet", julietPass, 4096)
	srv := &Server{Domain: testDomain, Lookup: accts.lookup}
	const nonce = "BenchServerNonce"
	c := &testClient{hash: sha256.New, user: "juliet", pass: julietPass}
	first := c.first()
	ex, err := srv.Start(context.Background(), ScramSHA256)
	if err != nil {
		b.Fatal(err)
	}
	ex.sNonce = nonce
	sf, _, err := ex.Step(first)
	if err != nil {
		b.Fatal(err)
	}
	final, err := c.final(sf)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ex, err := srv.Start(context.Background(), ScramSHA256)
		if err != nil {
			b.Fatal(err)
		}
		ex.sNonce = nonce
		if _, _, err := ex.Step(first); err != nil {
			b.Fatal(err)
		}
		if _, done, err := ex.Step(final); err != nil || !done {
			b.Fatal(done, err)
		}
	}
}
