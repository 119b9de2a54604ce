package server

import (
	"context"
	"runtime"
	"testing"

	"wren.im/wren/xmpp"
)

// Server services: disco (XEP-0030), ping (XEP-0199), version (XEP-0092),
// vCard (XEP-0054) and private XML storage (XEP-0049).

func features(q *xmpp.Element) map[string]bool {
	out := map[string]bool{}
	for _, f := range q.Elements() {
		if f.Is(xmpp.NSDiscoInfo, "feature") {
			out[f.Attr("var")] = true
		}
	}
	return out
}

func TestDiscoServer(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	alice := ts.connect(t, "alice", "r")

	r := alice.result("get", "localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	if r.Attr("from") != "localhost" {
		t.Errorf("disco#info answered from %q", r.Attr("from"))
	}
	q := r.Child(xmpp.NSDiscoInfo, "query")
	if q == nil {
		t.Fatalf("no query in %s", r)
	}
	id := q.Child(xmpp.NSDiscoInfo, "identity")
	if id == nil || id.Attr("category") != "server" || id.Attr("type") != "im" {
		t.Errorf("server identity %v, want server/im", id)
	}
	f := features(q)
	for _, want := range []string{xmpp.NSDiscoInfo, xmpp.NSDiscoItems, xmpp.NSPing, xmpp.NSVersion, xmpp.NSVCard, xmpp.NSPrivate, xmpp.NSOffline} {
		if !f[want] {
			t.Errorf("server features lack %s: %s", want, q)
		}
	}

	r = alice.result("get", "localhost", `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	if r.Child(xmpp.NSDiscoItems, "query") == nil {
		t.Errorf("disco#items: %s", r)
	}
	alice.iqError("get", "localhost", `<query xmlns='http://jabber.org/protocol/disco#info' node='nope'/>`, xmpp.CondItemNotFound)
	alice.iqError("get", "localhost", `<query xmlns='http://jabber.org/protocol/disco#items' node='nope'/>`, xmpp.CondItemNotFound)
}

func TestDiscoAccount(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.connect(t, "alice", "r")

	for _, to := range []string{"alice@localhost", "bob@localhost"} {
		q := alice.result("get", to, `<query xmlns='http://jabber.org/protocol/disco#info'/>`).Child(xmpp.NSDiscoInfo, "query")
		if q == nil {
			t.Fatalf("disco#info to %s: no query", to)
		}
		id := q.Child(xmpp.NSDiscoInfo, "identity")
		if id == nil || id.Attr("category") != "account" || id.Attr("type") != "registered" {
			t.Errorf("account identity %v, want account/registered", id)
		}
		f := features(q)
		for _, want := range []string{xmpp.NSDiscoInfo, xmpp.NSPing, xmpp.NSVCard} {
			if !f[want] {
				t.Errorf("account features lack %s: %s", want, q)
			}
		}
	}
	r := alice.result("get", "alice@localhost", `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	if q := r.Child(xmpp.NSDiscoItems, "query"); q == nil || len(q.Elements()) != 0 {
		t.Errorf("account disco#items: %s", r)
	}
	alice.iqError("get", "nobody@localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`, xmpp.CondServiceUnavailable)
}

func TestPingAndVersion(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	alice := ts.connect(t, "alice", "r")

	if r := alice.result("get", "localhost", `<ping xmlns='urn:xmpp:ping'/>`); r.Attr("from") != "localhost" || r.Attr("to") != alice.jid || len(r.Elements()) != 0 {
		t.Errorf("ping to the server: %s", r)
	}
	if r := alice.result("get", "alice@localhost", `<ping xmlns='urn:xmpp:ping'/>`); r.Attr("from") != "alice@localhost" {
		t.Errorf("ping to the own account: %s", r)
	}
	alice.result("get", "", `<ping xmlns='urn:xmpp:ping'/>`)
	alice.iqError("set", "localhost", `<ping xmlns='urn:xmpp:ping'/>`, xmpp.CondBadRequest)

	q := alice.result("get", "localhost", `<query xmlns='jabber:iq:version'/>`).Child(xmpp.NSVersion, "query")
	if q == nil || q.ChildText(xmpp.NSVersion, "name") != "Wren" || q.ChildText(xmpp.NSVersion, "version") != Version || q.ChildText(xmpp.NSVersion, "os") != runtime.GOOS {
		t.Errorf("software version: %v", q)
	}
}

func TestVCard(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.connect(t, "alice", "r")
	bob := ts.connect(t, "bob", "r")

	// None yet: an empty vCard.
	v := alice.result("get", "", `<vCard xmlns='vcard-temp'/>`).Child(xmpp.NSVCard, "vCard")
	if v == nil || len(v.Elements()) != 0 {
		t.Fatalf("vCard before any was set: %v", v)
	}

	alice.result("set", "", `<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>alice</NICKNAME></vCard>`)
	v = alice.result("get", "", `<vCard xmlns='vcard-temp'/>`).Child(xmpp.NSVCard, "vCard")
	if v == nil || v.ChildText(xmpp.NSVCard, "FN") != "Alice Liddell" || v.ChildText(xmpp.NSVCard, "NICKNAME") != "alice" {
		t.Fatalf("own vCard: %v", v)
	}

	// Another user reads it from the bare JID.
	r := bob.result("get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`)
	if r.Attr("from") != "alice@localhost" || r.Child(xmpp.NSVCard, "vCard").ChildText(xmpp.NSVCard, "FN") != "Alice Liddell" {
		t.Fatalf("alice's vCard as seen by bob: %s", r)
	}
	// But cannot change it.
	bob.iqError("set", "alice@localhost", `<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>`, xmpp.CondForbidden)
	v = alice.result("get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`).Child(xmpp.NSVCard, "vCard")
	if v.ChildText(xmpp.NSVCard, "FN") != "Alice Liddell" {
		t.Fatalf("vCard changed by another user: %s", v)
	}
	// bob's own is still empty; nobody's does not exist.
	if v := bob.result("get", "", `<vCard xmlns='vcard-temp'/>`).Child(xmpp.NSVCard, "vCard"); v == nil || len(v.Elements()) != 0 {
		t.Fatalf("bob's vCard: %v", v)
	}
	bob.iqError("get", "nobody@localhost", `<vCard xmlns='vcard-temp'/>`, xmpp.CondServiceUnavailable)

	// Replacing works.
	alice.result("set", "", `<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>`)
	v = bob.result("get", "alice@localhost", `<vCard xmlns='vcard-temp'/>`).Child(xmpp.NSVCard, "vCard")
	if v.ChildText(xmpp.NSVCard, "FN") != "Alice" || v.Child(xmpp.NSVCard, "NICKNAME") != nil {
		t.Fatalf("replaced vCard: %s", v)
	}
}

func TestPrivateXML(t *testing.T) {
	t.Parallel()
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.connect(t, "alice", "r")
	bob := ts.connect(t, "bob", "r")

	const get = `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`
	// Nothing stored: the empty element comes back.
	q := alice.result("get", "", get).Child(xmpp.NSPrivate, "query")
	if s := q.Child("storage:bookmarks", "storage"); s == nil || len(s.Elements()) != 0 {
		t.Fatalf("empty private storage: %s", q)
	}

	alice.result("set", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='tea@party.localhost' name='Tea'/></storage></query>`)
	q = alice.result("get", "", get).Child(xmpp.NSPrivate, "query")
	c := q.Child("storage:bookmarks", "storage").Child("storage:bookmarks", "conference")
	if c == nil || c.Attr("jid") != "tea@party.localhost" {
		t.Fatalf("stored bookmarks: %s", q)
	}
	// Other namespaces are kept apart.
	q = alice.result("get", "", `<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>`).Child(xmpp.NSPrivate, "query")
	if p := q.Child("urn:example:prefs", "prefs"); p == nil || len(p.Elements()) != 0 {
		t.Fatalf("other namespace: %s", q)
	}

	// jabber:* namespaces are refused, for set and get.
	alice.iqError("set", "", `<query xmlns='jabber:iq:private'><x xmlns='jabber:iq:roster'/></query>`, xmpp.CondNotAcceptable)
	alice.iqError("get", "", `<query xmlns='jabber:iq:private'><x xmlns='jabber:x:data'/></query>`, xmpp.CondNotAcceptable)
	// Another user's storage is off limits, for get and set.
	bob.iqError("get", "alice@localhost", get, xmpp.CondForbidden)
	bob.iqError("set", "alice@localhost", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`, xmpp.CondForbidden)
	b, err := ts.store.PrivateXML(context.Background(), "alice", "storage:bookmarks")
	if err != nil || len(b) == 0 {
		t.Fatalf("alice's bookmarks after bob's attempt: %q, %v", b, err)
	}
	q = bob.result("get", "", get).Child(xmpp.NSPrivate, "query")
	if s := q.Child("storage:bookmarks", "storage"); s == nil || len(s.Elements()) != 0 {
		t.Fatalf("bob sees private data: %s", q)
	}
}
