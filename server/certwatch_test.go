package server

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wren.im/wren/config"
)

// directTLSSerial returns the serial of the certificate served on the
// direct TLS listener now.
func directTLSSerial(t *testing.T, ts *testServer) string {
	t.Helper()
	tc, err := tls.Dial("tcp", ts.tlsAddr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// TestCertificateDirectoryWatched: a certificate found in tls.cert_dir in
// certbot's layout is served, and a renewal written over it is picked up
// without a reload command while a client stays connected; a broken
// renewal keeps the previous certificate.
func TestCertificateDirectoryWatched(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "localhost")
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(live, "fullchain.pem"), filepath.Join(live, "privkey.pem")
	first := writeCert(t, certPath, keyPath)
	ts := startTestServer(t, func(c *config.Config) {
		c.TLS.CertDir = dir
		c.TLS.WatchInterval = config.Duration{Duration: 50 * time.Millisecond}
	})
	ts.addUser(t, "alice", password)
	if got := directTLSSerial(t, ts); got != first {
		t.Fatalf("served %s, want the certificate from the directory %s", got, first)
	}
	client := dialRaw(t, ts.addr())
	client.login("localhost", "alice", password, "stays")

	// The renewed files get a later modification time than the first.
	second := writeCert(t, certPath, keyPath)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(certPath, later, later)
	os.Chtimes(keyPath, later, later)
	waitFor(t, "the renewed certificate to be served", func() bool { return directTLSSerial(t, ts) == second })

	client.send(`<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := client.next(); r.Attr("id") != "still" || r.Attr("type") != "result" {
		t.Fatalf("the connected client after the renewal: %s", r)
	}

	if err := os.WriteFile(certPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	evenLater := later.Add(2 * time.Second)
	os.Chtimes(certPath, evenLater, evenLater)
	// Give the watcher several intervals to (wrongly) act on it.
	time.Sleep(300 * time.Millisecond)
	if got := directTLSSerial(t, ts); got != second {
		t.Fatalf("after a broken renewal the server serves %s, want %s", got, second)
	}
}
