package server

import (
	"context"
	"time"

	"testing"

	"wren.im/wren/caps"
	"wren.im/wren/disco"
	"wren.im/wren/xmpp"
)

// TestStreamFeaturesCaps: the features after authentication carry the
// server's entity capabilities, and the node#ver they name answers
// disco#info with the server's own information.
func TestStreamFeaturesCaps(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", password)
	rc := dialRaw(t, ts.addr())
	rc.open("localhost")
	rc.starttls()
	rc.open("localhost")
	rc.next()
	if !rc.auth("alice", password) {
		t.Fatal("authentication failed")
	}
	rc.open("localhost")
	f := rc.next()
	c := f.Child(xmpp.NSCaps, "c")
	if c == nil || c.Attr("hash") != "sha-1" || c.Attr("node") != disco.CapsNode || c.Attr("ver") == "" {
		t.Fatalf("stream features without the server's caps: %s", f)
	}
	rc.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`)
	rc.next()
	rc.send(`<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='` + disco.CapsNode + "#" + c.Attr("ver") + `'/></iq>`)
	r := rc.next()
	q := r.Child(xmpp.NSDiscoInfo, "query")
	if r.Attr("type") != "result" || q == nil || q.Attr("node") != disco.CapsNode+"#"+c.Attr("ver") || len(q.Elements()) < 5 {
		t.Fatalf("disco#info for the caps node: %s", r)
	}
	info, err := caps.ParseInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := info.Ver(caps.HashSHA1); err != nil || v != c.Attr("ver") {
		t.Fatalf("the advertised ver %s does not hash the server's disco#info (%s, %v)", c.Attr("ver"), v, err)
	}
	rc.send(`<iq type='get' id='i2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='` + disco.CapsNode + `#wrong'/></iq>`)
	if r := rc.next(); r.Attr("type") != "error" || errorCondition(r) != xmpp.CondItemNotFound {
		t.Fatalf("disco#info for a stale caps node: %s", r)
	}
}

// TestDeletedAccountStartsClean: an account deleted and created again
// under the same name inherits neither the blocklist nor the push
// registrations that the features cached for the old one.
func TestDeletedAccountStartsClean(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	app := newFakeAppServer(t, ts, "apps.localhost")
	alice := ts.online(t, "alice", "pc")
	bob := ts.online(t, "bob", "phone")
	bob.result("set", "", `<block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block>`)
	bob.result("set", "", pushEnable)
	alice.message("bob@localhost", "blocked")
	alice.expect("the bounce", func(el *xmpp.Element) bool { return el.Attr("type") == "error" })
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")

	if _, err := ts.adminClient(t).DeleteUser(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	ts.addUser(t, "bob", password)
	alice.message("bob@localhost", "hello new bob")
	app.none(t, 300*time.Millisecond, "the new account registered no device")
	bob = ts.online(t, "bob", "phone")
	bob.expectMessage(alice.jid, "hello new bob")
}
