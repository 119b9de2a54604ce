package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"wren.im/wren/caps"
	"wren.im/wren/config"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// PEP tests: clients announce their interests with entity capabilities
// (XEP-0115) and answer the server's disco#info query about them, as real
// clients do.

const (
	nsPubsub      = "http://jabber.org/protocol/pubsub"
	nsPubsubOwner = nsPubsub + "#owner"
	nsPubsubEvent = nsPubsub + "#event"
	nsPubsubErr   = nsPubsub + "#errors"
	devicelist    = "eu.siacs.conversations.axolotl.devicelist"
	bookmarks     = "urn:xmpp:bookmarks:1"
	capsNode      = "https://wren.im/test-client"
)

// capsInfo is the disco#info of a test client: an identity named after
// its JID (so that every client has its own verification string) and the
// +notify features of the nodes it wants.
func capsInfo(j string, notify []string) caps.Info {
	info := caps.Info{
		Identities: []caps.Identity{{Category: "client", Type: "pc", Name: j}},
		Features:   []string{xmpp.NSDiscoInfo, xmpp.NSCaps},
	}
	for _, n := range notify {
		info.Features = append(info.Features, n+"+notify")
	}
	return info
}

// capsOnline sends available presence with caps for the nodes the client
// wants, answers the server's disco#info query about them, and returns
// once the server has processed the answer.
func (c *imClient) capsOnline(notify ...string) {
	c.t.Helper()
	info := capsInfo(c.jid, notify)
	ver, err := info.Ver("sha-1")
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(fmt.Sprintf(`<presence><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>`, xmpp.NSCaps, capsNode, ver))
	c.expect("the reflection of my own presence", isPresence(c.jid, ""))
	c.answerCaps(info, capsNode+"#"+ver)
	c.pending = append(c.pending, c.sync()...) // keep what came meanwhile (last items)
}

// answerCaps waits for the server's disco#info query about node and
// answers it with info.
func (c *imClient) answerCaps(info caps.Info, node string) {
	c.t.Helper()
	q := c.expect("the server's caps query about "+node, func(el *xmpp.Element) bool {
		return el.Is(xmpp.NSClient, "iq") && el.Attr("type") == "get" &&
			el.Child(xmpp.NSDiscoInfo, "query") != nil && el.Child(xmpp.NSDiscoInfo, "query").Attr("node") == node
	})
	var b strings.Builder
	for _, id := range info.Identities {
		fmt.Fprintf(&b, "<identity category='%s' type='%s' name='%s'/>", id.Category, id.Type, id.Name)
	}
	for _, f := range info.Features {
		fmt.Fprintf(&b, "<feature var='%s'/>", f)
	}
	c.send(fmt.Sprintf(`<iq type='result' id='%s' to='%s'><query xmlns='%s' node='%s'>%s</query></iq>`,
		q.Attr("id"), q.Attr("from"), xmpp.NSDiscoInfo, node, b.String()))
}

// publishIQ is a publish request with an optional publish-options form
// given as var=value pairs.
func publishIQ(node, id, payload string, options ...string) string {
	idAttr := ""
	if id != "" {
		idAttr = fmt.Sprintf(" id='%s'", id)
	}
	po := ""
	if len(options) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s#publish-options</value></field>`, nsPubsub)
		for i := 0; i+1 < len(options); i += 2 {
			fmt.Fprintf(&b, `<field var='%s'><value>%s</value></field>`, options[i], options[i+1])
		}
		b.WriteString(`</x></publish-options>`)
		po = b.String()
	}
	return fmt.Sprintf(`<pubsub xmlns='%s'><publish node='%s'><item%s>%s</item></publish>%s</pubsub>`, nsPubsub, node, idAttr, payload, po)
}

func devicelistPayload(ids ...int) string {
	var b strings.Builder
	b.WriteString(`<list xmlns='eu.siacs.conversations.axolotl'>`)
	for _, id := range ids {
		fmt.Fprintf(&b, `<device id='%d'/>`, id)
	}
	b.WriteString(`</list>`)
	return b.String()
}

