package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wren.im/wren/storage"

	"wren.im/wren/c2s"
	"wren.im/wren/config"
	"wren.im/wren/xmpp"
)

// smClient is a raw client with stream management: it counts the stanzas
// it handled and answers the server's ack requests.
type smClient struct {
	*rawClient
	id string
	h  uint32
	rs int // ack requests received from the server
}

const smPass = "correct horse"

// smLogin logs in, binds resource, enables resumable stream management and
// sends initial presence.
func smLogin(t *testing.T, ts *testServer, user, resource string) *smClient {
	t.Helper()
	rc := dialRaw(t, ts.addr())
	rc.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	rc.login("localhost", user, smPass, resource)
	rc.send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	en := rc.next()
	if !en.Is(xmpp.NSSM, "enabled") || en.Attr("id") == "" || en.Attr("resume") != "true" {
		t.Fatalf("enable: %s", en)
	}
	rc.send(`<presence/>`)
	c := &smClient{rawClient: rc, id: en.Attr("id")}
	// RFC 6121 §4.2.2: the initial presence comes back to its sender too.
	if p := c.stanza(); !p.Is(xmpp.NSClient, "presence") || p.Attr("from") != p.Attr("to") {
		t.Fatalf("expected the echo of the initial presence, got %s", p)
	}
	return c
}

// nextMessage reads until a message, skipping presence.
func nextMessage(c *rawClient) *xmpp.Element {
	c.t.Helper()
	for {
		el := c.next()
		if el.Is(xmpp.NSClient, "message") {
			return el
		}
	}
}

// authOnly opens a connection and authenticates without binding.
func authOnly(t *testing.T, ts *testServer, user string) *rawClient {
	t.Helper()
	rc := dialRaw(t, ts.addr())
	rc.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	rc.open("localhost")
	rc.starttls()
	rc.open("localhost")
	rc.next()
	rc.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+smPass)) + `</auth>`)
	if s := rc.next(); !s.Is(xmpp.NSSASL, "success") {
		t.Fatalf("auth: %s", s)
	}
	rc.open("localhost")
	f := rc.next()
	if f.Child(xmpp.NSSM, "sm") == nil {
		t.Fatalf("no sm feature after authentication: %s", f)
	}
	return rc
}

// resume tries to resume previd with h on a new connection and returns the
// client and the server's answer (<resumed/> or <failed/>).
func resume(t *testing.T, ts *testServer, user, previd string, h uint32) (*smClient, *xmpp.Element) {
	t.Helper()
	rc := authOnly(t, ts, user)
	rc.send(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, previd, h))
	return &smClient{rawClient: rc, id: previd, h: h}, rc.next()
}

// stanza reads until the next stanza, answering <r/> on the way.
func (c *smClient) stanza() *xmpp.Element {
	c.t.Helper()
	for {
		el := c.next()
		switch {
		case el.Is(xmpp.NSSM, "r"):
			c.rs++
			c.send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, c.h))
		case el.Is(xmpp.NSSM, "a"):
		case el.IsStanza():
			c.h++
			return el
		default:
			c.t.Fatalf("unexpected element %s", el)
		}
	}
}

// cut drops the TCP connection without closing the stream.
func (c *smClient) cut() { c.conn.Close() }

func sendChat(c *rawClient, to, body string) {
	c.send(fmt.Sprintf(`<message to='%s' type='chat'><body>%s</body></message>`, to, body))
}

