package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testLogger returns a logger whose output is collected in the returned buffer.
func testLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no CERTIFICATE block in %q", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerate(t *testing.T) {
	certPEM, keyPEM, err := Generate([]string{"example.org", "*.example.org", "192.0.2.1", "::1", "bücher.example"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, certPEM)
	if c.Subject.CommonName != "example.org" {
		t.Errorf("CommonName = %q", c.Subject.CommonName)
	}
	wantDNS := []string{"example.org", "*.example.org", "xn--bcher-kva.example"}
	if !slices.Equal(c.DNSNames, wantDNS) {
		t.Errorf("DNSNames = %q, want %q", c.DNSNames, wantDNS)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", c.IPAddresses)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", c.PublicKey)
	}
	if d := time.Until(c.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
		t.Errorf("NotAfter is %s from now, want about 48h", d)
	}
	if time.Now().Before(c.NotBefore) {
		t.Errorf("NotBefore %s is in the future", c.NotBefore)
	}
	for _, host := range []string{"example.org", "xmpp.example.org", "192.0.2.1"} {
		if err := c.VerifyHostname(host); err != nil {
			t.Errorf("VerifyHostname(%s) = %v", host, err)
		}
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("key does not match certificate: %v", err)
	}
	if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("key PEM does not hold a PKCS #8 PRIVATE KEY block")
	}

	// Serial numbers are random.
	certPEM2, _, err := Generate([]string{"example.org"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if parseCert(t, certPEM2).SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two certificates have the same serial number")
	}
}

func TestGenerateErrors(t *testing.T) {
	if _, _, err := Generate(nil, time.Hour); err == nil {
		t.Error("Generate(nil) succeeded")
	}
	if _, _, err := Generate([]string{"example.org"}, 0); err == nil {
		t.Error("Generate with zero validity succeeded")
	}
}

func TestLoadOrGenerateSelfSigned(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	logger, logs := testLogger()
	cert, err := LoadOrGenerate(dataDir, "localhost", "", "", logger)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf == nil {
		t.Fatal("Leaf is not set")
	}
	leaf := cert.Leaf
	if !slices.Equal(leaf.DNSNames, []string{"localhost", "*.localhost"}) {
		t.Errorf("DNSNames = %q", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", leaf.IPAddresses)
	}
	if d := time.Until(leaf.NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("validity ends in %s, want about a year", d)
	}

	certPath := filepath.Join(dataDir, "tls", "localhost.crt")
	keyPath := filepath.Join(dataDir, "tls", "localhost.key")
	for path, want := range map[string]os.FileMode{
		filepath.Join(dataDir, "tls"): 0o700 | os.ModeDir,
		keyPath:                       0o600,
		certPath:                      0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	out := logs.String()
	for _, want := range []string{"level=INFO", "generated a self-signed TLS certificate", "clients will warn", "path=" + certPath} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q does not contain %q", out, want)
		}
	}

	// The second call reuses the certificate and logs nothing at info.
	logger2, logs2 := testLogger()
	cert2, err := LoadOrGenerate(dataDir, "localhost", "", "", logger2)
	if err != nil {
		t.Fatal(err)
	}
	if cert2.Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("second call generated a new certificate instead of reusing it")
	}
	if strings.Contains(logs2.String(), "generated") {
		t.Errorf("second call logged %q", logs2)
	}
}

func TestLoadOrGenerateOtherDomain(t *testing.T) {
	dataDir := t.TempDir()
	cert, err := LoadOrGenerate(dataDir, "example.org", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cert.Leaf.DNSNames, []string{"example.org", "*.example.org"}) {
		t.Errorf("DNSNames = %q", cert.Leaf.DNSNames)
	}
	if len(cert.Leaf.IPAddresses) != 0 {
		t.Errorf("IPAddresses = %v, want none", cert.Leaf.IPAddresses)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "tls", "example.org.crt")); err != nil {
		t.Error(err)
	}
}

