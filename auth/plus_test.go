package auth

import (
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"hash"
	"slices"
	"strings"
	"testing"

	"mellium.im/sasl"
)

func TestMechanismsAndChannelBindings(t *testing.T) {
	tls13 := &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}
	tls12 := &tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}
	incomplete := &tls.ConnectionState{Version: tls.VersionTLS13}
	ecdsaCert := &x509.Certificate{SignatureAlgorithm: x509.ECDSAWithSHA256}
	ed25519Cert := &x509.Certificate{SignatureAlgorithm: x509.PureEd25519}
	plus := []string{ScramSHA256Plus, ScramSHA1Plus}
	base := []string{ScramSHA256, ScramSHA1}

	tests := []struct {
		name      string
		srv       Server
		wantMechs []string
		wantCB    []string
	}{
		{"no TLS", Server{}, base, nil},
		{"no TLS, PLAIN allowed", Server{AllowPlain: true}, base, nil},
		{"no TLS, certificate", Server{ServerCert: ecdsaCert}, base, nil},
		{"TLS 1.3", Server{TLS: tls13}, append(plus, base...), []string{TLSExporter}},
		{"TLS 1.3, certificate, PLAIN", Server{TLS: tls13, ServerCert: ecdsaCert, AllowPlain: true},
			append(append(plus, base...), Plain), []string{TLSExporter, TLSServerEndPoint}},
		{"TLS 1.2", Server{TLS: tls12}, base, nil},
		{"TLS 1.2, PLAIN", Server{TLS: tls12, AllowPlain: true}, append(base, Plain), nil},
		{"TLS 1.2, certificate", Server{TLS: tls12, ServerCert: ecdsaCert}, append(plus, base...), []string{TLSServerEndPoint}},
		{"TLS 1.2, Ed25519 certificate", Server{TLS: tls12, ServerCert: ed25519Cert}, base, nil},
		{"TLS 1.3, Ed25519 certificate", Server{TLS: tls13, ServerCert: ed25519Cert}, append(plus, base...), []string{TLSExporter}},
		{"handshake incomplete", Server{TLS: incomplete, ServerCert: ecdsaCert}, base, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.srv.Mechanisms(); !slices.Equal(got, tc.wantMechs) {
				t.Errorf("Mechanisms() = %v, want %v", got, tc.wantMechs)
			}
			if got := tc.srv.ChannelBindings(); !slices.Equal(got, tc.wantCB) {
				t.Errorf("ChannelBindings() = %v, want %v", got, tc.wantCB)
			}
		})
	}
}

func TestStartInvalidMechanism(t *testing.T) {
	srv, _ := newTestServer(t)
	srv.AllowPlain = true // but no TLS
	for _, mech := range []string{"", "DIGEST-MD5", "scram-sha-256", Plain, ScramSHA256Plus, ScramSHA1Plus, "SCRAM-SHA-512"} {
		if _, err := srv.Start(context.Background(), mech); !errors.Is(err, ErrInvalidMechanism) {
			t.Errorf("Start(%q): %v, want ErrInvalidMechanism", mech, err)
		}
	}
	srv.TLS = &tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}
	srv.AllowPlain = false
	if _, err := srv.Start(context.Background(), Plain); !errors.Is(err, ErrInvalidMechanism) {
		t.Errorf("Start(PLAIN) with AllowPlain false: %v, want ErrInvalidMechanism", err)
	}
}

