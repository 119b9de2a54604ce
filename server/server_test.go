package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"wren.im/wren/auth"
	"wren.im/wren/config"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// testServer runs an in-process server on loopback with a temp data dir.
type testServer struct {
	*Server
	cancel context.CancelFunc
	done   chan error
}

func startTestServer(t *testing.T, mutate func(*config.Config)) *testServer {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return startTestServerWithLogger(t, logger, func(c *config.Config) {
		c.Metrics.Listen = "127.0.0.1:0"
		if mutate != nil {
			mutate(c)
		}
	})
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (ts *testServer) addUser(t *testing.T, name, password string) {
	t.Helper()
	sha1, sha256, err := auth.NewCredentials(password, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.store.CreateAccount(context.Background(), storage.Account{Username: name, Created: time.Now(), SHA1: sha1, SHA256: sha256}); err != nil {
		t.Fatal(err)
	}
}

// rawClient speaks XMPP by hand so that tests can send anything.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *xmpp.Reader
	w    *bufio.Writer
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &rawClient{t: t, conn: conn, w: bufio.NewWriter(conn)}
	c.r = xmpp.NewReader(conn, xmpp.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxAttrs: 64})
	return c
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := c.w.WriteString(s); err != nil {
		c.t.Fatal(err)
	}
	if err := c.w.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) open(domain string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>`, domain))
	if _, err := c.r.ReadHeader(); err != nil {
		c.t.Fatalf("reading stream header: %v", err)
	}
}

func (c *rawClient) next() *xmpp.Element {
	c.t.Helper()
	el, err := c.r.Next()
	if err != nil {
		c.t.Fatalf("reading from server: %v", err)
	}
	return el
}

// expectStreamError reads until a stream error and checks its condition and
// that the server then closes the stream.
func (c *rawClient) expectStreamError(cond string) {
	c.t.Helper()
	for {
		el, err := c.r.Next()
		if err != nil {
			c.t.Fatalf("expected stream error %s, got %v", cond, err)
		}
		if el.Is(xmpp.NSStream, "error") {
			if el.Child(xmpp.NSStreams, cond) == nil {
				c.t.Fatalf("stream error = %s, want %s", el, cond)
			}
			break
		}
	}
	if _, err := c.r.Next(); err != xmpp.ErrStreamClosed && err != io.ErrUnexpectedEOF {
		c.t.Fatalf("after the stream error: %v, want the stream closed", err)
	}
}

func (c *rawClient) starttls() {
	c.t.Helper()
	f := c.next()
	if f.Child(xmpp.NSTLS, "starttls") == nil {
		c.t.Fatalf("no starttls in %s", f)
	}
	c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if p := c.next(); !p.Is(xmpp.NSTLS, "proceed") {
		c.t.Fatalf("got %s", p)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn = tc
	c.w = bufio.NewWriter(tc)
	c.r.Reset(tc)
}

// login does STARTTLS, PLAIN and bind, returning the features after TLS.
func (c *rawClient) login(domain, user, password, resource string) string {
	c.t.Helper()
	c.open(domain)
	c.starttls()
	c.open(domain)
	c.next() // features
	c.send(fmt.Sprintf(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>`,
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+password))))
	if s := c.next(); !s.Is(xmpp.NSSASL, "success") {
		c.t.Fatalf("auth: %s", s)
	}
	c.open(domain)
	c.next() // features with bind
	c.send(fmt.Sprintf(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>%s</resource></bind></iq>`, resource))
	res := c.next()
	j := res.Child(xmpp.NSBind, "bind").ChildText(xmpp.NSBind, "jid")
	if j == "" {
		c.t.Fatalf("bind: %s", res)
	}
	return j
}

func (ts *testServer) addr() string    { return ts.Addrs()[0].String() }
func (ts *testServer) tlsAddr() string { return ts.Addrs()[1].String() }

func TestStartTLSRequiredBeforeAuth(t *testing.T) {
	ts := startTestServer(t, nil)
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	f := c.next()
	if f.Child(xmpp.NSTLS, "starttls").Child(xmpp.NSTLS, "required") == nil {
		t.Fatalf("STARTTLS not required: %s", f)
	}
	if f.Child(xmpp.NSSASL, "mechanisms") != nil {
		t.Fatalf("mechanisms offered before TLS: %s", f)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>`)
	if fl := c.next(); fl.Child(xmpp.NSSASL, "encryption-required") == nil {
		t.Fatalf("got %s", fl)
	}
}

