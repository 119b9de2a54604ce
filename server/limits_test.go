package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"wren.im/wren/config"
	"wren.im/wren/xmpp"
)

func TestConnectionsPerIPLimit(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.C2S.MaxConnectionsPerIP = 2 })
	a := dialRaw(t, ts.addr())
	a.open("localhost")
	b := dialRaw(t, ts.addr())
	b.open("localhost")
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.expectStreamError(xmpp.StreamPolicyViolation)
	// The first two are unaffected, and a slot frees up when one leaves.
	a.next()
	b.next()
	a.conn.Close()
	time.Sleep(100 * time.Millisecond)
	d := dialRaw(t, ts.addr())
	d.open("localhost")
	if f := d.next(); !f.Is(xmpp.NSStream, "features") {
		t.Fatalf("after a slot freed up: %s", f)
	}
}

// TestStanzaRateSlowsNotDrops floods the server faster than the configured
// rate: every stanza must still be answered, and not faster than the rate
// allows.
func TestStanzaRateSlowsNotDrops(t *testing.T) {
	const rate, burst, n = 40, 5, 65
	ts := startTestServer(t, func(c *config.Config) {
		c.C2S.StanzaRate = rate
		c.C2S.StanzaBurst = burst
	})
	ts.addUser(t, "alice", smPass)
	c := dialRaw(t, ts.addr())
	c.login("localhost", "alice", smPass, "r")
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `<iq type='get' id='p%d' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, i)
	}
	start := time.Now()
	c.send(b.String())
	for i := 0; i < n; i++ {
		r := c.next()
		if r.Attr("type") != "result" || r.Attr("id") != fmt.Sprintf("p%d", i) {
			t.Fatalf("answer %d: %s", i, r)
		}
	}
	// (n - burst) stanzas had to wait for tokens at rate/s.
	minimum := time.Duration(float64(n-burst)/rate*float64(time.Second)) * 9 / 10
	if d := time.Since(start); d < minimum {
		t.Fatalf("%d stanzas answered in %s: the %d/s limit was not applied (expected at least %s)", n, d, rate, minimum)
	}
}

// TestClientThatNeverReads floods a client that stops reading: its queue
// fills, its session ends, the messages that could not be written go to
// offline storage, and other sessions keep working meanwhile.
func TestClientThatNeverReads(t *testing.T) {
	const n = 3000
	ts := startTestServer(t, func(c *config.Config) {
		c.C2S.SendQueue = 200
		c.C2S.StanzaRate = 0
		c.C2S.ByteRate = 0
		c.Offline.MaxPerUser = 0
	})
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	ts.addUser(t, "carol", smPass)
	bob := dialRaw(t, ts.addr())
	bob.login("localhost", "bob", smPass, "stuck")
	bob.send(`<presence/>`)
	bob.conn.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn).SetReadBuffer(4096)
	// bob never reads again.
	carol := dialRaw(t, ts.addr())
	carol.login("localhost", "carol", smPass, "ok")
	alice := dialRaw(t, ts.addr())
	alice.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	alice.login("localhost", "alice", smPass, "desk")
	body := strings.Repeat("x", 8000) // 24 MB in all: more than TCP buffers hold
	for i := 0; i < n; i++ {
		alice.w.WriteString(fmt.Sprintf(`<message to='bob@localhost/stuck' type='chat'><body>%d %s</body></message>`, i, body))
	}
	alice.w.Flush()
	// Meanwhile carol is served promptly.
	start := time.Now()
	carol.send(`<iq type='get' id='c1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := carol.next(); r.Attr("id") != "c1" {
		t.Fatalf("carol got %s", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("carol waited %s while bob was stuck", d)
	}
	waitFor(t, "bob's stalled session to end", func() bool { return len(ts.router.Sessions("bob")) == 0 })
	// Everything not written to bob's socket is in offline storage, in order.
	lastNumber := func(stanza []byte) int {
		el, err := xmpp.ParseElement(stanza)
		if err != nil {
			t.Fatal(err)
		}
		num, _, _ := strings.Cut(el.ChildText(xmpp.NSClient, "body"), " ")
		v, _ := strconv.Atoi(num)
		return v
	}
	waitFor(t, "the last message to reach offline storage", func() bool {
		msgs, _ := ts.store.OfflineMessages(context.Background(), "bob")
		return len(msgs) > 0 && lastNumber(msgs[len(msgs)-1].Stanza) == n-1
	})
	msgs, err := ts.store.OfflineMessages(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	prev := -1
	for _, m := range msgs {
		el, err := xmpp.ParseElement(m.Stanza)
		if err != nil {
			t.Fatal(err)
		}
		num, _, _ := strings.Cut(el.ChildText(xmpp.NSClient, "body"), " ")
		v, _ := strconv.Atoi(num)
		if v <= prev {
			t.Fatalf("offline order broken: %d after %d", v, prev)
		}
		prev = v
	}
	if prev != n-1 {
		t.Fatalf("last offline message is %d, want %d", prev, n-1)
	}
	t.Logf("bob's session ended with a full queue; %d of %d messages went to offline storage", len(msgs), n)
}

// TestByteRateSlowsNotDrops sends more bytes than the per-connection byte
// rate allows: everything is answered, and not faster than the rate.
func TestByteRateSlowsNotDrops(t *testing.T) {
	const rate = 20000 // bytes per second; the burst is one stanza limit (also 20000)
	ts := startTestServer(t, func(c *config.Config) {
		c.C2S.StanzaRate = 0
		c.C2S.ByteRate = rate
		c.C2S.MaxStanzaBytes = rate
		c.C2S.MaxPreAuthBytes = 8192
	})
	ts.addUser(t, "alice", smPass)
	c := dialRaw(t, ts.addr())
	c.login("localhost", "alice", smPass, "r")
	var b strings.Builder
	n := 0
	for b.Len() < 3*rate {
		fmt.Fprintf(&b, `<iq type='get' id='p%d' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, n)
		n++
	}
	start := time.Now()
	go c.send(b.String())
	for i := 0; i < n; i++ {
		if r := c.next(); r.Attr("id") != fmt.Sprintf("p%d", i) {
			t.Fatalf("answer %d: %s", i, r)
		}
	}
	// At least two seconds' worth above the burst had to wait.
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("%d bytes answered in %s: the %d B/s limit was not applied", b.Len(), d, rate)
	}
}

// TestAuthFailuresSlowedPerAccount guesses one account's password from
// several addresses: each address fails only once (no per-address delay),
// but the account's failures slow the answers down.
func TestAuthFailuresSlowedPerAccount(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.Auth.FailureDelay = config.Duration{Duration: 300 * time.Millisecond}
		c.Auth.MaxFailureDelay = config.Duration{Duration: 2 * time.Second}
	})
	ts.addUser(t, "alice", smPass)
	var last time.Duration
	for i := 2; i <= 4; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i))}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", ts.addr())
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.%d: %v", i, err)
		}
		c := &rawClient{t: t, conn: conn, w: bufio.NewWriter(conn)}
		c.r = xmpp.NewReader(conn, xmpp.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxAttrs: 64})
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		c.open("localhost")
		c.starttls()
		c.open("localhost")
		c.next()
		start := time.Now()
		c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00guess")) + `</auth>`)
		if f := c.next(); f.Child(xmpp.NSSASL, "not-authorized") == nil {
			t.Fatalf("got %s", f)
		}
		last = time.Since(start)
	}
	// Third failure on the account: 2 × 300 ms.
	if last < 500*time.Millisecond {
		t.Fatalf("the third failed guess on alice from a fresh address was answered in %s: not slowed per account", last)
	}
}

// TestIQAnswerFromStrangerDropped: answers to IQs alice never sent, or sent to
// someone else, never reach her; the real answer does, once.
func TestIQAnswerFromStrangerDropped(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	ts.addUser(t, "carol", smPass)
	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "a")
	bob := dialRaw(t, ts.addr())
	bob.login("localhost", "bob", smPass, "b")
	carol := dialRaw(t, ts.addr())
	carol.login("localhost", "carol", smPass, "c")
	// A forged result and a forged error, ids alice never used.
	bob.send(`<iq type='result' id='forged1' to='alice@localhost/a'/>`)
	bob.send(`<iq type='error' id='forged2' to='alice@localhost/a'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	// alice asks bob something; bob's real answer must arrive.
	alice.send(`<iq type='get' id='q1' to='bob@localhost/b'><query xmlns='jabber:iq:version'/></iq>`)
	if req := bob.next(); req.Attr("id") != "q1" {
		t.Fatalf("bob got %s", req)
	}
	// The right id from someone alice did not ask is dropped too.
	carol.send(`<iq type='result' id='q1' to='alice@localhost/a'/>`)
	carol.send(`<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	carol.next()
	// bob's real answer arrives.
	bob.send(`<iq type='result' id='q1' to='alice@localhost/a'/>`)
	for {
		el := alice.next()
		if el.Local != "iq" {
			continue
		}
		if el.Attr("id") != "q1" || el.Attr("from") != "bob@localhost/b" {
			t.Fatalf("alice received %s: a forged answer got through", el)
		}
		break
	}
	// The request is answered now: a second answer is dropped.
	bob.send(`<iq type='result' id='q1' to='alice@localhost/a'/>`)
	alice.send(`<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if el := alice.next(); el.Attr("id") != "ping" {
		t.Fatalf("alice received %s before her ping answer", el)
	}
}

// TestPreAuthByteLimit: before authentication only small elements are
// accepted, so unauthenticated peers cannot make the server buffer much.
func TestPreAuthByteLimit(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.C2S.MaxPreAuthBytes = 2048 })
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.starttls()
	c.open("localhost")
	c.next()
	// The server may close before reading it all: write in the background
	// and ignore the broken pipe that can follow.
	big := []byte(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + strings.Repeat("A", 4096) + `</auth>`)
	go c.conn.Write(big)
	c.expectStreamError(xmpp.StreamPolicyViolation)
}

// TestSecondStreamHeaderMidStream: a <stream:stream> inside an open
// stream is a bad-format stream error.
func TestSecondStreamHeaderMidStream(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	c := dialRaw(t, ts.addr())
	c.login("localhost", "alice", smPass, "r")
	c.send(`<stream:stream xmlns='jabber:client' to='localhost' version='1.0'>`)
	c.send(`</stream:stream>`)
	c.expectStreamError(xmpp.StreamBadFormat)
}

// TestAckTimeoutDetectsHalfOpenConnection: a stream-managed client whose
// TCP connection stays open but that answers nothing is treated as gone
// after ack_timeout, and its session hibernates.
func TestAckTimeoutDetectsHalfOpenConnection(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.StreamManagement.AckTimeout = config.Duration{Duration: 300 * time.Millisecond}
		c.C2S.KeepaliveInterval = config.Duration{Duration: 100 * time.Millisecond}
	})
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	bob := smLogin(t, ts, "bob", "phone")
	_ = bob // bob's connection stays open but he never reads or answers again
	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "desk")
	sendChat(alice, "bob@localhost/phone", "are you there?")
	waitFor(t, "the silent session to hibernate", func() bool { return ts.c2s.Hibernated() == 1 })
	// Resuming works, and the unacknowledged message comes again.
	nb, res := resume(t, ts, "bob", bob.id, bob.h)
	if !res.Is(xmpp.NSSM, "resumed") {
		t.Fatalf("resume after the ack timeout: %s", res)
	}
	if m := nb.stanza(); m.ChildText(xmpp.NSClient, "body") != "are you there?" {
		t.Fatalf("after resume: %s", m)
	}
}