func TestSMEnableAndAcks(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	c := smLogin(t, ts, "alice", "phone")
	// One stanza handled so far: the initial presence (whose echo the
	// client handled too).
	c.send(`<r xmlns='urn:xmpp:sm:3'/>`)
	a := c.next()
	for a.Is(xmpp.NSSM, "r") { // the server's own request for the echo
		c.send(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
		a = c.next()
	}
	if !a.Is(xmpp.NSSM, "a") || a.Attr("h") != "1" {
		t.Fatalf("ack = %s, want h=1", a)
	}
	rsBefore := c.rs
	c.send(`<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq><iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for i := 0; i < 2; i++ {
		if r := c.stanza(); r.Attr("type") != "result" {
			t.Fatalf("ping answer %s", r)
		}
	}
	// The server asks for an ack of what it sent.
	sawR := c.rs > rsBefore
	c.send(`<r xmlns='urn:xmpp:sm:3'/>`)
	for {
		el := c.next()
		if el.Is(xmpp.NSSM, "r") {
			sawR = true
			continue
		}
		if !el.Is(xmpp.NSSM, "a") || el.Attr("h") != "3" {
			t.Fatalf("got %s, want <a h='3'/>", el)
		}
		break
	}
	if !sawR {
		t.Errorf("the server never asked for an ack of its 2 stanzas")
	}
	c.send(`<a xmlns='urn:xmpp:sm:3' h='2'/>`)
	// Acknowledging more than was sent is a stream error.
	c.send(`<a xmlns='urn:xmpp:sm:3' h='9'/>`)
	for {
		el := c.next()
		if el.Is(xmpp.NSStream, "error") {
			if el.Child(xmpp.NSStreams, xmpp.StreamUndefinedCondition) == nil || el.Child(xmpp.NSSM, "handled-count-too-high") == nil {
				t.Fatalf("stream error %s", el)
			}
			return
		}
	}
}

func TestSMEnableBeforeBindFails(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	rc := authOnly(t, ts, "alice")
	rc.send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	if f := rc.next(); !f.Is(xmpp.NSSM, "failed") || f.Child(xmpp.NSStanzas, "unexpected-request") == nil {
		t.Fatalf("got %s", f)
	}
}

func TestSMResumeAfterTCPCut(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "desk")
	bob := smLogin(t, ts, "bob", "phone")
	sendChat(alice, "bob@localhost/phone", "1")
	if m := bob.stanza(); m.ChildText(xmpp.NSClient, "body") != "1" {
		t.Fatalf("bob got %s", m)
	}
	// Two more are written to bob but he never processes them.
	sendChat(alice, "bob@localhost/phone", "2")
	sendChat(alice, "bob@localhost/phone", "3")
	time.Sleep(100 * time.Millisecond)
	bob.cut()
	waitFor(t, "bob's session to hibernate", func() bool { return ts.c2s.Hibernated() == 1 })
	sendChat(alice, "bob@localhost/phone", "4")
	sendChat(alice, "bob@localhost/phone", "5")
	time.Sleep(100 * time.Millisecond)

	bob2, res := resume(t, ts, "bob", bob.id, bob.h)
	if !res.Is(xmpp.NSSM, "resumed") || res.Attr("h") != "1" || res.Attr("previd") != bob.id {
		t.Fatalf("resume answer %s, want resumed with h=1 (bob's presence)", res)
	}
	for want := 2; want <= 5; want++ {
		m := bob2.stanza()
		if got := m.ChildText(xmpp.NSClient, "body"); got != strconv.Itoa(want) {
			t.Fatalf("after resume got body %q, want %d", got, want)
		}
	}
	// Nothing else arrives, and the session works as before.
	sendChat(alice, "bob@localhost", "6")
	if m := bob2.stanza(); m.ChildText(xmpp.NSClient, "body") != "6" {
		t.Fatalf("got %s", m)
	}
	if ts.c2s.Hibernated() != 0 {
		t.Fatalf("%d sessions still hibernated", ts.c2s.Hibernated())
	}
}

func TestSMResumeByAnotherAccountFails(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "bob", smPass)
	ts.addUser(t, "mallory", smPass)
	bob := smLogin(t, ts, "bob", "phone")
	bob.cut()
	waitFor(t, "bob's session to hibernate", func() bool { return ts.c2s.Hibernated() == 1 })
	_, res := resume(t, ts, "mallory", bob.id, 0)
	if !res.Is(xmpp.NSSM, "failed") || res.Child(xmpp.NSStanzas, "item-not-found") == nil || res.HasAttr("h") {
		t.Fatalf("mallory's resume of bob's session: %s", res)
	}
	if ts.c2s.Hibernated() != 1 {
		t.Fatal("mallory's attempt disturbed bob's session")
	}
	_, res = resume(t, ts, "bob", "made-up-id", 0)
	if !res.Is(xmpp.NSSM, "failed") || res.Child(xmpp.NSStanzas, "item-not-found") == nil {
		t.Fatalf("unknown id: %s", res)
	}
	_, res = resume(t, ts, "bob", bob.id, bob.h)
	if !res.Is(xmpp.NSSM, "resumed") {
		t.Fatalf("bob could not resume after the failed attempts: %s", res)
	}
}

func TestSMResumeAfterTimeoutFailsAndMessagesGoOffline(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.StreamManagement.ResumeTimeout = config.Duration{Duration: 500 * time.Millisecond}
	})
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "desk")
	bob := smLogin(t, ts, "bob", "phone")
	sendChat(alice, "bob@localhost/phone", "queued while away")
	time.Sleep(100 * time.Millisecond)
	bob.cut()
	waitFor(t, "bob's session to end", func() bool { return ts.router.Count() == 1 })

	rc, res := resume(t, ts, "bob", bob.id, 0)
	if !res.Is(xmpp.NSSM, "failed") || res.Child(xmpp.NSStanzas, "item-not-found") == nil || res.Attr("h") != "1" {
		t.Fatalf("late resume: %s, want failed item-not-found with h=1", res)
	}
	// The client may bind on the same stream after a failed resume.
	rc.send(`<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>`)
	if r := rc.next(); r.Attr("type") != "result" {
		t.Fatalf("bind after failed resume: %s", r)
	}
	rc.send(`<presence/>`)
	m := nextMessage(rc.rawClient)
	if m.ChildText(xmpp.NSClient, "body") != "queued while away" || m.Child(xmpp.NSDelay, "delay") == nil {
		t.Fatalf("offline delivery after expiry: %s", m)
	}
}

func TestSMShutdownMovesUnackedToOffline(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, func(c *config.Config) { c.DataDir = dir })
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "desk")
	bob := smLogin(t, ts, "bob", "phone")
	sendChat(alice, "bob@localhost/phone", "one")
	bob.cut()
	waitFor(t, "bob's session to hibernate", func() bool { return ts.c2s.Hibernated() == 1 })
	sendChat(alice, "bob@localhost/phone", "two")
	time.Sleep(100 * time.Millisecond)
	ts.cancel()
	<-ts.done
	ts.done <- nil

	ts2 := startTestServer(t, func(c *config.Config) { c.DataDir = dir })
	rc := dialRaw(t, ts2.addr())
	rc.login("localhost", "bob", smPass, "phone")
	rc.send(`<presence/>`)
	for _, want := range []string{"one", "two"} {
		m := nextMessage(rc)
		if m.ChildText(xmpp.NSClient, "body") != want || m.Child(xmpp.NSDelay, "delay") == nil {
			t.Fatalf("after restart got %s, want %q with a delay stamp", m, want)
		}
	}
}

// streamNumbered logs alice in and sends n chat messages with bodies 0..n-1
// to `to` from a goroutine, in small bursts; wait on the result for the end.
func streamNumbered(t *testing.T, ts *testServer, to string, n int) *sync.WaitGroup {
	t.Helper()
	alice := dialRaw(t, ts.addr())
	alice.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	alice.login("localhost", "alice", smPass, "desk")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			fmt.Fprintf(alice.w, `<message to='%s' type='chat'><body>%d</body></message>`, to, i)
			if i%20 == 0 {
				alice.w.Flush()
				time.Sleep(time.Millisecond)
			}
		}
		// A ping round trip: alice's stanzas are routed in order, so once
		// its result is back every message has been routed.
		fmt.Fprintf(alice.w, `<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
		alice.w.Flush()
		for {
			el, err := alice.r.Next()
			if err != nil || el.Attr("id") == "done" {
				return
			}
		}
	}()
	return &wg
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSMExactlyOnceUnderConnectionCuts streams numbered messages to a
// receiver whose TCP connection is cut at random points; the receiver
// resumes each time. Every number must arrive exactly once, in order.
func TestSMExactlyOnceUnderConnectionCuts(t *testing.T) {
	const total = 3000
	const cuts = 6
	ts := startTestServer(t, func(c *config.Config) { c.C2S.SendQueue = 20000 })
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	bob := smLogin(t, ts, "bob", "phone")
	wg := streamNumbered(t, ts, "bob@localhost/phone", total)

	rng := rand.New(rand.NewPCG(1, 2))
	cutAt := map[int]bool{}
	for len(cutAt) < cuts {
		cutAt[100+rng.IntN(total-200)] = true
	}
	next := 0
	resumes := 0
	for next < total {
		m := bob.stanza()
		if !m.Is(xmpp.NSClient, "message") {
			continue
		}
		n, err := strconv.Atoi(m.ChildText(xmpp.NSClient, "body"))
		if err != nil {
			t.Fatalf("unexpected message %s", m)
		}
		if n != next {
			t.Fatalf("got %d, want %d (after %d resumes): lost or duplicated", n, next, resumes)
		}
		next++
		if cutAt[n] {
			// Also unprocessed: whatever was already written after n.
			bob.cut()
			waitFor(t, "bob's session to hibernate", func() bool { return ts.c2s.Hibernated() == 1 })
			nb, res := resume(t, ts, "bob", bob.id, bob.h)
			if !res.Is(xmpp.NSSM, "resumed") {
				t.Fatalf("resume %d: %s", resumes+1, res)
			}
			bob = nb
			resumes++
		}
	}
	wg.Wait()
	if resumes != cuts {
		t.Fatalf("resumed %d times, want %d", resumes, cuts)
	}
	// Acknowledge everything: the server's queue must then be empty.
	bob.send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, bob.h))
	sess := ts.router.Sessions("bob")
	if len(sess) != 1 {
		t.Fatalf("bob has %d sessions", len(sess))
	}
	waitFor(t, "bob's queue to drain", func() bool { return sess[0].(*c2s.Session).QueueDepth() == 0 })
	t.Logf("%d messages, %d connection cuts, %d resumes: 0 lost, 0 duplicated", total, cuts, resumes)
}

