package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// This file extends the raw-client harness of server_test.go for the IM
// tests: a logged-in client that buffers what it reads, waits for the
// stanza a test expects, and can prove that something did not arrive.

// waitTimeout bounds how long a test waits for one expected stanza.
const waitTimeout = 10 * time.Second

// password is the password of every account the IM tests create.
const password = "correct horse"

// imClient is a rawClient bound to a resource. Stanzas that were read but
// not yet claimed by an expectation wait in pending, so tests need not
// depend on the order of stanzas the server may legitimately reorder.
type imClient struct {
	*rawClient
	jid     string // the bound full JID
	bare    string // the bare JID
	pending []*xmpp.Element
	seq     int
}

// connect logs user in on a new connection and binds resource, without
// fetching the roster or sending presence.
func (ts *testServer) connect(t *testing.T, user, resource string) *imClient {
	t.Helper()
	rc := dialRaw(t, ts.addr())
	j := rc.login("localhost", user, password, resource)
	return &imClient{rawClient: rc, jid: j, bare: user + "@localhost"}
}

// online logs user in, fetches the roster (so that the session receives
// roster pushes) and sends initial presence.
func (ts *testServer) online(t *testing.T, user, resource string) *imClient {
	t.Helper()
	c := ts.connect(t, user, resource)
	c.roster()
	c.available("")
	return c
}

// users creates accounts with the common test password.
func (ts *testServer) users(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		ts.addUser(t, n, password)
	}
}

// putItem stores a roster item directly, bypassing the protocol, to set up
// a subscription state quickly.
func (ts *testServer) putItem(t *testing.T, user string, it storage.RosterItem) {
	t.Helper()
	if _, err := ts.store.PutRosterItem(context.Background(), user, it); err != nil {
		t.Fatal(err)
	}
}

// mutual makes users a and b subscribed to each other's presence.
func (ts *testServer) mutual(t *testing.T, a, b string) {
	t.Helper()
	ts.putItem(t, a, storage.RosterItem{Contact: b + "@localhost", Subscription: storage.SubBoth})
	ts.putItem(t, b, storage.RosterItem{Contact: a + "@localhost", Subscription: storage.SubBoth})
}

// stop shuts the server down and waits for it. The result is put back so
// that the cleanup registered by startTestServer finds it too.
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	ts.cancel()
	select {
	case err := <-ts.done:
		ts.done <- err
		if err != nil {
			t.Fatalf("server stopped with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop within 15s")
	}
}

// id returns a fresh stanza id.
func (c *imClient) id(prefix string) string {
	c.seq++
	return fmt.Sprintf("%s-%d", prefix, c.seq)
}

// read reads one element with the wait deadline.
func (c *imClient) read(desc string) *xmpp.Element {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	el, err := c.r.Next()
	if err != nil {
		c.t.Fatalf("%s: waiting for %s: %v; unclaimed stanzas:%s", c.jid, desc, err, c.dump())
	}
	return el
}

func (c *imClient) dump() string {
	if len(c.pending) == 0 {
		return " none"
	}
	var b strings.Builder
	for _, el := range c.pending {
		b.WriteString("\n\t")
		b.WriteString(el.String())
	}
	return b.String()
}

// expect returns the first stanza, buffered or new, that satisfies match,
// failing the test if none arrives within waitTimeout.
func (c *imClient) expect(desc string, match func(*xmpp.Element) bool) *xmpp.Element {
	c.t.Helper()
	for i, el := range c.pending {
		if match(el) {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return el
		}
	}
	for {
		el := c.read(desc)
		if match(el) {
			return el
		}
		c.pending = append(c.pending, el)
	}
}

