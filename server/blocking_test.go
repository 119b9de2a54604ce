package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"wren.im/wren/config"
	"wren.im/wren/xmpp"
)

// Tests of the Blocking Command (XEP-0191) through real client connections.

const nsBlocking = "urn:xmpp:blocking"

// blockItems returns the <item/>s of a blocking element as JIDs.
func blockItems(el *xmpp.Element) []string {
	var out []string
	for _, it := range el.Elements() {
		out = append(out, it.Attr("jid"))
	}
	return out
}

// blockPayload builds a <block/> or <unblock/> with items.
func blockPayload(op string, jids ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<%s xmlns='%s'>", op, nsBlocking)
	for _, j := range jids {
		fmt.Fprintf(&b, "<item jid='%s'/>", j)
	}
	fmt.Fprintf(&b, "</%s>", op)
	return b.String()
}

// getBlocklist fetches the blocklist (which also asks for pushes).
func (c *imClient) getBlocklist() []string {
	c.t.Helper()
	r := c.result("get", "", `<blocklist xmlns='urn:xmpp:blocking'/>`)
	bl := r.Child(nsBlocking, "blocklist")
	if bl == nil {
		c.t.Fatalf("blocklist result without <blocklist/>: %s", r)
	}
	return blockItems(bl)
}

// block and unblock change the blocklist and fail unless they succeed.
func (c *imClient) block(jids ...string) {
	c.t.Helper()
	c.result("set", "", blockPayload("block", jids...))
}

func (c *imClient) unblock(jids ...string) {
	c.t.Helper()
	c.result("set", "", blockPayload("unblock", jids...))
}

// expectBlockPush waits for a blocklist push (op is block or unblock) and
// returns its items.
func (c *imClient) expectBlockPush(op string) []string {
	c.t.Helper()
	push := c.expect(op+" push", func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "iq") && el.Attr("type") == "set" && el.Child(nsBlocking, op) != nil
	})
	if f := push.Attr("from"); f != "" && f != c.bare {
		c.t.Errorf("blocklist push from %q: want none or the user's bare JID", f)
	}
	return blockItems(push.Child(nsBlocking, op))
}

// isMessageError matches an error message from a JID with a condition.
func isMessageError(from, cond string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "message") && el.Attr("type") == "error" && el.Attr("from") == from && errorCondition(el) == cond
	}
}

func TestBlocklistAndPushes(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.Blocking.MaxItems = 3 })
	ts.users(t, "alice", "erin")
	phone := ts.online(t, "alice", "phone")
	desk := ts.online(t, "alice", "desk")
	info := phone.result("get", "localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	if !strings.Contains(info.String(), "'"+nsBlocking+"'") && !strings.Contains(info.String(), `"`+nsBlocking+`"`) {
		t.Fatalf("server disco#info lacks %s: %s", nsBlocking, info)
	}
	if l := phone.getBlocklist(); len(l) != 0 {
		t.Fatalf("new account's blocklist: %v", l)
	}
	desk.getBlocklist()

	phone.block("bob@localhost", "Evil.Example")
	want := []string{"bob@localhost", "evil.example"}
	for _, c := range []*imClient{phone, desk} {
		if got := c.expectBlockPush("block"); !slices.Equal(got, want) {
			t.Fatalf("%s: block push %v, want %v", c.jid, got, want)
		}
	}
	if l := desk.getBlocklist(); !slices.Equal(l, want) {
		t.Fatalf("blocklist %v, want %v", l, want)
	}

	desk.unblock("evil.example")
	for _, c := range []*imClient{phone, desk} {
		if got := c.expectBlockPush("unblock"); !slices.Equal(got, []string{"evil.example"}) {
			t.Fatalf("%s: unblock push %v", c.jid, got)
		}
	}

	// The cap counts entries; refused requests change nothing.
	phone.block("carol@localhost", "dave@localhost")
	r := phone.iqError("set", "", blockPayload("block", "erin@localhost"), "not-acceptable")
	if !strings.Contains(r.String(), "at most 3") {
		t.Errorf("cap error without an explanation: %s", r)
	}
	phone.iqError("set", "", blockPayload("block"), "bad-request")
	phone.iqError("set", "", `<block xmlns='urn:xmpp:blocking'><item/></block>`, "bad-request")
	phone.iqError("set", "", blockPayload("block", "a@b@c"), "jid-malformed")
	phone.iqError("get", "erin@localhost", `<blocklist xmlns='urn:xmpp:blocking'/>`, "forbidden")
	if l := desk.getBlocklist(); !slices.Equal(l, []string{"bob@localhost", "carol@localhost", "dave@localhost"}) {
		t.Fatalf("blocklist %v", l)
	}

	// Unblock all: an empty <unblock/>, pushed as such.
	phone.drain()
	desk.drain()
	desk.unblock()
	for _, c := range []*imClient{phone, desk} {
		if got := c.expectBlockPush("unblock"); len(got) != 0 {
			t.Fatalf("%s: unblock-all push with items %v", c.jid, got)
		}
	}
	if l := phone.getBlocklist(); len(l) != 0 {
		t.Fatalf("blocklist after unblock all: %v", l)
	}
}