// TestSMExpiryDeliversTheRestFromOffline cuts a receiver in the middle of
// a stream of numbered messages and lets its session expire: the numbers
// it did not handle must then come from offline storage, once each and in
// order, at its next login.
func TestSMExpiryDeliversTheRestFromOffline(t *testing.T) {
	const total = 1000
	ts := startTestServer(t, func(c *config.Config) {
		c.C2S.SendQueue = 20000
		c.Offline.MaxPerUser = 0
		c.StreamManagement.ResumeTimeout = config.Duration{Duration: 300 * time.Millisecond}
	})
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	bob := smLogin(t, ts, "bob", "phone")
	wg := streamNumbered(t, ts, "bob@localhost/phone", total)
	next := 0
	for next < 300 {
		m := bob.stanza()
		if n, _ := strconv.Atoi(m.ChildText(xmpp.NSClient, "body")); n != next {
			t.Fatalf("got %s, want %d", m, next)
		}
		next++
	}
	// The client acknowledges what it handled, then loses its network.
	// (Stanzas written but never acknowledged are delivered again: the
	// server cannot know that they arrived.)
	bob.send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, bob.h))
	time.Sleep(50 * time.Millisecond)
	bob.cut()
	wg.Wait()
	waitFor(t, "bob's session to expire", func() bool { return ts.router.Count() == 1 })
	time.Sleep(200 * time.Millisecond) // let the last messages reach offline storage
	rc := dialRaw(t, ts.addr())
	rc.conn.SetDeadline(time.Now().Add(time.Minute))
	rc.login("localhost", "bob", smPass, "laptop")
	rc.send(`<presence/>`)
	for next < total {
		m := rc.next()
		if !m.Is(xmpp.NSClient, "message") {
			continue
		}
		if n, _ := strconv.Atoi(m.ChildText(xmpp.NSClient, "body")); n != next {
			t.Fatalf("from offline got %s, want %d", m.ChildText(xmpp.NSClient, "body"), next)
		}
		next++
	}
	t.Logf("%d messages, 1 cut ending in expiry: 300 delivered live, %d from offline, 0 lost, 0 duplicated", total, total-300)
}