// sync makes a round trip to the server (a ping) and returns every stanza
// that arrived before the answer, buffered ones included. Once it returns,
// the server has processed everything this client sent before, and has
// queued for it everything that other clients' earlier stanzas caused.
func (c *imClient) sync() []*xmpp.Element {
	c.t.Helper()
	id := c.id("sync")
	c.send(fmt.Sprintf(`<iq type='get' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, id))
	got := c.pending
	c.pending = nil
	for {
		el := c.read("the answer to " + id)
		if el.Is(xmpp.NSClient, "iq") && el.Attr("id") == id {
			if el.Attr("type") != "result" {
				c.t.Fatalf("ping %s: %s", id, el)
			}
			return got
		}
		got = append(got, el)
	}
}

// expectNone fails if a stanza satisfying match arrived (or arrives before
// a sync round trip completes). Other stanzas stay buffered.
func (c *imClient) expectNone(desc string, match func(*xmpp.Element) bool) {
	c.t.Helper()
	for _, el := range c.sync() {
		if match(el) {
			c.t.Errorf("%s: unexpected %s: %s", c.jid, desc, el)
			continue
		}
		c.pending = append(c.pending, el)
	}
}

// drain discards every stanza received so far, after a sync round trip.
// Tests call it after their setup so that later checks see only what
// happens next.
func (c *imClient) drain() {
	c.t.Helper()
	c.sync()
}

// quiet fails if any stanza at all is waiting for the client.
func (c *imClient) quiet() {
	c.t.Helper()
	c.expectNone("stanza", func(*xmpp.Element) bool { return true })
}

// iq sends an IQ with a fresh id and returns the response to it.
func (c *imClient) iq(typ, to, payload string) *xmpp.Element {
	c.t.Helper()
	id := c.id(typ)
	toAttr := ""
	if to != "" {
		toAttr = fmt.Sprintf(" to='%s'", to)
	}
	c.send(fmt.Sprintf(`<iq type='%s' id='%s'%s>%s</iq>`, typ, id, toAttr, payload))
	return c.expect("the response to IQ "+id, func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "iq") && el.Attr("id") == id && (el.Attr("type") == "result" || el.Attr("type") == "error")
	})
}

// result sends an IQ and fails unless the answer is a result.
func (c *imClient) result(typ, to, payload string) *xmpp.Element {
	c.t.Helper()
	r := c.iq(typ, to, payload)
	if r.Attr("type") != "result" {
		c.t.Fatalf("%s: IQ %s %s: got %s", c.jid, typ, payload, r)
	}
	return r
}

// iqError sends an IQ and fails unless the answer is an error with cond.
func (c *imClient) iqError(typ, to, payload, cond string) *xmpp.Element {
	c.t.Helper()
	r := c.iq(typ, to, payload)
	if got := errorCondition(r); r.Attr("type") != "error" || got != cond {
		c.t.Fatalf("%s: IQ %s to %q %s: got %s, want error %s", c.jid, typ, to, payload, r, cond)
	}
	return r
}

// roster fetches the roster without a version and returns the <query/> of
// the result.
func (c *imClient) roster() *xmpp.Element {
	c.t.Helper()
	q := c.result("get", "", `<query xmlns='jabber:iq:roster'/>`).Child(xmpp.NSRoster, "query")
	if q == nil {
		c.t.Fatal("roster result without <query/>")
	}
	return q
}

// rosterVer fetches the roster with a XEP-0237 version and returns the
// <query/> of the result, nil for an empty result.
func (c *imClient) rosterVer(ver string) *xmpp.Element {
	c.t.Helper()
	q := fmt.Sprintf(`<query xmlns='jabber:iq:roster' ver='%s'/>`, ver)
	return c.result("get", "", q).Child(xmpp.NSRoster, "query")
}

// available sends presence (extra is its content: show, status, priority)
// and waits for the server to reflect it back (RFC 6121 §4.2.2, §4.4.2).
func (c *imClient) available(extra string) {
	c.t.Helper()
	c.send("<presence>" + extra + "</presence>")
	c.expect("the reflection of my own presence", isPresence(c.jid, ""))
}

// message sends a chat message.
func (c *imClient) message(to, body string) {
	c.t.Helper()
	c.send(fmt.Sprintf(`<message type='chat' to='%s'><body>%s</body></message>`, to, body))
}

// expectMessage waits for a message from from with that body.
func (c *imClient) expectMessage(from, body string) *xmpp.Element {
	c.t.Helper()
	return c.expect(fmt.Sprintf("message %q from %s", body, from), isMessage(from, body))
}

// expectPush waits for a roster push about contact and returns its item.
func (c *imClient) expectPush(contact string) *xmpp.Element {
	c.t.Helper()
	push := c.expect("roster push for "+contact, isPush(contact))
	if push.Attr("from") != "" && push.Attr("from") != c.bare {
		c.t.Errorf("roster push from %q (RFC 6121 §2.1.6: none or the user's bare JID)", push.Attr("from"))
	}
	if push.Child(xmpp.NSRoster, "query").Attr("ver") == "" {
		c.t.Errorf("roster push without ver (XEP-0237): %s", push)
	}
	return push.Child(xmpp.NSRoster, "query").Child(xmpp.NSRoster, "item")
}

// expectPushState waits for a roster push that shows contact with the
// subscription and ask state, skipping pushes of intermediate states.
func (c *imClient) expectPushState(contact, sub, ask string) *xmpp.Element {
	c.t.Helper()
	push := c.expect("roster push for "+contact+" with subscription "+sub+" ask "+ask, func(el *xmpp.Element) bool {
		if !isPush(contact)(el) {
			return false
		}
		it := el.Child(xmpp.NSRoster, "query").Child(xmpp.NSRoster, "item")
		return it.Attr("subscription") == sub && it.Attr("ask") == ask
	})
	return push.Child(xmpp.NSRoster, "query").Child(xmpp.NSRoster, "item")
}

// closeStream ends the stream properly and waits for the server's end.
func (c *imClient) closeStream() {
	c.t.Helper()
	c.send("</stream:stream>")
	c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, err := c.r.Next()
		if errors.Is(err, xmpp.ErrStreamClosed) {
			return
		}
		if err != nil {
			c.t.Fatalf("closing the stream: %v", err)
		}
	}
}

// tryAuth opens a stream, does STARTTLS and PLAIN, and reports whether the
// server accepted the credentials.
func (c *rawClient) tryAuth(user, pass string) bool {
	c.t.Helper()
	c.open("localhost")
	c.starttls()
	c.open("localhost")
	c.next()
	return c.auth(user, pass)
}

// auth sends PLAIN credentials on a stream whose features were read.
func (c *rawClient) auth(user, pass string) bool {
	c.t.Helper()
	c.send(fmt.Sprintf(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>`,
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))))
	r := c.next()
	switch {
	case r.Is(xmpp.NSSASL, "success"):
		return true
	case r.Is(xmpp.NSSASL, "failure") && r.Child(xmpp.NSSASL, "not-authorized") != nil:
		return false
	}
	c.t.Fatalf("auth as %s: %s", user, r)
	return false
}