func TestLoadOrGenerateRegeneratesExpired(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	certPEM, keyPEM, err := generate([]string{"localhost"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old := parseCert(t, certPEM)
	if err := os.WriteFile(filepath.Join(dir, "localhost.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "localhost.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	logger, logs := testLogger()
	cert, err := LoadOrGenerate(dataDir, "localhost", "", "", logger)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("expired certificate was reused")
	}
	if !cert.Leaf.NotAfter.After(now) {
		t.Errorf("new certificate expires %s", cert.Leaf.NotAfter)
	}
	if !strings.Contains(logs.String(), "expired") {
		t.Errorf("log %q does not say the old certificate expired", logs)
	}
	// The new one is on disk.
	onDisk, err := os.ReadFile(filepath.Join(dir, "localhost.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if parseCert(t, onDisk).SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Error("the regenerated certificate was not written")
	}
}

func TestLoadOrGenerateReplacesBrokenFiles(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Only a key (as after a crash between the two writes).
	if err := os.WriteFile(filepath.Join(dir, "localhost.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrGenerate(dataDir, "localhost", "", "", nil); err != nil {
		t.Fatalf("with only a key file: %v", err)
	}
	// Both files, but unparsable.
	if err := os.WriteFile(filepath.Join(dir, "localhost.crt"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	logger, logs := testLogger()
	cert, err := LoadOrGenerate(dataDir, "localhost", "", "", logger)
	if err != nil {
		t.Fatalf("with broken files: %v", err)
	}
	if cert.Leaf == nil {
		t.Fatal("Leaf not set")
	}
	if !strings.Contains(logs.String(), "cannot load the self-signed certificate") {
		t.Errorf("log %q does not warn about the broken file", logs)
	}
}

// writePair writes a generated certificate and key into dir.
func writePair(t *testing.T, dir string, domains []string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := Generate(domains, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestLoadOrGenerateExplicitFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, []string{"example.org"})
	dataDir := filepath.Join(dir, "data")
	logger, logs := testLogger()
	cert, err := LoadOrGenerate(dataDir, "example.org", certFile, keyFile, logger)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf == nil || cert.Leaf.Subject.CommonName != "example.org" {
		t.Fatalf("Leaf = %v", cert.Leaf)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "tls")); !os.IsNotExist(err) {
		t.Error("a self-signed certificate was generated although files were configured")
	}
	if logs.Len() != 0 {
		t.Errorf("unexpected log output %q", logs)
	}

	// A certificate for another name loads, with a warning.
	logger, logs = testLogger()
	if _, err := LoadOrGenerate(dataDir, "other.example", certFile, keyFile, logger); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "does not name the configured domain") {
		t.Errorf("log %q does not warn about the domain", logs)
	}
}

func TestLoadOrGenerateBadFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, []string{"example.org"})
	otherDir := filepath.Join(dir, "other")
	if err := os.Mkdir(otherDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, otherKey := writePair(t, otherDir, []string{"example.org"})
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name              string
		certFile, keyFile string
		want              []string
	}{
		{"missing cert", missing, keyFile, []string{"certificate file " + missing, "no such file"}},
		{"missing key", certFile, missing, []string{"key file " + missing, "no such file"}},
		{"cert without key", certFile, "", []string{"key_file"}},
		{"key without cert", "", keyFile, []string{"cert_file"}},
		{"garbage cert", garbage, keyFile, []string{"certificate file " + garbage, "no PEM data"}},
		{"garbage key", certFile, garbage, []string{"key file " + garbage, "no PEM data"}},
		{"swapped", keyFile, certFile, []string{"certificate file " + keyFile, "swapped"}},
		{"mismatched key", certFile, otherKey, []string{"certificate file " + certFile, "key file " + otherKey, "does not match"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadOrGenerate(dir, "example.org", tt.certFile, tt.keyFile, nil)
			if err == nil {
				t.Fatal("LoadOrGenerate succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFindInDir(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := FindInDir(dir, "example.org"); err == nil || !strings.Contains(err.Error(), "fullchain.pem") {
		t.Fatalf("empty directory: %v, want an error naming the places looked at", err)
	}
	for _, f := range []string{"example.org.crt", "example.org.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, k, err := FindInDir(dir, "example.org")
	if err != nil || filepath.Base(c) != "example.org.crt" || filepath.Base(k) != "example.org.key" {
		t.Fatalf("flat layout: %s %s %v", c, k, err)
	}
	live := filepath.Join(dir, "example.org")
	os.Mkdir(live, 0o700)
	for _, f := range []string{"fullchain.pem", "privkey.pem"} {
		if err := os.WriteFile(filepath.Join(live, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, k, err = FindInDir(dir, "example.org")
	if err != nil || c != filepath.Join(live, "fullchain.pem") || k != filepath.Join(live, "privkey.pem") {
		t.Fatalf("certbot layout must win: %s %s %v", c, k, err)
	}
}