func TestBlockedContactCutOff(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")
	alice.expect("bob's presence", isPresence("bob@localhost/b", ""))
	alice.getBlocklist()
	alice.block("bob@localhost")
	alice.drain()
	bob.drain()

	// bob's messages are bounced as if alice did not exist.
	bob.message("alice@localhost", "are you there?")
	bob.expect("service-unavailable for the message to alice", isMessageError("alice@localhost", "service-unavailable"))
	bob.message("alice@localhost/a", "and there?")
	bob.expect("service-unavailable for the message to alice/a", isMessageError("alice@localhost/a", "service-unavailable"))
	bob.iqError("get", "alice@localhost/a", `<ping xmlns='urn:xmpp:ping'/>`, "service-unavailable")
	bob.iqError("get", "alice@localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`, "service-unavailable")
	alice.expectNone("anything from bob", func(el *xmpp.Element) bool {
		return strings.HasPrefix(el.Attr("from"), "bob@localhost")
	})

	// alice's messages to bob come back with <blocked/>.
	alice.message("bob@localhost", "psst")
	e := alice.expect("not-acceptable for the message to bob", isMessageError("bob@localhost", "not-acceptable"))
	if e.Child(xmpp.NSClient, "error").Child("urn:xmpp:blocking:errors", "blocked") == nil {
		t.Fatalf("error without <blocked/>: %s", e)
	}
	alice.iqError("get", "bob@localhost/b", `<ping xmlns='urn:xmpp:ping'/>`, "not-acceptable")
	bob.expectNone("anything from alice", func(el *xmpp.Element) bool {
		return strings.HasPrefix(el.Attr("from"), "alice@localhost")
	})

	// Nothing of it was archived, and nothing waits offline.
	if p := alice.mam(mamForm("with", "bob@localhost")); len(p.results) != 0 {
		t.Fatalf("alice's archive holds %v with bob", p.bodies())
	}
	alice.closeStream()
	bob.message("alice@localhost", "while you are away")
	bob.expect("service-unavailable while alice is offline", isMessageError("alice@localhost", "service-unavailable"))
	alice = ts.online(t, "alice", "a2")
	alice.expectNone("bob's offline message", isAnyMessage)

	// Unblocked, bob gets through again.
	alice.unblock("bob@localhost")
	bob.message("alice@localhost/a2", "hello again")
	alice.expectMessage("bob@localhost/b", "hello again")
	alice.message("bob@localhost", "welcome back")
	bob.expectMessage("alice@localhost/a2", "welcome back")
}

func TestBlockingCutsPresenceBothWays(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	bob := ts.online(t, "bob", "b")
	alice.expect("bob's presence", isPresence("bob@localhost/b", ""))
	alice.drain()
	bob.drain()

	alice.block("bob@localhost")
	bob.expect("alice's unavailable on block", isPresence("alice@localhost/a", "unavailable"))
	alice.expect("bob's unavailable on block", isPresence("bob@localhost/b", "unavailable"))

	// Neither sees the other's presence changes any more.
	bob.available("<show>away</show>")
	alice.available("<show>dnd</show>")
	alice.expectNone("bob's presence", isAnyPresenceFromUser("bob@localhost"))
	bob.expectNone("alice's presence", isAnyPresenceFromUser("alice@localhost"))
	// A new resource of bob's probes in vain.
	bob2 := ts.online(t, "bob", "b2")
	bob2.expectNone("alice's presence", isAnyPresenceFromUser("alice@localhost"))
	alice.expectNone("bob's presence", isAnyPresenceFromUser("bob@localhost"))

	// Unblocked: each learns the other's current presence.
	alice.unblock("bob@localhost")
	p := bob.expect("alice's presence on unblock", isPresence("alice@localhost/a", ""))
	if p.ChildText(xmpp.NSClient, "show") != "dnd" {
		t.Errorf("alice's presence on unblock is not her current one: %s", p)
	}
	bob2.expect("alice's presence on unblock", isPresence("alice@localhost/a", ""))
	for _, res := range []string{"bob@localhost/b", "bob@localhost/b2"} {
		alice.expect("bob's presence after unblock", isPresence(res, ""))
	}
	bob.available("<show>chat</show>")
	alice.expect("bob's next presence change", func(el *xmpp.Element) bool {
		return isPresence("bob@localhost/b", "")(el) && el.ChildText(xmpp.NSClient, "show") == "chat"
	})
}

func TestBlockingDomainAndResource(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	alice := ts.online(t, "alice", "a")
	alice2 := ts.online(t, "alice", "a2")
	bobPhone := ts.online(t, "bob", "phone")
	bobPC := ts.online(t, "bob", "pc")
	carol := ts.online(t, "carol", "phone")

	// domain/resource: that resource of anybody at the domain.
	alice.block("localhost/phone")
	bobPhone.message("alice@localhost/a", "from the phone")
	bobPhone.expect("bounce", isMessageError("alice@localhost/a", "service-unavailable"))
	carol.message("alice@localhost/a", "carol's phone")
	carol.expect("bounce", isMessageError("alice@localhost/a", "service-unavailable"))
	bobPC.message("alice@localhost/a", "from the pc")
	alice.expectMessage("bob@localhost/pc", "from the pc")
	alice.unblock("localhost/phone")

	// A domain: every user there, but never the server itself nor alice's
	// own resources.
	alice.block("localhost")
	bobPC.message("alice@localhost/a", "blocked domain")
	bobPC.expect("bounce", isMessageError("alice@localhost/a", "service-unavailable"))
	alice.result("get", "localhost", `<ping xmlns='urn:xmpp:ping'/>`)
	alice2.message("alice@localhost/a", "to myself")
	alice.expectMessage("alice@localhost/a2", "to myself")
	alice.message("somebody@elsewhere.example", "outside")
	alice.expectNone("an error for a domain that is not blocked", isMessageError("somebody@elsewhere.example", "not-acceptable"))
	alice.expectNone("any message from a blocked user", func(el *xmpp.Element) bool {
		return isAnyMessage(el) && el.Attr("type") != "error" && strings.Contains(el.Attr("from"), "@localhost/") && !strings.HasPrefix(el.Attr("from"), "alice@")
	})
}

func TestBlocklistSurvivesRestart(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "a")
	alice.block("bob@localhost")
	dir := ts.cfg.DataDir
	ts.stop(t)

	ts2 := startTestServer(t, func(c *config.Config) { c.DataDir = dir })
	alice = ts2.online(t, "alice", "a")
	if l := alice.getBlocklist(); !slices.Equal(l, []string{"bob@localhost"}) {
		t.Fatalf("blocklist after restart: %v", l)
	}
	bob := ts2.online(t, "bob", "b")
	bob.message("alice@localhost", "after the restart")
	bob.expect("bounce", isMessageError("alice@localhost", "service-unavailable"))
}
