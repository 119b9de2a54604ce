package server

import (
	"context"
	"testing"
	"time"

	"wren.im/wren/config"
	"wren.im/wren/xmpp"
)

// Message and IQ routing (RFC 6121 §8) and offline storage (XEP-0160).

func TestMessageToBareJIDGoesToHighestPriority(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	high1 := ts.connect(t, "alice", "high1")
	high1.available("<priority>5</priority>")
	high2 := ts.connect(t, "alice", "high2")
	high2.available("<priority>5</priority>")
	low := ts.connect(t, "alice", "low")
	low.available("<priority>0</priority>")
	neg := ts.connect(t, "alice", "neg")
	neg.available("<priority>-1</priority>")

	bob.message("alice@localhost", "to the bare JID")
	for _, c := range []*imClient{high1, high2} {
		m := c.expectMessage(bob.jid, "to the bare JID")
		// RFC 6121 §8.5.2.1.1: the 'to' is not rewritten.
		if m.Attr("to") != "alice@localhost" {
			t.Errorf("'to' rewritten to %q", m.Attr("to"))
		}
	}
	bob.sync()
	for _, c := range []*imClient{low, neg} {
		c.expectNone("a message meant for higher priorities", isAnyMessage)
	}

	// A full JID reaches exactly that resource, whatever its priority.
	bob.message(neg.jid, "to the negative resource")
	neg.expectMessage(bob.jid, "to the negative resource")
	bob.message(low.jid, "to the low resource")
	low.expectMessage(bob.jid, "to the low resource")
	bob.sync()
	for _, c := range []*imClient{high1, high2} {
		c.expectNone("a message to another resource", isAnyMessage)
	}

	// The full JID of an absent resource is treated like the bare JID.
	bob.message("alice@localhost/gone", "to a missing resource")
	high1.expectMessage(bob.jid, "to a missing resource")
	high2.expectMessage(bob.jid, "to a missing resource")
	bob.sync()
	low.expectNone("a message to a missing resource", isAnyMessage)
	bob.expectNone("an error for a missing resource", isAnyMessage)

	// When the highest priority drops, the next one takes over.
	high1.available("<priority>-2</priority>")
	high2.available("<priority>-2</priority>")
	bob.message("alice@localhost", "after the change")
	low.expectMessage(bob.jid, "after the change")
	bob.sync()
	for _, c := range []*imClient{high1, high2, neg} {
		c.expectNone("a message after its priority dropped", isAnyMessage)
	}
}

func TestMessageWithOnlyNegativePriorityGoesOffline(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	neg := ts.connect(t, "alice", "neg")
	neg.available("<priority>-1</priority>")

	bob.message("alice@localhost", "kept for later")
	bob.sync()
	neg.expectNone("a bare-JID message at negative priority", isAnyMessage)
	if n, err := ts.store.CountOffline(context.Background(), "alice"); err != nil || n != 1 {
		t.Fatalf("offline queue: %d, %v; want 1 message", n, err)
	}

	pos := ts.online(t, "alice", "pos")
	m := pos.expectMessage(bob.jid, "kept for later")
	if m.Child(xmpp.NSDelay, "delay") == nil {
		t.Errorf("offline message without delay: %s", m)
	}
	neg.expectNone("the offline message", isAnyMessage)
}

