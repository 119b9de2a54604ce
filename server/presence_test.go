package server

import (
	"crypto/tls"
	"testing"
	"time"

	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Presence (RFC 6121 §4).

// waitConnections waits until the server has exactly n client connections,
// which means that every other session has been torn down completely
// (unavailable presence broadcast included).
func (ts *testServer) waitConnections(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for ts.c2s.Connections() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d client connections, want %d", ts.c2s.Connections(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUnbound waits until user has no bound session left.
func (ts *testServer) waitUnbound(t *testing.T, user string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for len(ts.router.Sessions(user)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still has %d sessions", user, len(ts.router.Sessions(user)))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cut closes the TCP connection under the client's TLS session without
// ending the stream or the TLS session.
func (c *imClient) cut() {
	c.t.Helper()
	if tc, ok := c.conn.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	c.conn.Close()
}

func TestInitialPresenceProbesAndBroadcast(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol", "dave", "eve")
	ts.mutual(t, "alice", "bob")
	// alice is subscribed to carol; dave is subscribed to alice; eve is
	// only in alice's roster.
	ts.putItem(t, "alice", storage.RosterItem{Contact: "carol@localhost", Subscription: storage.SubTo})
	ts.putItem(t, "carol", storage.RosterItem{Contact: "alice@localhost", Subscription: storage.SubFrom})
	ts.putItem(t, "alice", storage.RosterItem{Contact: "dave@localhost", Subscription: storage.SubFrom})
	ts.putItem(t, "dave", storage.RosterItem{Contact: "alice@localhost", Subscription: storage.SubTo})
	ts.putItem(t, "alice", storage.RosterItem{Contact: "eve@localhost", Subscription: storage.SubNone})

	bob := ts.online(t, "bob", "b")
	carol := ts.online(t, "carol", "c")
	dave := ts.online(t, "dave", "d")
	eve := ts.online(t, "eve", "e")
	bob.send(`<presence><show>away</show><status>lunch</status></presence>`)
	bob.expect("own presence", isPresence(bob.jid, ""))

	alice := ts.online(t, "alice", "a")
	// Probes: alice learns the current presence of those she is subscribed to.
	p := alice.expect("bob's presence", isPresence(bob.jid, ""))
	if p.ChildText(xmpp.NSClient, "show") != "away" || p.ChildText(xmpp.NSClient, "status") != "lunch" {
		t.Errorf("probe answer %s lacks bob's current show and status", p)
	}
	if p.Attr("to") != alice.jid {
		t.Errorf("probe answer addressed to %q, want %s", p.Attr("to"), alice.jid)
	}
	alice.expect("carol's presence", isPresence(carol.jid, ""))
	alice.expectNone("presence of dave or eve", func(el *xmpp.Element) bool {
		return isAnyPresenceFromUser("dave@localhost")(el) || isAnyPresenceFromUser("eve@localhost")(el)
	})

	// Broadcast: those subscribed to alice see her, nobody else does.
	bob.expect("alice's presence", isPresence(alice.jid, ""))
	dave.expect("alice's presence", isPresence(alice.jid, ""))
	for _, c := range []*imClient{carol, eve} {
		c.expectNone("alice's presence", isAnyPresenceFromUser("alice@localhost"))
	}
	// Nor are probes from alice's server passed on to clients.
	for _, c := range []*imClient{bob, carol, dave, eve} {
		c.expectNone("a probe", isPresence(alice.jid, "probe"))
	}
}

func TestOwnResourcesSeeEachOther(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	a1 := ts.online(t, "alice", "one")
	a2 := ts.online(t, "alice", "two")
	a1.expect("presence of the second resource", isPresence(a2.jid, ""))
	a2.expect("presence of the first resource", isPresence(a1.jid, ""))

	a2.available("<show>dnd</show>")
	if p := a1.expect("a2's new presence", isPresence(a2.jid, "")); p.ChildText(xmpp.NSClient, "show") != "dnd" {
		t.Fatalf("got %s", p)
	}
	a2.send(`<presence type='unavailable'/>`)
	a1.expect("a2's unavailable presence", isPresence(a2.jid, "unavailable"))

	// A resource that never sent presence is not announced.
	a3 := ts.connect(t, "alice", "three")
	a3.roster()
	a1.expectNone("presence of a resource that is not available", isPresence(a3.jid, ""))
}

func TestDirectedPresenceAndSessionEnd(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol", "dave")
	ts.mutual(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	carol := ts.online(t, "carol", "c")
	d1 := ts.online(t, "dave", "d1")
	d2 := ts.online(t, "dave", "d2")

	alice := ts.online(t, "alice", "a")
	bob.expect("alice's presence", isPresence(alice.jid, ""))
	// Directed presence to non-contacts: a full JID and a bare JID.
	alice.send(`<presence to='carol@localhost/c'><show>chat</show></presence>`)
	if p := carol.expect("directed presence", isPresence(alice.jid, "")); p.ChildText(xmpp.NSClient, "show") != "chat" {
		t.Fatalf("got %s", p)
	}
	alice.send(`<presence to='dave@localhost'/>`)
	d1.expect("directed presence", isPresence(alice.jid, ""))
	d2.expect("directed presence", isPresence(alice.jid, ""))

	// A later broadcast does not reach them: they are not subscribers.
	alice.available("<show>away</show>")
	bob.expect("alice's broadcast", isPresence(alice.jid, ""))
	for _, c := range []*imClient{carol, d1, d2} {
		c.expectNone("a broadcast to a non-subscriber", isAnyPresenceFromUser("alice@localhost"))
	}

	// When the session ends, everyone who saw alice sees her go.
	alice.closeStream()
	for _, c := range []*imClient{bob, carol, d1, d2} {
		c.expect("alice's unavailable presence", isPresence(alice.jid, "unavailable"))
	}
}

func TestDirectedUnavailableIsNotRepeated(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "carol")
	carol := ts.online(t, "carol", "c")
	alice := ts.online(t, "alice", "a")
	alice.send(`<presence to='carol@localhost'/>`)
	carol.expect("directed presence", isPresence(alice.jid, ""))
	alice.send(`<presence to='carol@localhost' type='unavailable'/>`)
	carol.expect("directed unavailable", isPresence(alice.jid, "unavailable"))
	alice.closeStream()
	ts.waitConnections(t, 1)
	carol.expectNone("a second unavailable", isAnyPresenceFromUser("alice@localhost"))
}

func TestDirectedPresenceWithoutInitialPresence(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	ts.mutual(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	carol := ts.online(t, "carol", "c")
	// alice never becomes available; she only tells carol.
	alice := ts.connect(t, "alice", "a")
	alice.send(`<presence to='carol@localhost'/>`)
	carol.expect("directed presence", isPresence(alice.jid, ""))
	alice.cut()
	carol.expect("alice's unavailable presence", isPresence(alice.jid, "unavailable"))
	ts.waitConnections(t, 2)
	// bob never saw alice available, so he is not told she left.
	bob.expectNone("presence of alice, who was never available", isAnyPresenceFrom(alice.jid))
}

func TestUnavailableWhenConnectionIsCut(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	other := ts.online(t, "alice", "other")
	alice := ts.online(t, "alice", "a")
	bob.expect("alice's presence", isPresence(alice.jid, ""))
	other.expect("a's presence", isPresence(alice.jid, ""))

	alice.cut()
	bob.expect("alice's unavailable presence", isPresence(alice.jid, "unavailable"))
	other.expect("a's unavailable presence", isPresence(alice.jid, "unavailable"))
	ts.waitConnections(t, 2)
	// The other resource is still online for bob.
	bob.expectNone("unavailable presence of the remaining resource", isPresence(other.jid, "unavailable"))
}

func TestUnavailableSentByClient(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	alice := ts.online(t, "alice", "a")
	bob.expect("alice's presence", isPresence(alice.jid, ""))

	alice.send(`<presence type='unavailable'><status>gone fishing</status></presence>`)
	p := bob.expect("alice's unavailable presence", isPresence(alice.jid, "unavailable"))
	if p.ChildText(xmpp.NSClient, "status") != "gone fishing" {
		t.Errorf("unavailable presence lost its status: %s", p)
	}
	// Now unavailable, alice no longer gets bare-JID messages...
	bob.message("alice@localhost", "are you there?")
	alice.expectNone("a message to the bare JID while unavailable", isAnyMessage)
	// ...and ending the session announces nothing more.
	alice.closeStream()
	ts.waitConnections(t, 1)
	bob.expectNone("a second unavailable presence", isAnyPresenceFrom(alice.jid))
}

func TestPresenceNotLeakedToNonSubscribers(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	// alice is subscribed to bob, not the other way round.
	ts.putItem(t, "alice", storage.RosterItem{Contact: "bob@localhost", Subscription: storage.SubTo})
	ts.putItem(t, "bob", storage.RosterItem{Contact: "alice@localhost", Subscription: storage.SubFrom})
	bob := ts.online(t, "bob", "b")
	carol := ts.online(t, "carol", "c")
	// carol asked alice for a subscription; alice has not answered.
	carol.send(`<presence to='alice@localhost' type='subscribe'/>`)
	carol.expectPush("alice@localhost")

	alice := ts.online(t, "alice", "a")
	alice.expect("bob's presence", isPresence(bob.jid, ""))
	alice.expect("carol's request", isPresence("carol@localhost", "subscribe"))
	alice.available("<show>away</show>")

	// Probes sent by clients are not answered (RFC 6121 §4.3).
	bob.send(`<presence to='alice@localhost' type='probe'/>`)
	carol.send(`<presence to='alice@localhost' type='probe'/>`)
	for _, c := range []*imClient{bob, carol} {
		c.expectNone("presence of alice", isAnyPresenceFromUser("alice@localhost"))
	}
}