// isEvent matches a PEP notification from from about node.
func isEvent(from, node string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		if !el.Is(xmpp.NSClient, "message") || el.Attr("from") != from {
			return false
		}
		ev := el.Child(nsPubsubEvent, "event")
		if ev == nil {
			return false
		}
		for _, c := range ev.Elements() {
			if c.Attr("node") == node {
				return true
			}
		}
		return false
	}
}

// eventItems returns the ids of the items (or retracts, with retract)
// of a notification.
func eventItems(el *xmpp.Element, what string) []string {
	var out []string
	items := el.Child(nsPubsubEvent, "event").Child(nsPubsubEvent, "items")
	if items == nil {
		return nil
	}
	for _, it := range items.Elements() {
		if it.Local == what {
			out = append(out, it.Attr("id"))
		}
	}
	return out
}

// resultItems returns the item ids of an items result.
func resultItems(r *xmpp.Element) []string {
	out := []string{}
	for _, it := range r.Child(nsPubsub, "pubsub").Child(nsPubsub, "items").Elements() {
		out = append(out, it.Attr("id"))
	}
	return out
}

func itemsIQ(node, extra string) string {
	return fmt.Sprintf(`<pubsub xmlns='%s'><items node='%s'%s/></pubsub>`, nsPubsub, node, extra)
}

// appCondition returns the pubsub#errors condition of an error reply.
func appCondition(el *xmpp.Element) string {
	if e := el.Child(xmpp.NSClient, "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Space == nsPubsubErr {
				return c.Local
			}
		}
	}
	return ""
}

func TestPEPDisco(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "phone")
	for _, to := range []string{"alice@localhost", "localhost"} {
		q := alice.result("get", to, `<query xmlns='http://jabber.org/protocol/disco#info'/>`).Child(xmpp.NSDiscoInfo, "query")
		pep := false
		var features []string
		for _, el := range q.Elements() {
			if el.Local == "identity" && el.Attr("category") == "pubsub" && el.Attr("type") == "pep" {
				pep = true
			}
			if el.Local == "feature" {
				features = append(features, el.Attr("var"))
			}
		}
		if !pep {
			t.Errorf("disco#info of %s lacks the pubsub/pep identity: %s", to, q)
		}
		for _, f := range []string{nsPubsub, nsPubsub + "#publish", nsPubsub + "#publish-options", nsPubsub + "#auto-create",
			nsPubsub + "#access-whitelist", nsPubsub + "#filtered-notifications", nsPubsub + "#last-published", nsPubsub + "#config-node-max"} {
			if !slices.Contains(features, f) {
				t.Errorf("disco#info of %s lacks %s", to, f)
			}
		}
	}
}