func TestMessageAndIQToUnknownRecipients(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	alice := ts.connect(t, "alice", "a")

	for _, to := range []string{"nobody@localhost", "nobody@localhost/x"} {
		bob.send(`<message type='chat' id='m1' to='` + to + `'><body>hello?</body></message>`)
		e := bob.expect("the error for "+to, func(el *xmpp.Element) bool {
			return el.Is(xmpp.NSClient, "message") && el.Attr("type") == "error"
		})
		if errorCondition(e) != xmpp.CondServiceUnavailable || e.Attr("id") != "m1" || e.Attr("from") != to {
			t.Errorf("message to %s: got %s, want service-unavailable from it with id m1", to, e)
		}
		bob.iqError("get", to, `<ping xmlns='urn:xmpp:ping'/>`, xmpp.CondServiceUnavailable)
	}

	// RFC 6121 §8.5.3.2.3: an IQ to a full JID that has no session.
	bob.iqError("get", "alice@localhost/gone", `<ping xmlns='urn:xmpp:ping'/>`, xmpp.CondServiceUnavailable)
	bob.iqError("set", "alice@localhost/gone", `<query xmlns='urn:example'/>`, xmpp.CondServiceUnavailable)

	// An IQ to a connected resource reaches the client, and so does its answer.
	bob.send(`<iq type='get' id='q1' to='` + alice.jid + `'><query xmlns='jabber:iq:version'/></iq>`)
	req := alice.expect("bob's IQ", func(el *xmpp.Element) bool { return el.Is(xmpp.NSClient, "iq") && el.Attr("id") == "q1" })
	if req.Attr("from") != bob.jid {
		t.Fatalf("IQ from %q", req.Attr("from"))
	}
	alice.send(`<iq type='result' id='q1' to='` + bob.jid + `'><query xmlns='jabber:iq:version'><name>test</name></query></iq>`)
	res := bob.expect("alice's answer", func(el *xmpp.Element) bool { return el.Is(xmpp.NSClient, "iq") && el.Attr("id") == "q1" })
	if res.Attr("type") != "result" || res.Attr("from") != alice.jid {
		t.Fatalf("got %s", res)
	}

	// Errors are never answered with errors (RFC 6120 §8.3.1).
	bob.send(`<message type='error' to='nobody@localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)
	bob.send(`<message type='error' to='alice@localhost/gone'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)
	bob.send(`<iq type='error' id='e1' to='nobody@localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	bob.quiet()
	if n, err := ts.store.CountOffline(context.Background(), "alice"); err != nil || n != 0 {
		t.Fatalf("error message stored offline: %d, %v", n, err)
	}
}

func TestOfflineMessages(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, func(c *config.Config) { c.Offline.MaxPerUser = 2 })
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")

	before := time.Now().UTC().Add(-time.Second)
	bob.message("alice@localhost", "one")
	bob.send(`<message type='chat' to='alice@localhost'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	bob.message("alice@localhost/phone", "two")
	bob.quiet()

	// The queue is full: the next message is bounced, chat states are
	// silently dropped as before.
	bob.send(`<message type='chat' id='three' to='alice@localhost'><body>three</body></message>`)
	e := bob.expect("the bounce", func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "message") && el.Attr("id") == "three"
	})
	if e.Attr("type") != "error" || errorCondition(e) != xmpp.CondResourceConstraint || e.Attr("from") != "alice@localhost" {
		t.Fatalf("message over the cap: got %s, want resource-constraint from alice@localhost", e)
	}
	if e.Child(xmpp.NSClient, "error").Attr("type") != "wait" {
		t.Errorf("resource-constraint with error type %q, want wait", e.Child(xmpp.NSClient, "error").Attr("type"))
	}
	bob.send(`<message type='chat' to='alice@localhost'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	bob.quiet()

	// Nothing arrives before initial presence.
	alice := ts.connect(t, "alice", "a")
	alice.roster()
	alice.expectNone("an offline message before initial presence", isAnyMessage)

	alice.available("")
	var got []*xmpp.Element
	for _, el := range alice.sync() {
		if isAnyMessage(el) {
			got = append(got, el)
		}
	}
	if len(got) != 2 {
		t.Fatalf("offline delivery: %d messages, want 2: %v", len(got), got)
	}
	for i, want := range []string{"one", "two"} {
		m := got[i]
		if m.ChildText(xmpp.NSClient, "body") != want || m.Attr("from") != bob.jid {
			t.Fatalf("offline message %d: %s, want %q from %s", i, m, want, bob.jid)
		}
		d := m.Child(xmpp.NSDelay, "delay")
		if d == nil || d.Attr("from") != "localhost" {
			t.Fatalf("offline message %d without <delay from='localhost'/>: %s", i, m)
		}
		stamp, err := time.Parse(time.RFC3339, d.Attr("stamp"))
		if err != nil || stamp.Before(before) || stamp.After(time.Now().Add(time.Second)) || stamp.Location() != time.UTC {
			t.Errorf("delay stamp %q: %v", d.Attr("stamp"), err)
		}
	}
	if n, err := ts.store.CountOffline(context.Background(), "alice"); err != nil || n != 0 {
		t.Fatalf("delivered messages still stored: %d, %v", n, err)
	}

	// Delivered once only.
	alice.closeStream()
	again := ts.online(t, "alice", "a2")
	again.expectNone("an offline message delivered twice", isAnyMessage)
}

func TestOfflineMessagesSurviveRestart(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	bob.message("alice@localhost", "written before the restart")
	bob.quiet()
	dir := ts.cfg.DataDir
	ts.stop(t)

	ts2 := startTestServer(t, func(c *config.Config) { c.DataDir = dir })
	alice := ts2.online(t, "alice", "a")
	m := alice.expectMessage("bob@localhost/b", "written before the restart")
	if m.Child(xmpp.NSDelay, "delay") == nil {
		t.Errorf("no delay on %s", m)
	}
}
