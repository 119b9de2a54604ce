package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/check"
	"wren.im/wren/xmpp"
)

// syncBuffer collects the log of an in-process server.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inProcessServer runs 'wren serve' in this process on ephemeral ports
// with data in a new directory, and waits for its admin socket to answer.
type inProcessServer struct {
	data   string
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func startServe(t *testing.T, extra ...string) *inProcessServer {
	t.Helper()
	// Unix socket paths are short: keep the data directory near the root.
	dir, err := os.MkdirTemp("", "wcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &inProcessServer{data: filepath.Join(dir, "data"), log: &syncBuffer{}, done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	args := append([]string{"serve", "--data", s.data, "--c2s", "127.0.0.1:0", "--c2s-tls", "127.0.0.1:0", "--metrics", "127.0.0.1:0"}, extra...)
	go func() { s.done <- run(ctx, args, strings.NewReader(""), &bytes.Buffer{}, s.log) }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for {
		// The socket exists from early in the start-up; a status answer
		// means the server serves.
		c, err := admin.Dial(context.Background(), filepath.Join(s.data, admin.SocketName))
		if err == nil {
			_, err = c.Status(context.Background())
			c.Close()
			if err == nil {
				return s
			}
		}
		select {
		case code := <-s.done:
			s.done <- code
			t.Fatalf("serve exited with %d:\n%s", code, s.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin socket did not answer within 15s:\n%s", s.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *inProcessServer) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code
		if code != exitOK {
			t.Errorf("serve exited with %d:\n%s", code, s.log)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15s")
	}
}

// wren runs a command against this server's data directory.
func (s *inProcessServer) wren(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return wren(t, stdin, append(args, "--data", s.data)...)
}

// c2sAddr asks the server where it accepts STARTTLS clients.
func (s *inProcessServer) c2sAddr(t *testing.T) string {
	t.Helper()
	r := s.wren(t, "", "status", "--json")
	var st admin.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r)
	}
	for _, l := range st.Listeners {
		if l.Service == "c2s STARTTLS" {
			return l.Addr
		}
	}
	t.Fatalf("no STARTTLS listener in %+v", st.Listeners)
	return ""
}

// xmppClient is a minimal client: STARTTLS, PLAIN, bind.
type xmppClient struct {
	t    *testing.T
	conn net.Conn
	r    *xmpp.Reader
}

func (c *xmppClient) send(s string) {
	c.t.Helper()
	if _, err := fmt.Fprint(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *xmppClient) next() *xmpp.Element {
	c.t.Helper()
	el, err := c.r.Next()
	if err != nil {
		c.t.Fatalf("reading: %v", err)
	}
	return el
}

func (c *xmppClient) open() {
	c.t.Helper()
	c.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`)
	if _, err := c.r.ReadHeader(); err != nil {
		c.t.Fatal(err)
	}
	c.next() // features
}

func login(t *testing.T, addr, user, pass, resource string) *xmppClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &xmppClient{t: t, conn: conn, r: xmpp.NewReader(conn, xmpp.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxAttrs: 64})}
	c.open()
	c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	c.next() // proceed
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn = tc
	c.r.Reset(tc)
	c.open()
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)) + `</auth>`)
	if el := c.next(); !el.Is(xmpp.NSSASL, "success") {
		t.Fatalf("auth: %s", el)
	}
	c.open()
	c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	c.next()
	return c
}

func (c *xmppClient) expectStreamError(cond, text string) {
	c.t.Helper()
	for {
		el := c.next()
		if el.Is(xmpp.NSStream, "error") {
			if el.Child(xmpp.NSStreams, cond) == nil || !strings.Contains(el.ChildText(xmpp.NSStreams, "text"), text) {
				c.t.Fatalf("stream error %s, want %s %q", el, cond, text)
			}
			return
		}
	}
}

func TestAdminCommandsAgainstRunningServer(t *testing.T) {
	s := startServe(t)

	r := s.wren(t, "", "status")
	r.expect(t, exitOK, []string{"Wren dev serving localhost", "0 clients (c2s)", "0 bound, 0 hibernated", "(c2s STARTTLS)", "(metrics)"}, nil)

	// User management goes through the socket while the server runs.
	r = s.wren(t, "a good password\n", "user", "add", "alice", "--password-stdin")
	r.expect(t, exitOK, []string{"created user alice@localhost"}, nil)
	if !strings.Contains(s.log.String(), "user created by an administrator") {
		t.Errorf("user add did not go through the server:\n%s", s.log)
	}
	r = s.wren(t, "x\n", "user", "add", "alice", "--password-stdin")
	r.expect(t, exitFailure, nil, []string{"user alice@localhost already exists"})
	r = s.wren(t, "", "user", "list")
	if r.code != exitOK || r.stdout != "alice@localhost\n" {
		t.Errorf("user list:\n%s", r)
	}
	r = s.wren(t, "another password\n", "user", "passwd", "alice", "--password-stdin")
	r.expect(t, exitOK, []string{"changed the password of alice@localhost"}, nil)
	r = s.wren(t, "x\n", "user", "passwd", "nobody", "--password-stdin")
	r.expect(t, exitFailure, nil, []string{"no such user nobody@localhost"})

	// Sessions.
	r = s.wren(t, "", "session", "list")
	r.expect(t, exitOK, nil, []string{"no client session is bound"})
	addr := s.c2sAddr(t)
	phone := login(t, addr, "alice", "another password", "phone")
	desk := login(t, addr, "alice", "another password", "desk")
	r = s.wren(t, "", "session", "list", "alice")
	r.expect(t, exitOK, []string{"JID", "alice@localhost/desk", "alice@localhost/phone", "active", "STARTTLS"}, nil)
	r = s.wren(t, "", "session", "list", "--json")
	var list []admin.Session
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Fatalf("session list --json: %v\n%s", err, r)
	}
	r = s.wren(t, "", "status")
	r.expect(t, exitOK, []string{"2 clients (c2s)", "2 bound"}, nil)

	r = s.wren(t, "", "session", "kick", "alice@localhost/phone", "--reason", "testing the kick")
	r.expect(t, exitOK, []string{"ended the session of alice@localhost/phone"}, nil)
	phone.expectStreamError(xmpp.StreamPolicyViolation, "testing the kick")
	r = s.wren(t, "", "session", "kick", "alice@localhost/phone")
	r.expect(t, exitFailure, nil, []string{"alice@localhost/phone has no session", "wren session list alice"})
	r = s.wren(t, "", "session", "kick", "bob@elsewhere.example")
	r.expect(t, exitFailure, nil, []string{"not on this server's domain"})
	r = s.wren(t, "", "session", "kick")
	r.expect(t, exitUsage, nil, []string{"expected one JID"})

	// Deleting the user ends the remaining session.
	r = s.wren(t, "", "user", "del", "alice")
	r.expect(t, exitOK, []string{"deleted user alice@localhost", "ended 1 session: alice@localhost/desk"}, nil)
	desk.expectStreamError(xmpp.StreamNotAuthorized, "deleted by an administrator")

	// Reload, by command and by SIGHUP.
	r = s.wren(t, "", "reload")
	r.expect(t, exitOK, []string{"reloaded the configuration from (built-in defaults) with command-line options", "certificate (unchanged): localhost"}, nil)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(s.log.String(), `msg=reloaded`) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", s.log)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// wren check sees the running server.
	r = s.wren(t, "", "check", "--c2s", "127.0.0.1:0", "--c2s-tls", "", "--metrics", "")
	r.expect(t, exitOK, []string{"ok     server       Wren dev is running for localhost", "warn   certificate", "self-signed", "no errors"}, nil)

	s.stop(t)
	for _, args := range [][]string{{"status"}, {"session", "list"}, {"session", "kick", "alice"}, {"reload"}} {
		r = s.wren(t, "", args...)
		r.expect(t, exitNotRunning, nil, []string{"the Wren server is not running", "wren serve"})
	}
	// User commands fall back to the database.
	r = s.wren(t, "", "user", "list")
	r.expect(t, exitOK, nil, nil)
	if r.stdout != "" {
		t.Errorf("user list after deleting alice: %q", r.stdout)
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	r := wren(t, "", "cert", "generate", "example.org", "--out", dir, "--days", "30")
	r.expect(t, exitOK, nil, nil)
	cfgPath := writeFile(t, "wren.toml", fmt.Sprintf(`domain = "example.org"
data_dir = %q
[tls]
cert_file = %q
key_file = %q
[c2s]
listen = "127.0.0.1:0"
direct_tls = ""
[metrics]
listen = ""
`, filepath.Join(dir, "data"), filepath.Join(dir, "example.org.crt"), filepath.Join(dir, "example.org.key")))
	resolver := fakeResolver{
		"_xmpp-client._tcp.example.org": {{Target: "xmpp.example.org.", Port: 5222}},
	}
	checkAt := func(now time.Time, args ...string) result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		c := &cli{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, checkOptions: check.Options{
			Resolver:   resolver,
			Now:        func() time.Time { return now },
			LocalAddrs: func() ([]net.IP, error) { return []net.IP{net.ParseIP("192.0.2.1")}, nil },
		}}
		code := runCheck(context.Background(), c, checkCommand(), append([]string{"--config", cfgPath}, args...))
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}

	r = checkAt(time.Now())
	r.expect(t, exitOK, []string{
		"ok     config       the configuration " + cfgPath + " is valid",
		"ok     certificate  " + filepath.Join(dir, "example.org.crt") + " covers the domain example.org",
		"warn   certificate", "is self-signed: clients warn about it or refuse it -> set tls.cert_file",
		"ok     dns          _xmpp-client._tcp.example.org points to xmpp.example.org port 5222 (192.0.2.1), an address of this machine",
		"no errors",
	}, nil)

	r = checkAt(time.Now().Add(25*24*time.Hour), "--json")
	var findings []check.Finding
	if err := json.Unmarshal([]byte(r.stdout), &findings); err != nil {
		t.Fatalf("--json: %v\n%s", err, r)
	}
	if r.code != exitOK {
		t.Errorf("a certificate 5 days from expiry is not an error:\n%s", r)
	}
	found := false
	for _, f := range findings {
		if f.Level == check.Warn && f.Check == "certificate" && strings.Contains(f.Message, "expires in") {
			found = true
		}
	}
	if !found {
		t.Errorf("no expiry warning in %+v", findings)
	}

	r = checkAt(time.Now().Add(40 * 24 * time.Hour))
	r.expect(t, exitFailure, []string{"error  certificate", "expired on", "renew it", "1 error"}, nil)

	bad := writeFile(t, "bad.toml", "domain = \"exa mple\"\n")
	r = wren(t, "", "check", "--config", bad)
	r.expect(t, exitFailure, []string{"error  config", `domain "exa mple" is not a valid XMPP domain`}, nil)

	r = wren(t, "", "check", "--config", filepath.Join(t.TempDir(), "missing.toml"))
	r.expect(t, exitFailure, []string{"error  config", "cannot read the file"}, nil)
}

// fakeResolver answers SRV queries from a map and resolves every target
// to 192.0.2.1; anything else does not exist.
type fakeResolver map[string][]*net.SRV

func (r fakeResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	if recs, ok := r[key]; ok {
		return key, recs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
}

func (r fakeResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if strings.HasPrefix(host, "xmpp.") {
		return []net.IPAddr{{IP: net.ParseIP("192.0.2.1")}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestCertGenerate(t *testing.T) {
	dir := t.TempDir()
	r := wren(t, "", "cert", "generate", "example.org", "*.example.org", "--out", dir, "--days", "30")
	r.expect(t, exitOK, []string{"created a self-signed certificate for example.org, *.example.org", "cert_file = "}, nil)
	certPath, keyPath := filepath.Join(dir, "example.org.crt"), filepath.Join(dir, "example.org.key")
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %s, want 0600", fi.Mode())
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(keyPath)
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("the certificate and key do not match: %v", err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(leaf.DNSNames, " ") != "example.org *.example.org" {
		t.Errorf("names %v", leaf.DNSNames)
	}
	if d := time.Until(leaf.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("valid for %s, want 30 days", d)
	}

	r = wren(t, "", "cert", "generate", "example.org", "--out", dir)
	r.expect(t, exitFailure, nil, []string{"already exists", "--force"})
	if after, _ := os.ReadFile(certPath); !bytes.Equal(after, certPEM) {
		t.Error("the certificate was replaced without --force")
	}
	r = wren(t, "", "cert", "generate", "example.org", "--out", dir, "--force")
	r.expect(t, exitOK, nil, nil)
	if after, _ := os.ReadFile(certPath); bytes.Equal(after, certPEM) {
		t.Error("--force did not replace the certificate")
	}

	// By default it goes where the server looks for its own.
	data := filepath.Join(t.TempDir(), "data")
	r = wren(t, "", "cert", "generate", "localhost", "--data", data)
	r.expect(t, exitOK, []string{filepath.Join(data, "tls", "localhost.crt"), "The server uses it"}, nil)

	r = wren(t, "", "cert", "generate", "--out", dir)
	r.expect(t, exitUsage, nil, []string{"missing DOMAIN"})
	r = wren(t, "", "cert", "generate", "example.org", "--days", "0", "--out", dir)
	r.expect(t, exitUsage, nil, []string{"--days must be at least 1"})
}

// TestServeLogFormat checks that log.format = "json" makes every line of
// the server's log a JSON object.
func TestServeLogFormat(t *testing.T) {
	cfg := writeFile(t, "wren.toml", "[log]\nformat = \"json\"\n")
	s := startServe(t, "--config", cfg)
	s.stop(t)
	sc := bufio.NewScanner(strings.NewReader(s.log.String()))
	n := 0
	for sc.Scan() {
		n++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("log line %d is not JSON: %s", n, sc.Text())
		}
	}
	if n < 3 {
		t.Errorf("only %d log lines:\n%s", n, s.log)
	}
}
