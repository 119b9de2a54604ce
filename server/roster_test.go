package server

import (
	"context"
	"errors"
	"slices"
	"testing"

	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Rosters (RFC 6121 §2) with versioning (XEP-0237).

func groups(it *xmpp.Element) []string {
	var out []string
	for _, g := range it.Elements() {
		if g.Is(xmpp.NSRoster, "group") {
			out = append(out, g.Text())
		}
	}
	return out
}

func TestRosterVersioning(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	alice := ts.connect(t, "alice", "r")

	// An empty roster still carries its version.
	q := alice.roster()
	v0 := q.Attr("ver")
	if v0 == "" || len(q.Elements()) != 0 {
		t.Fatalf("empty roster: %s", q)
	}

	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query>`)
	alice.expectPush("bob@localhost")
	q = alice.roster()
	v1ver := q.Attr("ver")
	if v1ver == v0 || len(q.Elements()) != 1 || q.Elements()[0].Attr("jid") != "bob@localhost" {
		t.Fatalf("roster after one set (old ver %s): %s", v0, q)
	}

	// The client's copy is current: an empty result (XEP-0237 §2.4).
	if q := alice.rosterVer(v1ver); q != nil {
		t.Fatalf("roster get with the current ver %s returned %s, want an empty result", v1ver, q)
	}

	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query>`)
	push := alice.expect("push for carol", isPush("carol@localhost"))
	pushVer := push.Child(xmpp.NSRoster, "query").Attr("ver")
	if pushVer == v1ver {
		t.Fatalf("push ver %s did not change", pushVer)
	}

	// An old version and an empty version both get the whole roster.
	for _, ver := range []string{v1ver, v0, ""} {
		q := alice.rosterVer(ver)
		if q == nil {
			t.Fatalf("roster get with stale ver %q returned an empty result", ver)
		}
		if q.Attr("ver") != pushVer || len(q.Elements()) != 2 {
			t.Fatalf("roster get with stale ver %q: %s, want 2 items at ver %s", ver, q, pushVer)
		}
	}
	if q := alice.rosterVer(pushVer); q != nil {
		t.Fatalf("roster get with the current ver returned %s", q)
	}
}

