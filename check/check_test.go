package check

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/config"
)

// now is the fixed time the tests run at.
var now = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// testCA is a root and an intermediate that issue test certificates.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	pool              *x509.CertPool
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func create(t *testing.T, tmpl, parent *x509.Certificate, pub any, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{rootKey: newKey(t), interKey: newKey(t)}
	rootTmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "Test Root"}, NotBefore: now.AddDate(-5, 0, 0), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	ca.root = create(t, rootTmpl, rootTmpl, ca.rootKey.Public(), ca.rootKey)
	ca.inter = create(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "Test Intermediate"}, NotBefore: now.AddDate(-5, 0, 0), NotAfter: now.AddDate(5, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, ca.root, ca.interKey.Public(), ca.rootKey)
	ca.pool = x509.NewCertPool()
	ca.pool.AddCert(ca.root)
	return ca
}

// certFiles writes a leaf for names valid from notBefore to notAfter,
// with the intermediate in the file when withChain is set, and returns the
// paths of the certificate and key files.
func (ca *testCA) certFiles(t *testing.T, names []string, notBefore, notAfter time.Time, withChain bool) (string, string) {
	t.Helper()
	key := newKey(t)
	leaf := create(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: names[0]}, DNSNames: names, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.inter, key.Public(), ca.interKey)
	chain := []*x509.Certificate{leaf}
	if withChain {
		chain = append(chain, ca.inter)
	}
	return writePair(t, chain, key)
}

func writePair(t *testing.T, chain []*x509.Certificate, key *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	dir := t.TempDir()
	var certPEM []byte
	for _, c := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func certConfig(domain, certFile, keyFile string) *config.Config {
	cfg := config.Default()
	cfg.Domain = domain
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	return cfg
}

// expectFinding fails unless findings include one of level whose message
// contains every part.
func expectFinding(t *testing.T, findings []Finding, level Level, parts ...string) {
	t.Helper()
next:
	for _, f := range findings {
		if f.Level != level {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(f.Message, p) {
				continue next
			}
		}
		if level != OK && f.Fix == "" {
			t.Errorf("finding %q says nothing about what to do", f.Message)
		}
		return
	}
	t.Errorf("no %s finding containing %q in:\n%s", level, parts, dump(findings))
}

func dump(findings []Finding) string {
	var b strings.Builder
	for _, f := range findings {
		fmt.Fprintf(&b, "\t%s %s: %s -> %s\n", f.Level, f.Check, f.Message, f.Fix)
	}
	return b.String()
}

func TestCertificateFindings(t *testing.T) {
	ca := newCA(t)
	opts := Options{Roots: ca.pool, Now: func() time.Time { return now }}
	year := now.AddDate(1, 0, 0)
	tests := []struct {
		name       string
		names      []string
		from, to   time.Time
		chain      bool
		level      Level
		parts      []string
		wantFailed bool
	}{
		{"good", []string{"example.org"}, now.AddDate(0, -1, 0), year, true, OK, []string{"chains to a trusted root"}, false},
		{"good names the domain", []string{"example.org"}, now.AddDate(0, -1, 0), year, true, OK, []string{"covers the domain example.org"}, false},
		{"good validity", []string{"example.org"}, now.AddDate(0, -1, 0), year, true, OK, []string{"valid for 365 more days"}, false},
		{"expired", []string{"example.org"}, now.AddDate(-1, 0, 0), now.AddDate(0, 0, -3), true, Error, []string{"expired on 2030-05-29", "3 days ago"}, true},
		{"near expiry", []string{"example.org"}, now.AddDate(0, -2, 0), now.Add(10*24*time.Hour + time.Hour), true, Warn, []string{"expires in 10 days"}, false},
		{"not yet valid", []string{"example.org"}, now.Add(time.Hour), year, true, Error, []string{"not valid before"}, true},
		{"SAN mismatch", []string{"other.example"}, now.AddDate(0, -1, 0), year, true, Error, []string{"does not cover the domain example.org", "other.example"}, true},
		{"wildcard covers", []string{"*.org", "example.org"}, now.AddDate(0, -1, 0), year, true, OK, []string{"covers"}, false},
		{"chain incomplete", []string{"example.org"}, now.AddDate(0, -1, 0), year, false, Error, []string{"only the server certificate"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := ca.certFiles(t, tt.names, tt.from, tt.to, tt.chain)
			f := Certificate(certConfig("example.org", certFile, keyFile), opts)
			expectFinding(t, f, tt.level, tt.parts...)
			if Failed(f) != tt.wantFailed {
				t.Errorf("Failed() = %v, want %v:\n%s", Failed(f), tt.wantFailed, dump(f))
			}
		})
	}
}

func TestCertificateUntrustedRoot(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	certFile, keyFile := ca.certFiles(t, []string{"example.org"}, now.AddDate(0, -1, 0), now.AddDate(0, 3, 0), true)
	f := Certificate(certConfig("example.org", certFile, keyFile), Options{Roots: other.pool, Now: func() time.Time { return now }})
	expectFinding(t, f, Error, "does not chain to a root this system trusts")
}

func TestCertificateSelfSignedAndMissing(t *testing.T) {
	key := newKey(t)
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "example.org"}, DNSNames: []string{"example.org"},
		NotBefore: now.AddDate(0, -1, 0), NotAfter: now.AddDate(1, 0, 0), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	self := create(t, tmpl, tmpl, key.Public(), key)
	certFile, keyFile := writePair(t, []*x509.Certificate{self}, key)
	opts := Options{Roots: x509.NewCertPool(), Now: func() time.Time { return now }}
	f := Certificate(certConfig("example.org", certFile, keyFile), opts)
	expectFinding(t, f, Warn, "self-signed")
	if Failed(f) {
		t.Errorf("a valid self-signed certificate is an error:\n%s", dump(f))
	}

	// No certificate configured and none generated yet.
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	expectFinding(t, Certificate(cfg, opts), Warn, "none generated yet")

	// Only one of the two files.
	f = Certificate(certConfig("example.org", certFile, ""), opts)
	expectFinding(t, f, Error, "only one of tls.cert_file and tls.key_file")
}