// TestPEPDevicelistNotifications: an OMEMO device list reaches the
// owner's other resource and subscribed contacts that asked for it, but
// not a stranger, nor a contact whose client did not ask.
func TestPEPDevicelistNotifications(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol", "dave", "erin")
	ts.mutual(t, "alice", "bob")
	ts.mutual(t, "alice", "dave")
	// erin is subscribed to alice's presence, alice not to erin's: alice
	// never sees erin's presence.
	ts.putItem(t, "alice", rosterItem("erin@localhost", "from"))
	ts.putItem(t, "erin", rosterItem("alice@localhost", "to"))

	phone := ts.connect(t, "alice", "phone")
	phone.roster()
	phone.capsOnline(devicelist)
	desk := ts.connect(t, "alice", "desk")
	desk.roster()
	desk.capsOnline(devicelist)
	bob := ts.connect(t, "bob", "pc")
	bob.roster()
	bob.capsOnline(devicelist)
	dave := ts.connect(t, "dave", "pc")
	dave.roster()
	dave.capsOnline("urn:xmpp:avatar:metadata") // no devicelist+notify
	erin := ts.connect(t, "erin", "pc")
	erin.roster()
	erin.capsOnline(devicelist)
	carol := ts.connect(t, "carol", "pc")
	carol.roster()
	carol.capsOnline(devicelist)
	// carol tells alice she is online, with her caps.
	carol.send(fmt.Sprintf(`<presence to='alice@localhost'><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>`,
		xmpp.NSCaps, capsNode, mustVer(t, capsInfo(carol.jid, []string{devicelist}))))
	carol.sync()
	for _, c := range []*imClient{phone, desk, bob, dave, erin, carol} {
		c.drain()
	}

	r := phone.result("set", "", publishIQ(devicelist, "current", devicelistPayload(1, 2)))
	if got := r.Child(nsPubsub, "pubsub").Child(nsPubsub, "publish").Child(nsPubsub, "item").Attr("id"); got != "current" {
		t.Fatalf("publish result item id %q: %s", got, r)
	}
	for _, c := range []*imClient{phone, desk, bob, erin} {
		ev := c.expect("the device list notification", isEvent("alice@localhost", devicelist))
		if ev.Attr("type") != "headline" || ev.Attr("to") != c.jid {
			t.Errorf("%s: notification %s", c.jid, ev)
		}
		list := ev.Child(nsPubsubEvent, "event").Child(nsPubsubEvent, "items").Child(nsPubsubEvent, "item").Child("eu.siacs.conversations.axolotl", "list")
		if list == nil || len(list.Elements()) != 2 {
			t.Errorf("%s: notification without the device list: %s", c.jid, ev)
		}
	}
	dave.expectNone("a notification he did not ask for", isEvent("alice@localhost", devicelist))
	carol.expectNone("a notification of a presence-access node", isEvent("alice@localhost", devicelist))

	// The node has presence access: publishing with open access as a
	// precondition fails (XEP-0060 §7.1.5)...
	r = phone.iqError("set", "", publishIQ(devicelist, "current", devicelistPayload(1, 2, 3), "pubsub#access_model", "open"), xmpp.CondConflict)
	if appCondition(r) != "precondition-not-met" {
		t.Fatalf("precondition error without <precondition-not-met/>: %s", r)
	}
	// ...until the owner configures the node for open access; then carol,
	// who sent alice her presence, gets notifications too.
	phone.result("set", "", configureIQ(devicelist, "pubsub#access_model", "open"))
	phone.result("set", "", publishIQ(devicelist, "current", devicelistPayload(1, 2, 3), "pubsub#access_model", "open"))
	for _, c := range []*imClient{phone, desk, bob, erin, carol} {
		ev := c.expect("the open device list notification", isEvent("alice@localhost", devicelist))
		if got := eventItems(ev, "item"); !slices.Equal(got, []string{"current"}) {
			t.Errorf("%s: items %v", c.jid, got)
		}
	}
	dave.expectNone("a notification he did not ask for", isEvent("alice@localhost", devicelist))

	// Once bob is gone, nothing more is sent to him; erin going offline
	// is noticed although alice never received her presence.
	bob.send("<presence type='unavailable'/>")
	erin.send("<presence type='unavailable'/>")
	bob.sync()
	erin.sync()
	phone.result("set", "", publishIQ(devicelist, "current", devicelistPayload(4), "pubsub#access_model", "open"))
	bob.expectNone("a notification after going offline", isEvent("alice@localhost", devicelist))
	erin.expectNone("a notification after going offline", isEvent("alice@localhost", devicelist))
}

func rosterItem(contact, sub string) storage.RosterItem {
	return storage.RosterItem{Contact: contact, Subscription: sub}
}

// configureIQ sets options of a node (pubsub#owner).
func configureIQ(node string, options ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<pubsub xmlns='%s'><configure node='%s'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s#node_config</value></field>`, nsPubsubOwner, node, nsPubsub)
	for i := 0; i+1 < len(options); i += 2 {
		fmt.Fprintf(&b, `<field var='%s'><value>%s</value></field>`, options[i], options[i+1])
	}
	b.WriteString(`</x></configure></pubsub>`)
	return b.String()
}