func TestRosterSetNameAndGroups(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.connect(t, "alice", "r")
	alice.roster()

	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='Bob@LOCALHOST/phone' name='Bobby'><group>Friends</group><group>Work</group></item></query>`)
	it := alice.expectPush("bob@localhost")
	checkItem(t, it, "none", "")
	if it.Attr("name") != "Bobby" || !slices.Equal(groups(it), []string{"Friends", "Work"}) {
		t.Fatalf("pushed item %s", it)
	}

	// A second set replaces name and groups.
	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Family</group></item></query>`)
	it = alice.expectPush("bob@localhost")
	if it.Attr("name") != "Bob" || !slices.Equal(groups(it), []string{"Family"}) {
		t.Fatalf("pushed item %s", it)
	}
	q := alice.roster()
	if len(q.Elements()) != 1 {
		t.Fatalf("roster %s", q)
	}
	it = q.Elements()[0]
	if it.Attr("jid") != "bob@localhost" || it.Attr("name") != "Bob" || !slices.Equal(groups(it), []string{"Family"}) {
		t.Fatalf("stored item %s", it)
	}

	// A client cannot set the subscription state by a roster set.
	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='both'/></query>`)
	checkItem(t, alice.expectPush("bob@localhost"), "none", "")
}

func TestRosterSetErrors(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	alice := ts.connect(t, "alice", "r")
	alice.roster()
	cases := []struct {
		name, query, cond string
	}{
		{"duplicate group", `<item jid='bob@localhost'><group>A</group><group>A</group></item>`, xmpp.CondBadRequest},
		{"empty group", `<item jid='bob@localhost'><group/></item>`, xmpp.CondNotAcceptable},
		{"two items", `<item jid='bob@localhost'/><item jid='carol@localhost'/>`, xmpp.CondBadRequest},
		{"no item", ``, xmpp.CondBadRequest},
		{"malformed jid", `<item jid='a@b@c'/>`, xmpp.CondJIDMalformed},
		{"missing jid", `<item name='x'/>`, xmpp.CondJIDMalformed},
		{"remove unknown item", `<item jid='nobody@localhost' subscription='remove'/>`, xmpp.CondItemNotFound},
	}
	for _, tc := range cases {
		alice.iqError("set", "", `<query xmlns='jabber:iq:roster'>`+tc.query+`</query>`, tc.cond)
	}
	alice.expectNone("roster push after a refused set", isAnyPush)
	if q := alice.roster(); len(q.Elements()) != 0 {
		t.Fatalf("refused sets changed the roster: %s", q)
	}
}

func TestRosterPushOnlyToInterestedResources(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	fetched := ts.connect(t, "alice", "fetched")
	fetched.roster()
	silent := ts.connect(t, "alice", "silent")
	other := ts.connect(t, "alice", "other")
	other.roster()

	fetched.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='B'/></query>`)
	for _, c := range []*imClient{fetched, other} {
		push := c.expect("roster push", isPush("bob@localhost"))
		if push.Attr("to") != c.jid {
			t.Errorf("push to %q, want %s", push.Attr("to"), c.jid)
		}
		if push.Attr("id") == "" {
			t.Errorf("push without id: %s", push)
		}
		// The client acknowledges the push (RFC 6121 §2.1.6).
		c.send(`<iq type='result' id='` + push.Attr("id") + `'/>`)
	}
	silent.expectNone("roster push to a resource that never fetched the roster", isAnyPush)

	// Once it fetches the roster, it receives pushes too.
	silent.roster()
	other.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query>`)
	for _, c := range []*imClient{fetched, other, silent} {
		checkItem(t, c.expectPush("bob@localhost"), "remove", "")
	}
}

func TestRosterRemoveCancelsSubscriptions(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	alice := ts.online(t, "alice", "a")
	bob.expect("alice's presence", isPresence(alice.jid, ""))
	alice.expect("bob's presence", isPresence(bob.jid, ""))
	alice.drain()
	bob.drain()

	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query>`)
	checkItem(t, alice.expectPush("bob@localhost"), "remove", "")

	// RFC 6121 §2.5.2: the contact receives unsubscribe and unsubscribed,
	// and each side sees the other go offline.
	bob.expect("unsubscribe from alice", isPresence("alice@localhost", "unsubscribe"))
	bob.expect("unsubscribed from alice", isPresence("alice@localhost", "unsubscribed"))
	bob.expect("alice's unavailable presence", isPresence(alice.jid, "unavailable"))
	alice.expect("bob's unavailable presence", isPresence(bob.jid, "unavailable"))
	bob.expectPushState("alice@localhost", "none", "")

	if _, err := ts.store.RosterItem(context.Background(), "alice", "bob@localhost"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("alice's item for bob after removal: %v", err)
	}
	it, err := ts.store.RosterItem(context.Background(), "bob", "alice@localhost")
	if err != nil || it.Subscription != storage.SubNone {
		t.Errorf("bob's item for alice: %+v, %v; want subscription none", it, err)
	}

	// Presence no longer flows in either direction.
	alice.available("<show>away</show>")
	bob.expectNone("alice's presence after the removal", isAnyPresenceFrom(alice.jid))
	bob.available("<show>dnd</show>")
	alice.expectNone("bob's presence after the removal", isAnyPresenceFrom(bob.jid))
}

func TestRosterRemoveWithoutSubscriptionSendsNothing(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	alice := ts.online(t, "alice", "a")
	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query>`)
	alice.expectPush("bob@localhost")
	alice.result("set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query>`)
	checkItem(t, alice.expectPush("bob@localhost"), "remove", "")
	alice.sync()
	bob.expectNone("presence from alice", isAnyPresenceFromUser("alice@localhost"))
}

func TestRosterOfAnotherUserIsForbidden(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.putItem(t, "bob", storage.RosterItem{Contact: "carol@localhost", Subscription: storage.SubNone})
	alice := ts.connect(t, "alice", "r")
	alice.iqError("get", "bob@localhost", `<query xmlns='jabber:iq:roster'/>`, xmpp.CondForbidden)
	r := alice.iqError("set", "bob@localhost", `<query xmlns='jabber:iq:roster'><item jid='dave@localhost'/></query>`, xmpp.CondForbidden)
	if r.Attr("from") != "bob@localhost" {
		t.Errorf("error from %q, want bob@localhost", r.Attr("from"))
	}
	alice.iqError("get", "nobody@localhost", `<query xmlns='jabber:iq:roster'/>`, xmpp.CondServiceUnavailable)
	items, _, err := ts.store.Roster(context.Background(), "bob")
	if err != nil || len(items) != 1 || items[0].Contact != "carol@localhost" {
		t.Fatalf("bob's roster changed: %+v %v", items, err)
	}
	// The own bare JID as 'to' is the same as no 'to'.
	q := alice.result("get", "alice@localhost", `<query xmlns='jabber:iq:roster'/>`).Child(xmpp.NSRoster, "query")
	if q == nil {
		t.Fatal("no roster for an IQ to the own bare JID")
	}
}