func TestCertificateBrokenFiles(t *testing.T) {
	ca := newCA(t)
	opts := Options{Roots: ca.pool, Now: func() time.Time { return now }}
	certFile, _ := ca.certFiles(t, []string{"example.org"}, now.AddDate(0, -1, 0), now.AddDate(1, 0, 0), true)
	_, otherKey := ca.certFiles(t, []string{"example.org"}, now.AddDate(0, -1, 0), now.AddDate(1, 0, 0), true)
	expectFinding(t, Certificate(certConfig("example.org", certFile, otherKey), opts), Error, "cannot be used")

	missing := filepath.Join(t.TempDir(), "nope.pem")
	expectFinding(t, Certificate(certConfig("example.org", missing, otherKey), opts), Error, "cannot read the certificate file")

	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)
	expectFinding(t, Certificate(certConfig("example.org", garbage, otherKey), opts), Error, "no PEM certificate found")
}

// fakeResolver answers from maps; names not in them do not exist. With
// fail set, every lookup fails as it does without a network.
type fakeResolver struct {
	srv  map[string][]*net.SRV
	ips  map[string][]string
	fail error
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r fakeResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if r.fail != nil {
		return "", nil, r.fail
	}
	key := "_" + service + "._" + proto + "." + name
	if recs, ok := r.srv[key]; ok {
		return key, recs, nil
	}
	return "", nil, notFound(key)
}