func TestEndPointHash(t *testing.T) {
	tests := []struct {
		alg  x509.SignatureAlgorithm
		want crypto.Hash // 0: undefined
	}{
		{x509.MD5WithRSA, crypto.SHA256},
		{x509.SHA1WithRSA, crypto.SHA256},
		{x509.ECDSAWithSHA1, crypto.SHA256},
		{x509.SHA256WithRSA, crypto.SHA256},
		{x509.SHA256WithRSAPSS, crypto.SHA256},
		{x509.ECDSAWithSHA256, crypto.SHA256},
		{x509.SHA384WithRSA, crypto.SHA384},
		{x509.ECDSAWithSHA384, crypto.SHA384},
		{x509.SHA384WithRSAPSS, crypto.SHA384},
		{x509.SHA512WithRSA, crypto.SHA512},
		{x509.ECDSAWithSHA512, crypto.SHA512},
		{x509.SHA512WithRSAPSS, crypto.SHA512},
		{x509.PureEd25519, 0},
		{x509.UnknownSignatureAlgorithm, 0},
	}
	for _, tc := range tests {
		cert := &x509.Certificate{SignatureAlgorithm: tc.alg, Raw: []byte("certificate")}
		h, ok := endPointHash(cert)
		if ok != (tc.want != 0) || h != tc.want {
			t.Errorf("%v: hash %v (ok %v), want %v", tc.alg, h, ok, tc.want)
		}
		data, err := serverEndPoint(cert)
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("%v: serverEndPoint succeeded for an undefined hash", tc.alg)
		case tc.want != 0 && err != nil:
			t.Errorf("%v: serverEndPoint: %v", tc.alg, err)
		case tc.want != 0 && len(data) != tc.want.Size():
			t.Errorf("%v: %d bytes of binding data, want %d", tc.alg, len(data), tc.want.Size())
		}
	}
}

// plusMechs pairs the -PLUS mechanism names with hash functions.
var plusMechs = []struct {
	name string
	hash func() hash.Hash
	base string
}{
	{ScramSHA256Plus, sha256.New, ScramSHA256},
	{ScramSHA1Plus, sha1.New, ScramSHA1},
}

func TestChannelBindingTLS13(t *testing.T) {
	pair := newTLSPair(t, tls.VersionTLS13)
	srv, _ := newTestServer(t)
	srv.TLS = &pair.server
	srv.ServerCert = pair.cert

	// The client's view of the connection, computed independently.
	exporter, err := pair.client.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	endPoint := sha256.Sum256(pair.client.PeerCertificates[0].Raw)
	other := newTLSPair(t, tls.VersionTLS13)
	otherExporter, err := other.client.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(endPoint[:])
	flipped[len(flipped)-1] ^= 0x80

	if got := srv.ChannelBindings(); !slices.Equal(got, []string{TLSExporter, TLSServerEndPoint}) {
		t.Fatalf("ChannelBindings() = %v", got)
	}

	t.Run("mellium tls-exporter", func(t *testing.T) {
		for _, mech := range []sasl.Mechanism{sasl.ScramSha256Plus, sasl.ScramSha1Plus} {
			opts := []sasl.Option{sasl.TLSState(pair.client), sasl.RemoteMechanisms(srv.Mechanisms()...)}
			// Make sure mellium's client really binds with tls-exporter.
			_, first, err := sasl.NewClient(mech, opts...).Step(nil)
			if err != nil || !strings.HasPrefix(string(first), "p=tls-exporter,") {
				t.Fatalf("%s: mellium client-first %q, %v", mech.Name, first, err)
			}
			ex, err := runMellium(t, srv, mech, "juliet", julietPass, "", opts...)
			wantErr(t, err, nil)
			if ex.Username() != "juliet" {
				t.Fatalf("Username() = %q", ex.Username())
			}
		}
	})

	tests := []struct {
		name    string
		flag    string
		data    []byte
		authzid string
		plus    bool // use the -PLUS mechanism
		want    error
	}{
		{"tls-exporter", "p=tls-exporter", exporter, "", true, nil},
		{"tls-exporter with authzid", "p=tls-exporter", exporter, "juliet@example.org", true, nil},
		{"tls-server-end-point", "p=tls-server-end-point", endPoint[:], "", true, nil},
		{"tls-server-end-point with authzid", "p=tls-server-end-point", endPoint[:], "juliet@example.org", true, nil},
		{"tls-exporter of another connection", "p=tls-exporter", otherExporter, "", true, ErrNotAuthorized},
		{"tls-exporter with end-point data", "p=tls-exporter", endPoint[:], "", true, ErrNotAuthorized},
		{"tls-exporter without data", "p=tls-exporter", nil, "", true, ErrNotAuthorized},
		{"tls-server-end-point wrong hash", "p=tls-server-end-point", flipped, "", true, ErrNotAuthorized},
		{"tls-server-end-point with exporter data", "p=tls-server-end-point", exporter, "", true, ErrNotAuthorized},
		{"tls-unique", "p=tls-unique", pair.client.TLSUnique, "", true, ErrMalformed},
		{"unknown type", "p=tls-magic", exporter, "", true, ErrMalformed},
		{"PLUS with n flag", "n", nil, "", true, ErrMalformed},
		{"PLUS with y flag", "y", nil, "", true, ErrMalformed},
		{"p flag without PLUS", "p=tls-exporter", exporter, "", false, ErrMalformed},
		{"y flag: downgrade", "y", nil, "", false, ErrNotAuthorized},
		{"n flag without PLUS", "n", nil, "", false, nil},
	}
	for _, tc := range tests {
		for _, m := range plusMechs {
			mech := m.base
			if tc.plus {
				mech = m.name
			}
			t.Run(tc.name+"/"+mech, func(t *testing.T) {
				ex, err := runTestClient(t, srv, mech, &testClient{
					hash: m.hash, user: "juliet", pass: julietPass, authzid: tc.authzid,
					gs2Flag: tc.flag, cbData: tc.data,
				})
				wantErr(t, err, tc.want)
				if tc.want == nil && ex.Username() != "juliet" {
					t.Fatalf("Username() = %q", ex.Username())
				}
			})
		}
	}
}