// TestSMResumeWhileOldConnectionOpen resumes a session whose old
// connection is still open (half-open from the client's view): the old
// connection gets a conflict stream error, the new one the session.
func TestSMResumeWhileOldConnectionOpen(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "desk")
	old := smLogin(t, ts, "bob", "phone")
	sendChat(alice, "bob@localhost/phone", "before")
	if m := old.stanza(); m.ChildText(xmpp.NSClient, "body") != "before" {
		t.Fatalf("got %s", m)
	}
	nw, res := resume(t, ts, "bob", old.id, old.h)
	if !res.Is(xmpp.NSSM, "resumed") {
		t.Fatalf("resume: %s", res)
	}
	for {
		el, err := old.r.Next()
		if err != nil {
			t.Fatalf("old connection ended without a conflict error: %v", err)
		}
		if el.Is(xmpp.NSStream, "error") {
			if el.Child(xmpp.NSStreams, xmpp.StreamConflict) == nil {
				t.Fatalf("old connection got %s, want conflict", el)
			}
			break
		}
	}
	sendChat(alice, "bob@localhost/phone", "after")
	if m := nw.stanza(); m.ChildText(xmpp.NSClient, "body") != "after" {
		t.Fatalf("new connection got %s", m)
	}
	if n := ts.router.Count(); n != 2 {
		t.Fatalf("%d sessions bound, want 2 (alice, bob)", n)
	}
}

