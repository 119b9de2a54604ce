package interop

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"wren.im/wren/xmpp"
)

// rawSession is a minimal hand-written client: STARTTLS, PLAIN, bind.
type rawSession struct {
	t    *testing.T
	conn net.Conn
	r    *xmpp.Reader
	w    *bufio.Writer
}

func rawLogin(t *testing.T, s *Server, user, resource string) *rawSession {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+s.Port, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	c := &rawSession{t: t, conn: conn, w: bufio.NewWriter(conn)}
	c.r = xmpp.NewReader(conn, xmpp.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxAttrs: 64})
	c.open(s.Domain)
	c.next() // features
	c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	c.next() // proceed
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.w = tc, bufio.NewWriter(tc)
	c.r.Reset(tc)
	c.open(s.Domain)
	c.next()
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00secret-"+user)) + `</auth>`)
	if el := c.next(); !el.Is(xmpp.NSSASL, "success") {
		t.Fatalf("auth: %s", el)
	}
	c.open(s.Domain)
	c.next()
	c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`)
	c.next()
	return c
}

func (c *rawSession) open(domain string) {
	c.send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + domain + `' version='1.0'>`)
	if _, err := c.r.ReadHeader(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawSession) send(s string) {
	c.w.WriteString(s)
	c.w.Flush()
}

func (c *rawSession) next() *xmpp.Element {
	c.t.Helper()
	el, err := c.r.Next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return el
}

// TestCrashLosesNothingAcknowledged streams messages to an offline user
// with stream management, kills the server with SIGKILL in the middle,
// restarts it on the same data, and checks that every message the server
// had acknowledged to the sender is delivered.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	const total = 3000
	s := startServer(t)
	s.addUser("alice")
	s.addUser("bob")
	dir := s.Dir
	alice := rawLogin(t, s, "alice", "desk")
	alice.send(`<enable xmlns='urn:xmpp:sm:3'/>`)
	if el := alice.next(); !el.Is(xmpp.NSSM, "enabled") {
		t.Fatalf("enable: %s", el)
	}
	var maxH atomic.Uint32
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			el, err := alice.r.Next()
			if err != nil {
				return
			}
			if el.Is(xmpp.NSSM, "a") {
				if h, err := strconv.ParseUint(el.Attr("h"), 10, 32); err == nil && uint32(h) > maxH.Load() {
					maxH.Store(uint32(h))
				}
			}
		}
	}()
	go func() {
		for i := 0; i < total; i++ {
			fmt.Fprintf(alice.w, `<message to='bob@localhost' type='chat'><body>%d</body></message>`, i)
			if i%25 == 24 {
				alice.w.WriteString(`<r xmlns='urn:xmpp:sm:3'/>`)
				if alice.w.Flush() != nil {
					return
				}
			}
		}
		alice.w.Flush()
	}()
	// Kill the server while messages are still in flight.
	deadline := time.Now().Add(30 * time.Second)
	for maxH.Load() < total/4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d messages acknowledged in 30s", maxH.Load())
		}
		time.Sleep(time.Millisecond)
	}
	s.cmd.Process.Kill()
	<-s.done
	<-readerDone
	h := maxH.Load()
	if h >= total {
		t.Fatalf("all %d messages were handled before the kill; the test proves nothing", total)
	}

	s2 := startServerIn(t, dir)
	bob := rawLogin(t, s2, "bob", "phone")
	bob.send(`<presence/>`)
	got := map[int]bool{}
	deadline = time.Now().Add(30 * time.Second)
	for len(got) < int(h) && time.Now().Before(deadline) {
		el := bob.next()
		if !el.Is(xmpp.NSClient, "message") {
			continue
		}
		n, err := strconv.Atoi(el.ChildText(xmpp.NSClient, "body"))
		if err != nil {
			t.Fatalf("unexpected message %s", el)
		}
		if got[n] {
			t.Fatalf("message %d delivered twice", n)
		}
		got[n] = true
	}
	for i := 0; i < int(h); i++ {
		if !got[i] {
			t.Fatalf("message %d was acknowledged (h=%d) before the crash but never delivered", i, h)
		}
	}
	t.Logf("SIGKILL with %d of %d messages acknowledged; all %d delivered after restart", h, total, h)
}