func mustVer(t *testing.T, info caps.Info) string {
	t.Helper()
	v, err := info.Ver("sha-1")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPEPLastItemOnPresence: a contact coming online gets the last item
// of the nodes it wants and may see, even when the owner is offline; the
// owner's new resource gets its private nodes too.
func TestPEPLastItemOnPresence(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	ts.mutual(t, "alice", "bob")
	ts.mutual(t, "alice", "carol")
	const meta, never = "urn:xmpp:avatar:metadata", "urn:test:never"
	phone := ts.connect(t, "alice", "phone")
	phone.roster()
	phone.capsOnline()
	phone.result("set", "", publishIQ(meta, "old", `<metadata xmlns='urn:xmpp:avatar:metadata'/>`))
	phone.result("set", "", publishIQ(meta, "sha1-of-avatar", `<metadata xmlns='urn:xmpp:avatar:metadata'><info id='sha1-of-avatar' bytes='3' type='image/png'/></metadata>`))
	phone.result("set", "", publishIQ(never, "x", `<x xmlns='urn:test'/>`, "pubsub#send_last_published_item", "never"))
	phone.result("set", "", publishIQ(bookmarks, "room@conference.localhost",
		`<conference xmlns='urn:xmpp:bookmarks:1' name='Room' autojoin='true'/>`,
		"pubsub#access_model", "whitelist", "pubsub#persist_items", "true", "pubsub#max_items", "max"))

	bob := ts.connect(t, "bob", "pc")
	bob.roster()
	bob.capsOnline(meta, never, bookmarks)
	ev := bob.expect("the last avatar metadata", isEvent("alice@localhost", meta))
	if got := eventItems(ev, "item"); !slices.Equal(got, []string{"sha1-of-avatar"}) {
		t.Fatalf("last item sent: %v in %s", got, ev)
	}
	bob.expectNone("a second copy, a send_last=never item or private bookmarks", func(el *xmpp.Element) bool {
		return isEvent("alice@localhost", meta)(el) || isEvent("alice@localhost", never)(el) || isEvent("alice@localhost", bookmarks)(el)
	})
	// A presence update with the same caps sends nothing again.
	bob.send(fmt.Sprintf(`<presence><show>away</show><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>`,
		xmpp.NSCaps, capsNode, mustVer(t, capsInfo(bob.jid, []string{meta, never, bookmarks}))))
	bob.expectNone("the last item again after a presence update", isEvent("alice@localhost", meta))

	desk := ts.connect(t, "alice", "desk")
	desk.roster()
	desk.capsOnline(meta, bookmarks)
	desk.expect("the last avatar metadata", isEvent("alice@localhost", meta))
	desk.expect("the bookmarks", isEvent("alice@localhost", bookmarks))

	// alice goes offline; carol still gets alice's last avatar.
	phone.closeStream()
	desk.closeStream()
	carol := ts.connect(t, "carol", "pc")
	carol.roster()
	carol.capsOnline(meta)
	carol.expect("the last avatar metadata of an offline contact", isEvent("alice@localhost", meta))
}

// TestPEPItemsAccess: who may retrieve items under each access model.
func TestPEPItemsAccess(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "phone")
	for _, n := range []struct{ node, access string }{
		{"urn:test:presence", "presence"}, {"urn:test:open", "open"}, {"urn:test:white", "whitelist"},
	} {
		for i := 1; i <= 4; i++ {
			alice.result("set", "", publishIQ(n.node, fmt.Sprintf("i%d", i), fmt.Sprintf(`<x xmlns='urn:test'>%d</x>`, i),
				"pubsub#access_model", n.access, "pubsub#max_items", "10"))
		}
	}
	bob := ts.online(t, "bob", "pc")
	carol := ts.online(t, "carol", "pc")
	want := []string{"i4", "i3", "i2", "i1"}
	for _, c := range []struct {
		who        *imClient
		node       string
		cond, app  string
		shouldRead bool
	}{
		{alice, "urn:test:white", "", "", true},
		{bob, "urn:test:presence", "", "", true},
		{bob, "urn:test:open", "", "", true},
		{bob, "urn:test:white", xmpp.CondNotAllowed, "closed-node", false},
		{carol, "urn:test:open", "", "", true},
		{carol, "urn:test:presence", xmpp.CondNotAuthorized, "presence-subscription-required", false},
		{carol, "urn:test:white", xmpp.CondNotAllowed, "closed-node", false},
		{bob, "urn:test:nothing", xmpp.CondItemNotFound, "", false},
	} {
		to := "alice@localhost"
		if c.who == alice {
			to = ""
		}
		if c.shouldRead {
			r := c.who.result("get", to, itemsIQ(c.node, ""))
			if got := resultItems(r); !slices.Equal(got, want) {
				t.Errorf("%s reading %s: %v, want %v", c.who.jid, c.node, got, want)
			}
			if x := r.Child(nsPubsub, "pubsub").Child(nsPubsub, "items").Child(nsPubsub, "item").Child("urn:test", "x"); x == nil || x.Text() != "4" {
				t.Errorf("%s reading %s: payload lost: %s", c.who.jid, c.node, r)
			}
			continue
		}
		r := c.who.iqError("get", to, itemsIQ(c.node, ""), c.cond)
		if appCondition(r) != c.app {
			t.Errorf("%s reading %s: application condition %q, want %q: %s", c.who.jid, c.node, appCondition(r), c.app, r)
		}
	}
	if got := resultItems(bob.result("get", "alice@localhost", itemsIQ("urn:test:open", " max_items='2'"))); !slices.Equal(got, []string{"i4", "i3"}) {
		t.Errorf("max_items=2: %v", got)
	}
	byID := fmt.Sprintf(`<pubsub xmlns='%s'><items node='urn:test:open'><item id='i1'/><item id='i3'/></items></pubsub>`, nsPubsub)
	if got := resultItems(bob.result("get", "alice@localhost", byID)); !slices.Equal(got, []string{"i3", "i1"}) {
		t.Errorf("by id: %v", got)
	}
	missing := fmt.Sprintf(`<pubsub xmlns='%s'><items node='urn:test:open'><item id='nope'/></items></pubsub>`, nsPubsub)
	bob.iqError("get", "alice@localhost", missing, xmpp.CondItemNotFound)
	bob.iqError("get", "alice@localhost", itemsIQ("urn:test:open", " max_items='zero'"), xmpp.CondBadRequest)
}