// TestCSIHoldsPresenceUntilActive checks XEP-0352 end to end: while bob is
// inactive, alice's presence changes are held (only the latest is sent)
// and a message flushes them first, in order.
func TestCSIHoldsPresenceUntilActive(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	ts.mutual(t, "alice", "bob")
	bob := smLogin(t, ts, "bob", "phone")
	// The ack comes once bob's reader handled everything before it: the
	// rest of its initial presence (probes of its contacts) and <inactive/>.
	bob.send(`<inactive xmlns='urn:xmpp:csi:0'/><r xmlns='urn:xmpp:sm:3'/>`)
	for el := bob.next(); !el.Is(xmpp.NSSM, "a"); el = bob.next() {
		if el.Is(xmpp.NSSM, "r") {
			bob.send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, bob.h))
		}
	}
	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "desk")
	alice.send(`<presence><show>away</show></presence>`)
	alice.send(`<presence><show>xa</show></presence>`)
	alice.send(`<presence><show>dnd</show></presence>`)
	time.Sleep(200 * time.Millisecond)
	alice.send(`<message to='bob@localhost' type='chat'><body>wake up</body></message>`)
	var shows []string
	for {
		el := bob.stanza()
		if el.Is(xmpp.NSClient, "message") {
			if el.ChildText(xmpp.NSClient, "body") != "wake up" {
				t.Fatalf("got %s", el)
			}
			break
		}
		if el.Attr("from") == "alice@localhost/desk" {
			shows = append(shows, el.ChildText(xmpp.NSClient, "show"))
		}
	}
	if len(shows) != 1 || shows[0] != "dnd" {
		t.Fatalf("presence from alice/desk flushed before the message: %q, want only the latest (dnd)", shows)
	}
	bob.send(`<active xmlns='urn:xmpp:csi:0'/>`)
	alice.send(`<presence><show>chat</show></presence>`)
	if p := bob.stanza(); p.ChildText(xmpp.NSClient, "show") != "chat" {
		t.Fatalf("active client got %s", p)
	}
}

// Archive copies are written behind the routing path (group commit), but
// an ack tells the client it may forget what it sent: the server answers
// <r/> only once every message the ack covers is on disk. Read here
// straight from the store, which sees committed writes only.
func TestSMAckWaitsForArchiveWrites(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	bob := smLogin(t, ts, "bob", "desk")
	alice := smLogin(t, ts, "alice", "phone")
	const n = 300
	var burst strings.Builder
	for i := range n {
		fmt.Fprintf(&burst, `<message to='bob@localhost' type='chat' id='m%d'><body>message %d</body></message>`, i, i)
	}
	burst.WriteString(`<r xmlns='urn:xmpp:sm:3'/>`)
	alice.send(burst.String())
	var a *xmpp.Element
	for a == nil {
		el := alice.next()
		switch {
		case el.Is(xmpp.NSSM, "a"):
			a = el
		case el.Is(xmpp.NSSM, "r"):
			alice.send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, alice.h))
		case el.IsStanza():
			alice.h++
		}
	}
	// The initial presence and the n messages.
	if a.Attr("h") != strconv.Itoa(n+1) {
		t.Fatalf("ack %s, want h=%d", a, n+1)
	}
	ctx := context.Background()
	for _, user := range []string{"alice", "bob"} {
		got, err := ts.store.CountArchive(ctx, user, storage.ArchiveQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Errorf("when the ack arrived, %s's archive held %d of the %d acknowledged messages", user, got, n)
		}
	}
	for i := range n {
		if m := nextMessage(bob.rawClient); m.ChildText(xmpp.NSClient, "body") != fmt.Sprintf("message %d", i) {
			t.Fatalf("bob got %s, want message %d", m, i)
		}
	}
}
