package server

import (
	"context"
	"testing"

	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Presence subscriptions between two local users (RFC 6121 §3).

// checkStored fails unless user's roster item for contact has that state.
func (ts *testServer) checkStored(t *testing.T, user, contact, sub string, ask bool) {
	t.Helper()
	it, err := ts.store.RosterItem(context.Background(), user, contact)
	if err != nil {
		t.Fatalf("%s's item for %s: %v", user, contact, err)
	}
	if it.Subscription != sub || it.AskOut != ask {
		t.Fatalf("%s's item for %s: %+v, want subscription %s ask %v", user, contact, it, sub, ask)
	}
}

// pendingRequests returns who asked user for a subscription.
func (ts *testServer) pendingRequests(t *testing.T, user string) []string {
	t.Helper()
	reqs, err := ts.store.SubscriptionRequests(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range reqs {
		out = append(out, r.From)
	}
	return out
}

func TestSubscriptionHandshake(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")

	// alice asks bob.
	alice.send(`<presence to='bob@localhost' type='subscribe'/>`)
	checkItem(t, alice.expectPush("bob@localhost"), "none", "subscribe")
	req := bob.expect("subscribe from alice", isPresence("alice@localhost", "subscribe"))
	if req.Attr("to") != "bob@localhost" {
		t.Errorf("request addressed to %q", req.Attr("to"))
	}
	// The contact's server does not add the requester to the roster.
	bob.expectNone("roster push for a mere request", isAnyPush)
	if got := ts.pendingRequests(t, "bob"); len(got) != 1 || got[0] != "alice@localhost" {
		t.Fatalf("bob's pending requests %v", got)
	}

	// bob approves: both get pushes, alice gets bob's presence.
	bob.send(`<presence to='alice@localhost' type='subscribed'/>`)
	checkItem(t, bob.expectPush("alice@localhost"), "from", "")
	checkItem(t, alice.expectPush("bob@localhost"), "to", "")
	alice.expect("subscribed from bob", isPresence("bob@localhost", "subscribed"))
	alice.expect("bob's presence", isPresence(bob.jid, ""))
	bob.expectNone("alice's presence (bob is not subscribed)", isAnyPresenceFromUser("alice@localhost"))
	if got := ts.pendingRequests(t, "bob"); len(got) != 0 {
		t.Fatalf("answered request still stored: %v", got)
	}

	// And the other way round.
	bob.send(`<presence to='alice@localhost' type='subscribe'/>`)
	checkItem(t, bob.expectPush("alice@localhost"), "from", "subscribe")
	alice.expect("subscribe from bob", isPresence("bob@localhost", "subscribe"))
	alice.send(`<presence to='bob@localhost' type='subscribed'/>`)
	alice.expectPushState("bob@localhost", "both", "")
	bob.expectPushState("alice@localhost", "both", "")
	bob.expect("subscribed from alice", isPresence("alice@localhost", "subscribed"))
	bob.expect("alice's presence", isPresence(alice.jid, ""))

	ts.checkStored(t, "alice", "bob@localhost", storage.SubBoth, false)
	ts.checkStored(t, "bob", "alice@localhost", storage.SubBoth, false)

	// Now presence changes flow both ways.
	alice.available("<show>chat</show>")
	if p := bob.expect("alice's new presence", isPresence(alice.jid, "")); p.ChildText(xmpp.NSClient, "show") != "chat" {
		t.Fatalf("got %s", p)
	}
	bob.available("<show>xa</show>")
	if p := alice.expect("bob's new presence", isPresence(bob.jid, "")); p.ChildText(xmpp.NSClient, "show") != "xa" {
		t.Fatalf("got %s", p)
	}

	// A repeated subscribe to a subscribed contact is answered by the
	// contact's server, not shown to the contact (RFC 6121 §3.1.3), and
	// changes nothing.
	alice.send(`<presence to='bob@localhost' type='subscribe'/>`)
	alice.sync()
	bob.expectNone("a repeated request", isPresenceFromUser("alice@localhost", "subscribe"))
	ts.checkStored(t, "alice", "bob@localhost", storage.SubBoth, false)
	ts.checkStored(t, "bob", "alice@localhost", storage.SubBoth, false)
}

func TestSubscriptionRequestWhileOffline(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	alice.send(`<presence to='bob@localhost' type='subscribe'/>`)
	checkItem(t, alice.expectPush("bob@localhost"), "none", "subscribe")
	alice.sync()

	// Not before initial presence...
	bob := ts.connect(t, "bob", "b")
	bob.roster()
	bob.expectNone("subscription request before initial presence", isPresenceFromUser("alice@localhost", "subscribe"))
	// ...but at it.
	bob.available("")
	bob.expect("stored request", isPresence("alice@localhost", "subscribe"))
	bob.closeStream()

	// Unanswered: delivered again at the next login.
	bob = ts.online(t, "bob", "b2")
	bob.expect("stored request again", isPresence("alice@localhost", "subscribe"))
	bob.send(`<presence to='alice@localhost' type='subscribed'/>`)
	checkItem(t, alice.expectPush("bob@localhost"), "to", "")
	alice.expect("bob's presence", isPresence(bob.jid, ""))
	bob.closeStream()

	// Answered: not delivered any more.
	bob = ts.online(t, "bob", "b3")
	bob.expectNone("an answered request", isPresenceFromUser("alice@localhost", "subscribe"))
}

func TestSubscriptionPreApproval(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")

	// RFC 6121 §3.4: alice approves bob before he asks.
	alice.send(`<presence to='bob@localhost' type='subscribed'/>`)
	it := alice.expectPush("bob@localhost")
	checkItem(t, it, "none", "")
	if it.Attr("approved") != "true" {
		t.Fatalf("pre-approved item %s lacks approved='true'", it)
	}
	alice.sync()
	bob.expectNone("the pre-approval itself", isAnyPresenceFromUser("alice@localhost"))

	// bob's request is approved at once, without alice seeing it.
	bob.send(`<presence to='alice@localhost' type='subscribe'/>`)
	bob.expect("automatic subscribed from alice", isPresence("alice@localhost", "subscribed"))
	bob.expect("alice's presence", isPresence(alice.jid, ""))
	bob.expectPushState("alice@localhost", "to", "")
	it = alice.expectPushState("bob@localhost", "from", "")
	if it.Attr("approved") != "" {
		t.Errorf("approved flag kept after use: %s", it)
	}
	alice.expectNone("bob's request", isPresenceFromUser("bob@localhost", "subscribe"))
	ts.checkStored(t, "alice", "bob@localhost", storage.SubFrom, false)
	ts.checkStored(t, "bob", "alice@localhost", storage.SubTo, false)
}

func TestSubscriptionPreApprovalCancelled(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")
	alice.send(`<presence to='bob@localhost' type='subscribed'/>`)
	alice.expectPush("bob@localhost")
	// unsubscribed withdraws the pre-approval (RFC 6121 §3.4.1).
	alice.send(`<presence to='bob@localhost' type='unsubscribed'/>`)
	if it := alice.expectPush("bob@localhost"); it.Attr("approved") != "" {
		t.Fatalf("pre-approval not withdrawn: %s", it)
	}
	bob.send(`<presence to='alice@localhost' type='subscribe'/>`)
	alice.expect("bob's request", isPresence("bob@localhost", "subscribe"))
	bob.expectNone("an automatic approval", isPresenceFromUser("alice@localhost", "subscribed"))
}

func TestSubscriptionDenied(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")
	alice.send(`<presence to='bob@localhost' type='subscribe'/>`)
	checkItem(t, alice.expectPush("bob@localhost"), "none", "subscribe")
	bob.expect("subscribe from alice", isPresence("alice@localhost", "subscribe"))

	bob.send(`<presence to='alice@localhost' type='unsubscribed'/>`)
	alice.expect("unsubscribed from bob", isPresence("bob@localhost", "unsubscribed"))
	checkItem(t, alice.expectPush("bob@localhost"), "none", "")
	alice.expectNone("bob's presence after a refusal", isPresenceFromUser("bob@localhost", ""))
	if got := ts.pendingRequests(t, "bob"); len(got) != 0 {
		t.Fatalf("refused request still stored: %v", got)
	}
	ts.checkStored(t, "alice", "bob@localhost", storage.SubNone, false)
}

func TestSubscriptionCancelledByContact(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")
	alice.expect("bob's presence", isPresence(bob.jid, ""))

	// bob revokes alice's subscription to him (RFC 6121 §3.2).
	bob.send(`<presence to='alice@localhost' type='unsubscribed'/>`)
	checkItem(t, bob.expectPush("alice@localhost"), "to", "")
	checkItem(t, alice.expectPush("bob@localhost"), "from", "")
	alice.expect("unsubscribed from bob", isPresence("bob@localhost", "unsubscribed"))
	alice.expect("bob's unavailable presence", isPresence(bob.jid, "unavailable"))

	// alice no longer sees bob; bob still sees alice.
	bob.available("<show>away</show>")
	alice.expectNone("bob's presence", isPresenceFromUser("bob@localhost", ""))
	alice.available("<show>away</show>")
	bob.expect("alice's presence", isPresence(alice.jid, ""))
}

func TestSubscriptionUnsubscribe(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")
	alice.expect("bob's presence", isPresence(bob.jid, ""))

	// alice cancels her own subscription to bob (RFC 6121 §3.3).
	alice.send(`<presence to='bob@localhost' type='unsubscribe'/>`)
	checkItem(t, alice.expectPush("bob@localhost"), "from", "")
	checkItem(t, bob.expectPush("alice@localhost"), "to", "")
	bob.expect("unsubscribe from alice", isPresence("alice@localhost", "unsubscribe"))
	alice.expect("bob's unavailable presence", isPresence(bob.jid, "unavailable"))

	bob.available("<show>away</show>")
	alice.expectNone("bob's presence", isPresenceFromUser("bob@localhost", ""))
	alice.available("<show>away</show>")
	bob.expect("alice's presence", isPresence(alice.jid, ""))
	ts.checkStored(t, "alice", "bob@localhost", storage.SubFrom, false)
	ts.checkStored(t, "bob", "alice@localhost", storage.SubTo, false)
}

func TestSubscriptionToUnknownUserIsIgnored(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "a")
	// RFC 6121 §8.5.1: subscription stanzas to an account that does not
	// exist are silently ignored.
	for _, typ := range []string{"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"} {
		alice.send(`<presence to='nobody@localhost' type='` + typ + `'/>`)
	}
	alice.send(`<presence to='nobody@localhost/x' type='subscribe'/>`)
	alice.expectNone("an answer on behalf of a missing account", isAnyPresenceFromUser("nobody@localhost"))
}

func TestSubscriptionRequestWithdrawn(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	alice.send(`<presence to='bob@localhost' type='subscribe'/>`)
	checkItem(t, alice.expectPush("bob@localhost"), "none", "subscribe")
	// alice changes her mind before bob comes online (RFC 6121 §3.3).
	alice.send(`<presence to='bob@localhost' type='unsubscribe'/>`)
	checkItem(t, alice.expectPush("bob@localhost"), "none", "")
	alice.sync()
	if got := ts.pendingRequests(t, "bob"); len(got) != 0 {
		t.Fatalf("withdrawn request still stored: %v", got)
	}
	bob := ts.online(t, "bob", "b")
	bob.expectNone("a withdrawn request", isPresenceFromUser("alice@localhost", "subscribe"))
	// A late approval does not give alice a subscription she withdrew.
	bob.send(`<presence to='alice@localhost' type='subscribed'/>`)
	bob.sync()
	alice.expectNone("an approval of a withdrawn request", isPresenceFromUser("bob@localhost", "subscribed"))
	ts.checkStored(t, "alice", "bob@localhost", storage.SubNone, false)
}
