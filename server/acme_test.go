package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"wren.im/wren/config"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// testACME runs Let's Encrypt's test CA (Pebble) in the test, with a DNS
// server that resolves every name to 127.0.0.1, so that its validation
// authority really fetches the HTTP-01 challenge from Wren's listener on
// challengePort. It returns the directory URL, a file with the
// certificate of the directory's HTTPS server, and the CA's root.
func testACME(t *testing.T, challengePort int) (dirURL, caFile string, root *x509.Certificate) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	quiet := log.New(io.Discard, "", 0)
	dnsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t, "udp"))
	dns, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	dns.SetDefaultDNSIPv4("127.0.0.1")
	dns.SetDefaultDNSIPv6("")
	go dns.Run()
	t.Cleanup(dns.Shutdown)

	store := db.NewMemoryStore()
	authority := ca.New(quiet, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(quiet, challengePort, 0, false, dnsAddr, store)
	front := wfe.New(quiet, store, validator, authority, nil, false, false, 3, 5)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)

	caFile = filepath.Join(t.TempDir(), "acme-server.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL + wfe.DirectoryPath, caFile, authority.GetRootCert(0).Cert
}

// TestACMECertificate obtains certificates for the domain and the push
// gateway from a real ACME CA over HTTP-01 and serves them.
func TestACMECertificate(t *testing.T) {
	challengePort := freePort(t, "tcp")
	dirURL, caFile, root := testACME(t, challengePort)
	ts := startTestServer(t, func(c *config.Config) {
		c.Domain = "wren.test"
		c.TLS.ACME = config.ACME{
			Enabled:      true,
			Email:        "admin@wren.test",
			DirectoryURL: dirURL,
			HTTPListen:   "127.0.0.1:" + strconv.Itoa(challengePort),
			CAFile:       caFile,
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(root)
	for _, name := range []string{"wren.test", "push.wren.test"} {
		var chain []*x509.Certificate
		deadline := time.Now().Add(60 * time.Second)
		for {
			tc, err := tls.Dial("tcp", ts.tlsAddr(), &tls.Config{ServerName: name, RootCAs: roots})
			if err == nil {
				chain = tc.ConnectionState().PeerCertificates
				tc.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no certificate from the ACME CA within 60s: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := chain[0].VerifyHostname(name); err != nil {
			t.Fatalf("the ACME certificate does not name %s: %v", name, err)
		}
	}
	// The account key and certificates are cached for the next start.
	// autocert writes a certificate to its cache after handing it out (to
	// a concurrent handshake that waited for it, possibly before), so
	// give the write a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := os.ReadDir(filepath.Join(ts.cfg.DataDir, "acme"))
		if err == nil && len(entries) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ACME cache holds %d entries (%v), want the account key and two certificates", len(entries), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACMEFallsBackToSelfSigned: without a reachable ACME service clients
// still connect, with the self-signed certificate.
func TestACMEFallsBackToSelfSigned(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.Domain = "wren.test"
		c.PushGateway.Enabled = false
		c.TLS.ACME = config.ACME{
			Enabled:      true,
			DirectoryURL: "https://127.0.0.1:1/dir",
			HTTPListen:   "127.0.0.1:0",
		}
	})
	tc, err := tls.Dial("tcp", ts.tlsAddr(), &tls.Config{ServerName: "wren.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("no TLS without an ACME certificate: %v", err)
	}
	defer tc.Close()
	leaf := tc.ConnectionState().PeerCertificates[0]
	if leaf.Issuer.String() != leaf.Subject.String() {
		t.Fatalf("want the self-signed fallback, got a certificate issued by %s", leaf.Issuer)
	}
}