func (r fakeResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if r.fail != nil {
		return nil, r.fail
	}
	addrs, ok := r.ips[host]
	if !ok {
		return nil, notFound(host)
	}
	var out []net.IPAddr
	for _, a := range addrs {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	return out, nil
}

func dnsOptions(r Resolver) Options {
	return Options{
		Resolver:   r,
		LocalAddrs: func() ([]net.IP, error) { return []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::10")}, nil },
	}
}

func dnsConfig() *config.Config {
	cfg := config.Default()
	cfg.Domain = "example.org"
	cfg.C2S.Listen = "0.0.0.0:5222"
	cfg.C2S.DirectTLS = "0.0.0.0:5223"
	return cfg
}

// TestDNSFederation: with federation on, the s2s SRV records are checked
// like the client ones; a record left behind while federation is off is
// a warning.
func TestDNSFederation(t *testing.T) {
	cfg := dnsConfig()
	cfg.S2S.Listen = "0.0.0.0:5270"
	cfg.S2S.DirectTLS = "0.0.0.0:5271"
	r := fakeResolver{
		srv: map[string][]*net.SRV{
			"_xmpp-client._tcp.example.org":  {{Target: "xmpp.example.org.", Port: 5222}},
			"_xmpps-client._tcp.example.org": {{Target: "xmpp.example.org.", Port: 5223}},
			"_xmpps-server._tcp.example.org": {{Target: "xmpp.example.org.", Port: 5271}},
		},
		ips: map[string][]string{"xmpp.example.org": {"192.0.2.10"}, "example.org": {"192.0.2.10"}},
	}
	f := DNS(context.Background(), cfg, dnsOptions(r))
	expectFinding(t, f, Warn, "no SRV record _xmpp-server._tcp.example.org", "port 5269")
	expectFinding(t, f, OK, "_xmpps-server._tcp.example.org points to xmpp.example.org port 5271", "an address of this machine")

	cfg.S2S.Listen, cfg.S2S.DirectTLS = "", ""
	r.srv["_xmpp-server._tcp.example.org"] = []*net.SRV{{Target: "xmpp.example.org.", Port: 5269}}
	f = DNS(context.Background(), cfg, dnsOptions(r))
	expectFinding(t, f, Warn, "_xmpp-server._tcp.example.org points to xmpp.example.org port 5269", "federation is off")
}

func TestDNSAllGood(t *testing.T) {
	r := fakeResolver{
		srv: map[string][]*net.SRV{
			"_xmpp-client._tcp.example.org":  {{Target: "xmpp.example.org.", Port: 5222}},
			"_xmpps-client._tcp.example.org": {{Target: "xmpp.example.org.", Port: 5223}},
		},
		ips: map[string][]string{"xmpp.example.org": {"192.0.2.10"}, "example.org": {"198.51.100.1"}},
	}
	f := DNS(context.Background(), dnsConfig(), dnsOptions(r))
	expectFinding(t, f, OK, "_xmpp-client._tcp.example.org points to xmpp.example.org port 5222", "an address of this machine")
	expectFinding(t, f, OK, "_xmpps-client._tcp.example.org points to xmpp.example.org port 5223")
	expectFinding(t, f, OK, "no SRV record _xmpp-server._tcp.example.org", "federation is off")
	// The domain's own A record points elsewhere (a web server): fine
	// with SRV records, but worth a word.
	expectFinding(t, f, Warn, "example.org resolves to 198.51.100.1", "none of which")
	if Failed(f) {
		t.Errorf("errors in a good setup:\n%s", dump(f))
	}
}

func TestDNSProblems(t *testing.T) {
	t.Run("nothing at all", func(t *testing.T) {
		f := DNS(context.Background(), dnsConfig(), dnsOptions(fakeResolver{}))
		expectFinding(t, f, Warn, "no SRV record _xmpp-client._tcp.example.org", "port 5222")
		expectFinding(t, f, Warn, "no SRV record _xmpps-client._tcp.example.org")
		expectFinding(t, f, Error, "clients cannot find the server")
	})
	t.Run("A record only, pointing here", func(t *testing.T) {
		f := DNS(context.Background(), dnsConfig(), dnsOptions(fakeResolver{ips: map[string][]string{"example.org": {"2001:db8::10"}}}))
		expectFinding(t, f, OK, "example.org resolves to 2001:db8::10, an address of this machine")
		if Failed(f) {
			t.Errorf("an A record alone is an error:\n%s", dump(f))
		}
	})
	t.Run("wrong port and dangling target", func(t *testing.T) {
		r := fakeResolver{srv: map[string][]*net.SRV{
			"_xmpp-client._tcp.example.org":  {{Target: "xmpp.example.org.", Port: 5999}},
			"_xmpps-client._tcp.example.org": {{Target: "gone.example.org.", Port: 5223}},
		}, ips: map[string][]string{"xmpp.example.org": {"192.0.2.10"}}}
		f := DNS(context.Background(), dnsConfig(), dnsOptions(r))
		expectFinding(t, f, Warn, "port 5999", "c2s.listen uses port 5222")
		expectFinding(t, f, Error, "gone.example.org", "does not resolve")
	})
	t.Run("service explicitly unavailable", func(t *testing.T) {
		r := fakeResolver{srv: map[string][]*net.SRV{"_xmpp-client._tcp.example.org": {{Target: ".", Port: 0}}}}
		f := DNS(context.Background(), dnsConfig(), dnsOptions(r))
		expectFinding(t, f, Error, `not available`)
	})
	t.Run("no network", func(t *testing.T) {
		r := fakeResolver{fail: &net.DNSError{Err: "dial udp 10.0.0.1:53: connect: network is unreachable", Name: "example.org", IsTemporary: true}}
		f := DNS(context.Background(), dnsConfig(), dnsOptions(r))
		if len(f) != 1 {
			t.Fatalf("want one finding for a machine without DNS, got:\n%s", dump(f))
		}
		expectFinding(t, f, Warn, "DNS lookups fail", "network is unreachable")
	})
	t.Run("local domain", func(t *testing.T) {
		cfg := config.Default()
		f := DNS(context.Background(), cfg, dnsOptions(fakeResolver{fail: errors.New("must not be asked")}))
		expectFinding(t, f, OK, "localhost is local")
	})
}

// fakeListener stands for a bound port.
type fakeListener struct{ net.Listener }

func (fakeListener) Close() error { return nil }

func TestPorts(t *testing.T) {
	cfg := config.Default()
	cfg.C2S.Listen = "0.0.0.0:5222"
	cfg.C2S.DirectTLS = "0.0.0.0:5223"
	cfg.Metrics.Listen = "127.0.0.1:80"
	listen := func(network, addr string) (net.Listener, error) {
		switch addr {
		case "0.0.0.0:5222", "0.0.0.0:5223":
			return nil, &net.OpError{Op: "listen", Net: network, Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
		case "127.0.0.1:80":
			return nil, &net.OpError{Op: "listen", Net: network, Err: os.NewSyscallError("bind", syscall.EACCES)}
		}
		return fakeListener{}, nil
	}
	running := func(context.Context) (admin.Status, error) {
		return admin.Status{PID: 42, Listeners: []admin.Listener{{Service: "c2s STARTTLS", Addr: "0.0.0.0:5222"}}}, nil
	}
	f := Ports(context.Background(), cfg, Options{Listen: listen, Status: running})
	expectFinding(t, f, OK, "c2s.listen 0.0.0.0:5222 is in use by the running Wren (pid 42)")
	expectFinding(t, f, Error, "c2s.direct_tls 0.0.0.0:5223 is in use by another program")
	expectFinding(t, f, Error, "metrics.listen 127.0.0.1:80: permission denied")

	notRunning := func(context.Context) (admin.Status, error) { return admin.Status{}, admin.ErrNotRunning }
	f = Ports(context.Background(), cfg, Options{Listen: listen, Status: notRunning})
	expectFinding(t, f, Error, "c2s.listen 0.0.0.0:5222 is in use by another program")

	// A real free port.
	cfg = config.Default()
	cfg.C2S.Listen = "127.0.0.1:0"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	cfg.C2S.DirectTLS = free
	cfg.Metrics.Listen = ""
	f = Ports(context.Background(), cfg, Options{Status: notRunning})
	if len(f) != 1 {
		t.Fatalf("want one finding (ephemeral and disabled addresses are skipped), got:\n%s", dump(f))
	}
	expectFinding(t, f, OK, free+" is free")
}