// errorCondition returns the defined condition of a stanza error, or "".
func errorCondition(el *xmpp.Element) string {
	e := el.Child(xmpp.NSClient, "error")
	if e == nil {
		return ""
	}
	for _, c := range e.Elements() {
		if c.Space == xmpp.NSStanzas && c.Local != "text" {
			return c.Local
		}
	}
	return ""
}

// isPresence matches presence from a JID with a type ("" for available).
func isPresence(from, typ string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "presence") && el.Attr("from") == from && el.Attr("type") == typ
	}
}

// isPresenceFromUser matches presence of a type from any JID of a user.
func isPresenceFromUser(bare, typ string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		f := el.Attr("from")
		return el.Is(xmpp.NSClient, "presence") && el.Attr("type") == typ && (f == bare || strings.HasPrefix(f, bare+"/"))
	}
}

// isAnyPresenceFrom matches every presence stanza from exactly that JID.
func isAnyPresenceFrom(from string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "presence") && el.Attr("from") == from
	}
}

// isAnyPresenceFromUser matches every presence stanza from a user.
func isAnyPresenceFromUser(bare string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		f := el.Attr("from")
		return el.Is(xmpp.NSClient, "presence") && (f == bare || strings.HasPrefix(f, bare+"/"))
	}
}

// isMessage matches a message from a JID with a body.
func isMessage(from, body string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "message") && el.Attr("from") == from && el.ChildText(xmpp.NSClient, "body") == body
	}
}

// isAnyMessage matches every message.
func isAnyMessage(el *xmpp.Element) bool { return el.Is(xmpp.NSClient, "message") }

// isPush matches a roster push about contact.
func isPush(contact string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		if !el.Is(xmpp.NSClient, "iq") || el.Attr("type") != "set" {
			return false
		}
		q := el.Child(xmpp.NSRoster, "query")
		if q == nil {
			return false
		}
		it := q.Child(xmpp.NSRoster, "item")
		return it != nil && it.Attr("jid") == contact
	}
}

// isAnyPush matches every roster push.
func isAnyPush(el *xmpp.Element) bool {
	return el.Is(xmpp.NSClient, "iq") && el.Attr("type") == "set" && el.Child(xmpp.NSRoster, "query") != nil
}

// checkItem fails unless a roster item has the subscription and ask state.
func checkItem(t *testing.T, it *xmpp.Element, sub, ask string) {
	t.Helper()
	if it == nil {
		t.Fatalf("no roster item, want subscription=%s ask=%q", sub, ask)
	}
	if it.Attr("subscription") != sub || it.Attr("ask") != ask {
		t.Fatalf("roster item %s: want subscription=%s ask=%q", it, sub, ask)
	}
}