func TestMechanismsAfterTLS(t *testing.T) {
	ts := startTestServer(t, nil)
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.starttls()
	c.open("localhost")
	f := c.next()
	var mechs []string
	for _, m := range f.Child(xmpp.NSSASL, "mechanisms").Elements() {
		mechs = append(mechs, m.Text())
	}
	got := strings.Join(mechs, " ")
	for _, want := range []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} {
		if !strings.Contains(got, want) {
			t.Errorf("mechanisms %q lack %s", got, want)
		}
	}
	if f.Child(xmpp.NSTLS, "starttls") != nil {
		t.Errorf("starttls offered again after TLS")
	}
}

func TestHostUnknown(t *testing.T) {
	ts := startTestServer(t, nil)
	c := dialRaw(t, ts.addr())
	c.send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='other.example' version='1.0'>`)
	if _, err := c.r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	c.expectStreamError(xmpp.StreamHostUnknown)
}

func TestWrongPasswordNotAuthorized(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", "correct horse")
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.starttls()
	c.open("localhost")
	c.next()
	for i := 0; i < 2; i++ {
		c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")) + `</auth>`)
		if f := c.next(); f.Child(xmpp.NSSASL, "not-authorized") == nil {
			t.Fatalf("got %s", f)
		}
	}
}

func TestStanzaLimitsAndForgedFrom(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.C2S.MaxStanzaBytes = 4096; c.C2S.MaxDepth = 10 })
	ts.addUser(t, "alice", "correct horse")
	cases := []struct {
		name, stanza, cond string
	}{
		{"oversized", `<message to='bob@localhost'><body>` + strings.Repeat("x", 5000) + `</body></message>`, xmpp.StreamPolicyViolation},
		{"too deep", strings.Repeat("<a>", 20) + strings.Repeat("</a>", 20), xmpp.StreamPolicyViolation},
		{"forged from", `<message from='bob@localhost/x' to='alice@localhost'><body>hi</body></message>`, xmpp.StreamInvalidFrom},
		{"not a stanza", `<foo xmlns='jabber:client'/>`, xmpp.StreamUnsupportedStanza},
		{"comment", `<!-- hi -->`, xmpp.StreamRestrictedXML},
		{"bad xml", `<message><body></message>`, xmpp.StreamNotWellFormed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr())
			c.login("localhost", "alice", "correct horse", "r")
			c.send(tc.stanza)
			c.expectStreamError(tc.cond)
		})
	}
}

func TestStanzaBeforeAuthIsRefused(t *testing.T) {
	ts := startTestServer(t, nil)
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.next()
	c.send(`<message to='alice@localhost'><body>hi</body></message>`)
	c.expectStreamError(xmpp.StreamNotAuthorized)
}

func TestResourceConflictReplacesOldSession(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", "correct horse")
	old := dialRaw(t, ts.addr())
	old.login("localhost", "alice", "correct horse", "same")
	nw := dialRaw(t, ts.addr())
	j := nw.login("localhost", "alice", "correct horse", "same")
	if j != "alice@localhost/same" {
		t.Fatalf("bound %s", j)
	}
	old.expectStreamError(xmpp.StreamConflict)
}

func TestServerGeneratesResource(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", "correct horse")
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.starttls()
	c.open("localhost")
	c.next()
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00correct horse")) + `</auth>`)
	c.next()
	c.open("localhost")
	c.next()
	c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`)
	j := c.next().Child(xmpp.NSBind, "bind").ChildText(xmpp.NSBind, "jid")
	if !strings.HasPrefix(j, "alice@localhost/") || len(j) <= len("alice@localhost/") {
		t.Fatalf("generated JID %q", j)
	}
}

func TestAuthTimeout(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.C2S.AuthTimeout = config.Duration{Duration: 300 * time.Millisecond} })
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.next()
	start := time.Now()
	c.expectStreamError(xmpp.StreamConnectionTimeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %s", d)
	}
}

func TestIQWithoutChildIsBadRequest(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", "correct horse")
	c := dialRaw(t, ts.addr())
	c.login("localhost", "alice", "correct horse", "r")
	c.send(`<iq type='get' id='x1' to='localhost'/>`)
	r := c.next()
	if r.Attr("type") != "error" || r.Child(xmpp.NSClient, "error").Child(xmpp.NSStanzas, "bad-request") == nil {
		t.Fatalf("got %s", r)
	}
	c.send(`<iq type='get' id='x2' to='localhost'><query xmlns='urn:nobody'/></iq>`)
	r = c.next()
	if r.Attr("id") != "x2" || r.Child(xmpp.NSClient, "error").Child(xmpp.NSStanzas, "service-unavailable") == nil {
		t.Fatalf("got %s", r)
	}
}