func TestChannelBindingTLS12(t *testing.T) {
	pair := newTLSPair(t, tls.VersionTLS12)
	endPoint := sha256.Sum256(pair.client.PeerCertificates[0].Raw)

	t.Run("with certificate", func(t *testing.T) {
		srv, _ := newTestServer(t)
		srv.TLS = &pair.server
		srv.ServerCert = pair.cert
		if got := srv.ChannelBindings(); !slices.Equal(got, []string{TLSServerEndPoint}) {
			t.Fatalf("ChannelBindings() = %v, want only tls-server-end-point", got)
		}
		// Go negotiates the extended master secret, so the client could
		// compute tls-exporter; the server still must not accept it on
		// TLS 1.2.
		exporter, err := pair.client.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, mech, flag string
			hash             func() hash.Hash
			data             []byte
			want             error
		}{
			{"tls-server-end-point", ScramSHA256Plus, "p=tls-server-end-point", sha256.New, endPoint[:], nil},
			{"tls-server-end-point SHA-1", ScramSHA1Plus, "p=tls-server-end-point", sha1.New, endPoint[:], nil},
			{"tls-exporter not offered", ScramSHA256Plus, "p=tls-exporter", sha256.New, exporter, ErrMalformed},
			{"y flag: downgrade", ScramSHA256, "y", sha256.New, nil, ErrNotAuthorized},
			{"n flag", ScramSHA256, "n", sha256.New, nil, nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := runTestClient(t, srv, tc.mech, &testClient{
					hash: tc.hash, user: "juliet", pass: julietPass, gs2Flag: tc.flag, cbData: tc.data,
				})
				wantErr(t, err, tc.want)
			})
		}
		t.Run("mellium tls-unique", func(t *testing.T) {
			// mellium's client binds with tls-unique below TLS 1.3, which is
			// not supported.
			_, err := runMellium(t, srv, sasl.ScramSha256Plus, "juliet", julietPass, "",
				sasl.TLSState(pair.client), sasl.RemoteMechanisms(srv.Mechanisms()...))
			wantErr(t, err, ErrMalformed)
		})
	})

	t.Run("without certificate", func(t *testing.T) {
		srv, _ := newTestServer(t)
		srv.TLS = &pair.server
		if cb := srv.ChannelBindings(); len(cb) != 0 {
			t.Fatalf("ChannelBindings() = %v, want none", cb)
		}
		if _, err := srv.Start(context.Background(), ScramSHA256Plus); !errors.Is(err, ErrInvalidMechanism) {
			t.Fatalf("Start(PLUS) without a channel binding: %v", err)
		}
		// The client supports channel binding, the server does not: fine.
		_, err := runTestClient(t, srv, ScramSHA256, &testClient{
			hash: sha256.New, user: "juliet", pass: julietPass, gs2Flag: "y",
		})
		wantErr(t, err, nil)
	})
}

func TestYFlagWithoutTLS(t *testing.T) {
	srv, _ := newTestServer(t)
	for _, m := range plusMechs {
		_, err := runTestClient(t, srv, m.base, &testClient{
			hash: m.hash, user: "juliet", pass: julietPass, gs2Flag: "y",
		})
		wantErr(t, err, nil)
	}
}