// TestPEPPublishErrors: requests the service refuses.
func TestPEPPublishErrors(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.PEP.MaxNodes = 3
		c.PEP.MaxItems = 5
	})
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "phone")
	bob := ts.online(t, "bob", "pc")
	payload := `<x xmlns='urn:test'/>`

	bob.iqError("set", "alice@localhost", publishIQ("urn:test:a", "", payload), xmpp.CondForbidden)
	bob.iqError("set", "alice@localhost", configureIQ("urn:test:a", "pubsub#access_model", "open"), xmpp.CondForbidden)
	r := alice.iqError("set", "", publishIQ("", "", payload), xmpp.CondBadRequest)
	if appCondition(r) != "nodeid-required" {
		t.Errorf("empty node: %s", r)
	}
	alice.iqError("set", "", publishIQ(strings.Repeat("n", 1025), "", payload), xmpp.CondNotAcceptable)
	r = alice.iqError("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><publish node='urn:test:a'/></pubsub>`, nsPubsub), xmpp.CondBadRequest)
	if appCondition(r) != "item-required" {
		t.Errorf("no item: %s", r)
	}
	r = alice.iqError("set", "", publishIQ("urn:test:a", "", ""), xmpp.CondBadRequest)
	if appCondition(r) != "payload-required" {
		t.Errorf("no payload: %s", r)
	}
	r = alice.iqError("set", "", publishIQ("urn:test:a", "", payload+payload), xmpp.CondBadRequest)
	if appCondition(r) != "invalid-payload" {
		t.Errorf("two payloads: %s", r)
	}
	for _, opts := range [][]string{
		{"pubsub#access_model", "authorize"},
		{"pubsub#no_such_option", "1"},
		{"pubsub#max_items", "0"},
	} {
		r = alice.iqError("set", "", publishIQ("urn:test:a", "", payload, opts...), xmpp.CondConflict)
		if appCondition(r) != "precondition-not-met" {
			t.Errorf("options %v: %s", opts, r)
		}
	}
	alice.iqError("get", "", itemsIQ("urn:test:a", ""), xmpp.CondItemNotFound) // none of these created it

	// max_items: "max" is the server's limit; more is capped to it.
	for i := range 7 {
		alice.result("set", "", publishIQ("urn:test:a", fmt.Sprint(i), payload, "pubsub#max_items", "max"))
	}
	if got := resultItems(alice.result("get", "", itemsIQ("urn:test:a", ""))); !slices.Equal(got, []string{"6", "5", "4", "3", "2"}) {
		t.Errorf("a max node keeps %v, want the newest 5", got)
	}
	alice.result("set", "", publishIQ("urn:test:a", "7", payload, "pubsub#max_items", "1000"))
	r = alice.iqError("set", "", publishIQ("urn:test:a", "8", payload, "pubsub#max_items", "2"), xmpp.CondConflict)
	if appCondition(r) != "precondition-not-met" {
		t.Errorf("max_items 2 on a max node: %s", r)
	}

	// At most 3 nodes per account.
	alice.result("set", "", publishIQ("urn:test:b", "", payload))
	alice.result("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><create node='urn:test:c'/></pubsub>`, nsPubsub))
	alice.iqError("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><create node='urn:test:c'/></pubsub>`, nsPubsub), xmpp.CondConflict)
	r = alice.iqError("set", "", publishIQ("urn:test:d", "", payload), xmpp.CondNotAllowed)
	if appCondition(r) != "max-nodes-exceeded" {
		t.Errorf("fourth node: %s", r)
	}
	// Explicit subscriptions are not how PEP works.
	r = bob.iqError("set", "alice@localhost", fmt.Sprintf(`<pubsub xmlns='%s'><subscribe node='urn:test:b' jid='bob@localhost'/></pubsub>`, nsPubsub), xmpp.CondFeatureNotImplemented)
	if appCondition(r) != "unsupported" {
		t.Errorf("subscribe: %s", r)
	}
}

// TestPEPBookmarksRetractDeleteConfigure: private bookmarks reach the
// owner's other resource only; retract, configuration and delete.
func TestPEPBookmarksRetractDeleteConfigure(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	phone := ts.connect(t, "alice", "phone")
	phone.roster()
	phone.capsOnline(bookmarks)
	desk := ts.connect(t, "alice", "desk")
	desk.roster()
	desk.capsOnline(bookmarks)
	bob := ts.connect(t, "bob", "pc")
	bob.roster()
	bob.capsOnline(bookmarks)
	for _, c := range []*imClient{phone, desk, bob} {
		c.drain()
	}
	opts := []string{"pubsub#access_model", "whitelist", "pubsub#persist_items", "true",
		"pubsub#max_items", "max", "pubsub#send_last_published_item", "never"}
	for _, room := range []string{"a@conference.localhost", "b@conference.localhost"} {
		phone.result("set", "", publishIQ(bookmarks, room, `<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/>`, opts...))
		ev := desk.expect("the bookmark on the other resource", isEvent("alice@localhost", bookmarks))
		if got := eventItems(ev, "item"); !slices.Equal(got, []string{room}) {
			t.Fatalf("bookmark event %v", got)
		}
	}
	bob.expectNone("alice's private bookmarks", isEvent("alice@localhost", bookmarks))
	if got := resultItems(desk.result("get", "", itemsIQ(bookmarks, ""))); len(got) != 2 {
		t.Fatalf("bookmarks: %v", got)
	}

	phone.result("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><retract node='%s' notify='true'><item id='a@conference.localhost'/></retract></pubsub>`, nsPubsub, bookmarks))
	ev := desk.expect("the retraction", isEvent("alice@localhost", bookmarks))
	if got := eventItems(ev, "retract"); !slices.Equal(got, []string{"a@conference.localhost"}) {
		t.Fatalf("retract event %s", ev)
	}
	phone.iqError("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><retract node='%s'><item id='a@conference.localhost'/></retract></pubsub>`, nsPubsub, bookmarks), xmpp.CondItemNotFound)
	bob.iqError("set", "alice@localhost", fmt.Sprintf(`<pubsub xmlns='%s'><retract node='%s'><item id='b@conference.localhost'/></retract></pubsub>`, nsPubsub, bookmarks), xmpp.CondForbidden)

	// Configuration: the form shows the options given at creation.
	r := phone.result("get", "", fmt.Sprintf(`<pubsub xmlns='%s'><configure node='%s'/></pubsub>`, nsPubsubOwner, bookmarks))
	form := r.Child(nsPubsubOwner, "pubsub").Child(nsPubsubOwner, "configure").Child(xmpp.NSDataForms, "x")
	values := map[string]string{}
	for _, f := range form.Elements() {
		values[f.Attr("var")] = f.ChildText(xmpp.NSDataForms, "value")
	}
	if values["FORM_TYPE"] != nsPubsub+"#node_config" || values["pubsub#access_model"] != "whitelist" ||
		values["pubsub#max_items"] != "max" || values["pubsub#send_last_published_item"] != "never" {
		t.Fatalf("configuration form %s", form)
	}
	phone.iqError("set", "", configureIQ(bookmarks, "pubsub#access_model", "roster"), xmpp.CondNotAcceptable)
	phone.result("set", "", publishIQ(bookmarks, "c@conference.localhost", `<conference xmlns='urn:xmpp:bookmarks:1'/>`, opts...))
	desk.expect("the third bookmark", isEvent("alice@localhost", bookmarks))
	phone.result("set", "", configureIQ(bookmarks, "pubsub#max_items", "1"))
	if got := resultItems(phone.result("get", "", itemsIQ(bookmarks, ""))); !slices.Equal(got, []string{"c@conference.localhost"}) {
		t.Fatalf("after max_items=1: %v", got)
	}

	// Purge and delete.
	phone.result("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><purge node='%s'/></pubsub>`, nsPubsubOwner, bookmarks))
	desk.expect("the purge", func(el *xmpp.Element) bool {
		return isEvent("alice@localhost", bookmarks)(el) && el.Child(nsPubsubEvent, "event").Child(nsPubsubEvent, "purge") != nil
	})
	if got := resultItems(phone.result("get", "", itemsIQ(bookmarks, ""))); len(got) != 0 {
		t.Fatalf("after purge: %v", got)
	}
	phone.result("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><delete node='%s'/></pubsub>`, nsPubsubOwner, bookmarks))
	desk.expect("the deletion", func(el *xmpp.Element) bool {
		return isEvent("alice@localhost", bookmarks)(el) && el.Child(nsPubsubEvent, "event").Child(nsPubsubEvent, "delete") != nil
	})
	phone.iqError("get", "", itemsIQ(bookmarks, ""), xmpp.CondItemNotFound)
	phone.iqError("set", "", fmt.Sprintf(`<pubsub xmlns='%s'><delete node='%s'/></pubsub>`, nsPubsubOwner, bookmarks), xmpp.CondItemNotFound)
	bob.expectNone("any of alice's bookmark events", isEvent("alice@localhost", bookmarks))
}

// TestPEPCapsMismatch: caps whose disco#info answer does not hash to the
// announced verification string are not trusted.
func TestPEPCapsMismatch(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "phone")
	alice.result("set", "", publishIQ(devicelist, "current", devicelistPayload(7)))

	bob := ts.connect(t, "bob", "pc")
	bob.roster()
	honest := capsInfo(bob.jid, []string{"urn:other"})
	ver := mustVer(t, honest)
	bob.send(fmt.Sprintf(`<presence><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>`, xmpp.NSCaps, capsNode, ver))
	bob.expect("the reflection of my own presence", isPresence(bob.jid, ""))
	// The answer claims devicelist+notify, which does not hash to ver.
	bob.answerCaps(capsInfo(bob.jid, []string{devicelist}), capsNode+"#"+ver)
	bob.expectNone("a notification for caps that did not verify", isEvent("alice@localhost", devicelist))
	// Caps that could not be learnt are asked about again when announced
	// again (the answer may have been lost); this time the answer is honest.
	bob.send(fmt.Sprintf(`<presence><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>`, xmpp.NSCaps, capsNode, ver))
	bob.answerCaps(honest, capsNode+"#"+ver)
	bob.expectNone("a notification for caps without devicelist+notify", isEvent("alice@localhost", devicelist))

	// Honest caps that ask for the device list get it.
	bob.capsOnline(devicelist)
	bob.expect("the device list", isEvent("alice@localhost", devicelist))
}
