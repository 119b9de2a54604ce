package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/archive"
	"wren.im/wren/carbons"
	"wren.im/wren/config"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Tests of Message Carbons (XEP-0280), the message archive (XEP-0313,
// XEP-0441) and stanza ids (XEP-0359), through real client connections.

// enableCarbons turns carbons on for the client's resource.
func (c *imClient) enableCarbons() {
	c.t.Helper()
	c.result("set", "", `<enable xmlns='urn:xmpp:carbons:2'/>`)
}

// isCarbon matches a carbon copy (kind "received" or "sent") of a message
// with that body.
func isCarbon(kind, body string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		if !el.Is(xmpp.NSClient, "message") {
			return false
		}
		in := forwardedIn(el.Child(carbons.NS, kind))
		return in != nil && in.ChildText(xmpp.NSClient, "body") == body
	}
}

func mustJID(t *testing.T, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// isAnyCarbon matches every carbon copy.
func isAnyCarbon(el *xmpp.Element) bool {
	return el.Is(xmpp.NSClient, "message") && (el.Child(carbons.NS, "received") != nil || el.Child(carbons.NS, "sent") != nil)
}

// forwardedIn returns the message inside w's <forwarded/>, or nil.
func forwardedIn(w *xmpp.Element) *xmpp.Element {
	if w == nil {
		return nil
	}
	f := w.Child(archive.NSForward, "forwarded")
	if f == nil {
		return nil
	}
	return f.Child(xmpp.NSClient, "message")
}

// stanzaIDs returns the ids of el's <stanza-id/> children set by by.
func stanzaIDs(el *xmpp.Element, by string) []string {
	var out []string
	for _, c := range el.Elements() {
		if c.Is(archive.NSSID, "stanza-id") && c.Attr("by") == by {
			out = append(out, c.Attr("id"))
		}
	}
	return out
}

// oneStanzaID returns the only stanza-id by by, failing otherwise.
func oneStanzaID(t *testing.T, el *xmpp.Element, by string) string {
	t.Helper()
	ids := stanzaIDs(el, by)
	if len(ids) != 1 || ids[0] == "" {
		t.Fatalf("want exactly one stanza-id by %s in %s", by, el)
	}
	return ids[0]
}

// mamPage is the answer to an archive query.
type mamPage struct {
	results []*xmpp.Element // the <message/>s with <result/>, in arrival order
	fin     *xmpp.Element   // the <fin/> of the IQ result
	iq      *xmpp.Element   // the IQ answer
}

// ids returns the archive ids of the results in arrival order.
func (p mamPage) ids() []string {
	out := make([]string, len(p.results))
	for i, r := range p.results {
		out[i] = r.Child(archive.NS, "result").Attr("id")
	}
	return out
}

// bodies returns the bodies of the archived messages in arrival order.
func (p mamPage) bodies() []string {
	out := make([]string, len(p.results))
	for i, r := range p.results {
		out[i] = forwardedIn(r.Child(archive.NS, "result")).ChildText(xmpp.NSClient, "body")
	}
	return out
}

func (p mamPage) complete() bool { return p.fin.Attr("complete") == "true" }

func (p mamPage) first() string {
	return p.fin.Child(archive.NSRSM, "set").ChildText(archive.NSRSM, "first")
}

func (p mamPage) last() string {
	return p.fin.Child(archive.NSRSM, "set").ChildText(archive.NSRSM, "last")
}

// mamForm builds a query form from field/value pairs; a field named twice
// gets several values.
func mamForm(fields ...string) string {
	var b strings.Builder
	b.WriteString(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>`)
	for i := 0; i+1 < len(fields); i += 2 {
		fmt.Fprintf(&b, `<field var='%s'><value>%s</value></field>`, fields[i], fields[i+1])
	}
	b.WriteString(`</x>`)
	return b.String()
}

// rsm builds an RSM <set/> from its children, e.g. rsm("<max>10</max>").
func rsm(children ...string) string {
	return `<set xmlns='http://jabber.org/protocol/rsm'>` + strings.Join(children, "") + `</set>`
}

// mamRaw sends an archive query (content is the inside of <query/>) and
// returns the results and the IQ answer, which may be an error.
func (c *imClient) mamRaw(content string) mamPage {
	c.t.Helper()
	qid := c.id("q")
	id := c.id("mam")
	c.send(fmt.Sprintf(`<iq type='set' id='%s'><query xmlns='urn:xmpp:mam:2' queryid='%s'>%s</query></iq>`, id, qid, content))
	var p mamPage
	for {
		el := c.expect("archive results for "+qid, func(el *xmpp.Element) bool {
			if el.Is(xmpp.NSClient, "iq") && el.Attr("id") == id {
				return true
			}
			r := el.Child(archive.NS, "result")
			return el.Is(xmpp.NSClient, "message") && r != nil && r.Attr("queryid") == qid
		})
		if el.Is(xmpp.NSClient, "iq") {
			p.iq = el
			p.fin = el.Child(archive.NS, "fin")
			return p
		}
		if el.Attr("from") != c.bare || el.Attr("to") != c.jid {
			c.t.Errorf("archive result from %q to %q, want from %s to %s", el.Attr("from"), el.Attr("to"), c.bare, c.jid)
		}
		p.results = append(p.results, el)
	}
}

// mam sends an archive query and fails unless it succeeds.
func (c *imClient) mam(content string) mamPage {
	c.t.Helper()
	p := c.mamRaw(content)
	if p.iq.Attr("type") != "result" || p.fin == nil {
		c.t.Fatalf("archive query %s: %s", content, p.iq)
	}
	return p
}

// mamError sends an archive query and fails unless it gets error cond.
func (c *imClient) mamError(content, cond string) {
	c.t.Helper()
	p := c.mamRaw(content)
	if p.iq.Attr("type") != "error" || errorCondition(p.iq) != cond {
		c.t.Fatalf("archive query %s: got %s, want error %s", content, p.iq, cond)
	}
	if len(p.results) != 0 {
		c.t.Fatalf("archive query %s failed but sent %d results", content, len(p.results))
	}
}

func TestCarbonsReceivedAndSent(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	phone := ts.online(t, "alice", "phone")
	desk := ts.online(t, "alice", "desk")
	bob := ts.online(t, "bob", "pc")
	// A carbons-enabling client learns of the feature from the server.
	info := desk.result("get", "localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	if !strings.Contains(info.String(), "urn:xmpp:carbons:2") {
		t.Fatalf("server disco#info lacks carbons: %s", info)
	}
	desk.enableCarbons()
	desk.enableCarbons() // a second enable is not an error
	phone.drain()
	desk.drain()

	// Received: bob writes to alice's phone; the desk gets a copy.
	bob.message("alice@localhost/phone", "to the phone")
	got := phone.expectMessage("bob@localhost/pc", "to the phone")
	c := desk.expect("received carbon", isCarbon("received", "to the phone"))
	if c.Attr("from") != "alice@localhost" || c.Attr("to") != desk.jid || c.Attr("type") != "chat" {
		t.Fatalf("carbon wrapper %s: want from alice@localhost to %s type chat", c, desk.jid)
	}
	inner := forwardedIn(c.Child(carbons.NS, "received"))
	if inner.Attr("from") != "bob@localhost/pc" || inner.Attr("to") != "alice@localhost/phone" {
		t.Fatalf("forwarded message %s", inner)
	}
	// The copy carries the same archive id as the original.
	if a, b := oneStanzaID(t, got, "alice@localhost"), oneStanzaID(t, inner, "alice@localhost"); a != b {
		t.Fatalf("stanza-id %s on the message, %s on its carbon", a, b)
	}
	phone.expectNone("carbon on the phone (carbons off there)", isAnyCarbon)

	// Sent: the phone writes to bob; the desk gets a copy with the
	// message's id in alice's archive; bob gets no id of alice's archive.
	phone.message("bob@localhost", "from the phone")
	m := bob.expectMessage("alice@localhost/phone", "from the phone")
	if ids := stanzaIDs(m, "alice@localhost"); len(ids) != 0 {
		t.Fatalf("bob sees alice's archive id: %s", m)
	}
	c = desk.expect("sent carbon", isCarbon("sent", "from the phone"))
	inner = forwardedIn(c.Child(carbons.NS, "sent"))
	if inner.Attr("from") != phone.jid || inner.Attr("to") != "bob@localhost" {
		t.Fatalf("forwarded sent message %s", inner)
	}
	sentID := oneStanzaID(t, inner, "alice@localhost")
	p := desk.mam(mamForm("ids", sentID))
	if len(p.results) != 1 || p.bodies()[0] != "from the phone" {
		t.Fatalf("the sent carbon's stanza-id %s does not find the message in the archive: %v", sentID, p.bodies())
	}

	// The desk's own messages are not copied back to it.
	desk.message("bob@localhost", "from the desk")
	bob.expectMessage("alice@localhost/desk", "from the desk")
	desk.expectNone("a copy of its own message", isAnyCarbon)

	// After disable, no more copies.
	desk.result("set", "", `<disable xmlns='urn:xmpp:carbons:2'/>`)
	desk.result("set", "", `<disable xmlns='urn:xmpp:carbons:2'/>`)
	bob.message("alice@localhost/phone", "after disable")
	phone.expectMessage("bob@localhost/pc", "after disable")
	phone.message("bob@localhost", "sent after disable")
	bob.expectMessage("alice@localhost/phone", "sent after disable")
	desk.expectNone("carbon after disable", isAnyCarbon)

	// Requests that are not an enable or disable of one's own carbons.
	desk.iqError("get", "", `<enable xmlns='urn:xmpp:carbons:2'/>`, "bad-request")
	desk.iqError("set", "bob@localhost", `<enable xmlns='urn:xmpp:carbons:2'/>`, "not-allowed")
	desk.iqError("set", "", `<private xmlns='urn:xmpp:carbons:2'/>`, "bad-request")
}

func TestCarbonsEligibility(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	phone := ts.online(t, "alice", "phone")
	desk := ts.online(t, "alice", "desk")
	bob := ts.online(t, "bob", "pc")
	desk.enableCarbons()
	phone.drain()
	desk.drain()

	// <private/> is honoured both ways and removed before delivery.
	bob.send(`<message to='alice@localhost/phone' type='chat'><body>private in</body><private xmlns='urn:xmpp:carbons:2'/></message>`)
	m := phone.expectMessage("bob@localhost/pc", "private in")
	if m.Child(carbons.NS, "private") != nil {
		t.Errorf("<private/> delivered to the recipient: %s", m)
	}
	phone.send(`<message to='bob@localhost' type='chat'><body>private out</body><private xmlns='urn:xmpp:carbons:2'/></message>`)
	bob.expectMessage("alice@localhost/phone", "private out")
	// The XEP-0334 no-copy hint too.
	bob.send(`<message to='alice@localhost/phone' type='chat'><body>no-copy in</body><no-copy xmlns='urn:xmpp:hints'/></message>`)
	phone.expectMessage("bob@localhost/pc", "no-copy in")
	phone.send(`<message to='bob@localhost' type='chat'><body>no-copy out</body><no-copy xmlns='urn:xmpp:hints'/></message>`)
	bob.expectMessage("alice@localhost/phone", "no-copy out")
	// A normal message without a body (a receipt, say) and a headline are
	// not instant messages.
	bob.send(`<message to='alice@localhost/phone'><received xmlns='urn:xmpp:receipts' id='x'/></message>`)
	bob.send(`<message to='alice@localhost/phone' type='headline'><body>news</body></message>`)
	phone.expect("the headline", isMessage("bob@localhost/pc", "news"))
	desk.expectNone("carbon of an ineligible message", isAnyCarbon)

	// A chat message without a body (a chat state) and a normal one with
	// a body are copied.
	bob.send(`<message to='alice@localhost/phone' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	desk.expect("carbon of a chat state", func(el *xmpp.Element) bool {
		in := forwardedIn(el.Child(carbons.NS, "received"))
		return in != nil && in.Child("http://jabber.org/protocol/chatstates", "composing") != nil
	})
	bob.send(`<message to='alice@localhost/phone'><body>normal</body></message>`)
	desk.expect("carbon of a normal message", isCarbon("received", "normal"))
}

func TestCarbonsBareJIDNoDuplicates(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	phone := ts.online(t, "alice", "phone")
	desk := ts.online(t, "alice", "desk")
	laptop := ts.online(t, "alice", "laptop")
	bob := ts.online(t, "bob", "pc")
	laptop.send(`<presence><priority>-1</priority></presence>`)
	for _, c := range []*imClient{phone, desk, laptop} {
		c.enableCarbons()
	}
	phone.drain()
	desk.drain()
	laptop.drain()
	// Both priority-0 resources get the message itself; only the
	// negative-priority laptop gets a copy.
	bob.message("alice@localhost", "to everyone")
	a := phone.expectMessage("bob@localhost/pc", "to everyone")
	b := desk.expectMessage("bob@localhost/pc", "to everyone")
	laptop.expect("received carbon", isCarbon("received", "to everyone"))
	phone.expectNone("carbon for a resource that got the message", isAnyCarbon)
	desk.expectNone("carbon for a resource that got the message", isAnyCarbon)
	// Delivered twice, archived once: the same id on both.
	if x, y := oneStanzaID(t, a, "alice@localhost"), oneStanzaID(t, b, "alice@localhost"); x != y {
		t.Fatalf("two ids %s and %s for one message", x, y)
	}
	if p := phone.mam(""); len(p.results) != 1 {
		t.Fatalf("archive holds %d messages, want 1: %v", len(p.results), p.bodies())
	}
	laptop.expectNone("a second copy", isAnyCarbon)

	// A message to oneself: archived once, not copied back to the sender.
	phone.message("alice@localhost/desk", "note to self")
	desk.expectMessage(phone.jid, "note to self")
	laptop.expect("received carbon of a note to self", isCarbon("received", "note to self"))
	phone.expectNone("carbon of its own note", isAnyCarbon)
	p := phone.mam(mamForm("with", "alice@localhost"))
	if !slices.Equal(p.bodies(), []string{"note to self"}) {
		t.Fatalf("messages with oneself: %v", p.bodies())
	}
}

func TestCarbonsStateFollowsTheResource(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	phone := ts.online(t, "alice", "phone")
	desk := ts.online(t, "alice", "desk")
	bob := ts.online(t, "bob", "pc")
	desk.enableCarbons()
	// A new connection for the same resource replaces the session and
	// starts with carbons off.
	desk2 := ts.online(t, "alice", "desk")
	desk2.drain()
	bob.message("alice@localhost/phone", "one")
	phone.expectMessage("bob@localhost/pc", "one")
	desk2.expectNone("carbon on a fresh session", isAnyCarbon)
	if ts.history.carbons.Enabled(mustJID(t, desk.jid)) {
		t.Fatal("carbons still enabled for the replaced resource")
	}
	desk2.enableCarbons()
	desk2.closeStream()
	waitFor(t, "the desk session to end", func() bool { return !ts.history.carbons.Enabled(mustJID(t, desk.jid)) })
}

func TestStanzaIDsAndSpoofing(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "phone")
	bob := ts.online(t, "bob", "pc")
	disco := alice.result("get", "alice@localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`).String()
	for _, f := range []string{"urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"} {
		if !strings.Contains(disco, f) {
			t.Errorf("account disco#info lacks %s: %s", f, disco)
		}
	}

	bob.message("alice@localhost", "first")
	m := alice.expectMessage("bob@localhost/pc", "first")
	id := oneStanzaID(t, m, "alice@localhost")
	p := alice.mam("")
	if !slices.Equal(p.ids(), []string{id}) {
		t.Fatalf("archive ids %v, want the delivered stanza-id %s", p.ids(), id)
	}
	fwd := forwardedIn(p.results[0].Child(archive.NS, "result"))
	if fwd.Attr("from") != "bob@localhost/pc" || fwd.ChildText(xmpp.NSClient, "body") != "first" {
		t.Fatalf("archived message %s", fwd)
	}
	if d := p.results[0].Child(archive.NS, "result").Child(archive.NSForward, "forwarded").Child(xmpp.NSDelay, "delay"); d == nil || d.Attr("stamp") == "" {
		t.Fatalf("archive result without a delay stamp: %s", p.results[0])
	}

	// A stanza-id claiming alice's archive is replaced, even when its id
	// exists there; other entities' ids stay.
	for _, claimed := range []string{"made-up", id} {
		bob.send(fmt.Sprintf(`<message to='alice@localhost' type='chat'><body>spoof %s</body>`+
			`<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='%s'/>`+
			`<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example' id='keep'/></message>`, claimed, claimed))
		m = alice.expectMessage("bob@localhost/pc", "spoof "+claimed)
		got := oneStanzaID(t, m, "alice@localhost")
		if got == claimed {
			t.Fatalf("the claimed stanza-id %s was kept: %s", claimed, m)
		}
		if other := stanzaIDs(m, "room@muc.example"); !slices.Equal(other, []string{"keep"}) {
			t.Fatalf("another entity's stanza-id was changed: %s", m)
		}
	}
	if p := alice.mam(""); len(p.results) != 3 {
		t.Fatalf("archive holds %d messages, want 3", len(p.results))
	}
	// Messages not worth archiving get no id, and a claimed one is removed.
	bob.send(`<message to='alice@localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='x'/></message>`)
	m = alice.expect("the chat state", func(el *xmpp.Element) bool {
		return el.Child("http://jabber.org/protocol/chatstates", "active") != nil
	})
	if ids := stanzaIDs(m, "alice@localhost"); len(ids) != 0 {
		t.Fatalf("chat state with stanza-id: %s", m)
	}
	bob.send(`<message to='alice@localhost' type='chat'><body>secret</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>`)
	m = alice.expectMessage("bob@localhost/pc", "secret")
	if ids := stanzaIDs(m, "alice@localhost"); len(ids) != 0 {
		t.Fatalf("no-permanent-store message was archived: %s", m)
	}
	if p := alice.mam(""); len(p.results) != 3 {
		t.Fatalf("archive holds %d messages, want 3", len(p.results))
	}
}

// fill sends n numbered chat messages from from to to ("0".."n-1" with a
// prefix) and waits until the server handled them.
func fill(from *imClient, to, prefix string, n int) {
	from.t.Helper()
	for i := range n {
		from.send(fmt.Sprintf(`<message type='chat' to='%s'><body>%s%02d</body></message>`, to, prefix, i))
	}
	from.sync()
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	return out
}

func TestMAMEmptyArchive(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	alice := ts.connect(t, "alice", "phone")
	for _, q := range []string{"", rsm("<max>10</max>"), rsm("<max>10</max>", "<before/>"), mamForm("with", "bob@localhost")} {
		p := alice.mam(q)
		if len(p.results) != 0 || !p.complete() || p.fin.Child(archive.NSRSM, "set") == nil || p.first() != "" {
			t.Fatalf("query %q on an empty archive: %s", q, p.iq)
		}
	}
	alice.mamError(rsm("<after>nope</after>"), "item-not-found")
	alice.mamError(rsm("<before>nope</before>"), "item-not-found")
	alice.mamError(mamForm("before-id", "nope"), "item-not-found")
	md := alice.result("get", "", `<metadata xmlns='urn:xmpp:mam:2'/>`).Child(archive.NS, "metadata")
	if md == nil || len(md.Elements()) != 0 {
		t.Fatalf("metadata of an empty archive: %v", md)
	}
}

func TestMAMPagingBothWays(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "pc")
	// alice is offline: the messages go to offline storage and to the
	// archive.
	fill(bob, "alice@localhost", "m", 25)
	alice := ts.connect(t, "alice", "phone")
	all := numbered("m", 0, 25)

	// Forward: 10, 10, 5; complete only on the last page.
	var got, ids []string
	after := ""
	for i, n := range []int{10, 10, 5} {
		q := rsm("<max>10</max>")
		if after != "" {
			q = rsm("<max>10</max>", "<after>"+after+"</after>")
		}
		p := alice.mam(q)
		if len(p.results) != n || p.complete() != (i == 2) {
			t.Fatalf("forward page %d: %d results complete=%v; want %d complete=%v", i, len(p.results), p.complete(), n, i == 2)
		}
		if p.first() != p.ids()[0] || p.last() != p.ids()[n-1] {
			t.Fatalf("page %d: first/last %s/%s do not match the results %v", i, p.first(), p.last(), p.ids())
		}
		got = append(got, p.bodies()...)
		ids = append(ids, p.ids()...)
		after = p.last()
	}
	if !slices.Equal(got, all) {
		t.Fatalf("forward paging: %v", got)
	}
	// Past the end: empty and complete.
	if p := alice.mam(rsm("<max>10</max>", "<after>"+after+"</after>")); len(p.results) != 0 || !p.complete() {
		t.Fatalf("after the last message: %d results complete=%v", len(p.results), p.complete())
	}

	// Backward from the end: 10, 10, 5; each page in chronological order.
	got = nil
	before := "<before/>"
	for i, n := range []int{10, 10, 5} {
		p := alice.mam(rsm("<max>10</max>", before))
		if len(p.results) != n || p.complete() != (i == 2) {
			t.Fatalf("backward page %d: %d results complete=%v", i, len(p.results), p.complete())
		}
		got = append(p.bodies(), got...)
		before = "<before>" + p.first() + "</before>"
	}
	if !slices.Equal(got, all) {
		t.Fatalf("backward paging: %v", got)
	}

	// Flipped: same page, newest first; first/last unchanged.
	p := alice.mam(rsm("<max>10</max>", "<before/>") + "<flip-page/>")
	want := slices.Clone(all[15:])
	slices.Reverse(want)
	if !slices.Equal(p.bodies(), want) || p.first() != ids[15] || p.last() != ids[24] {
		t.Fatalf("flipped last page: %v first=%s last=%s", p.bodies(), p.first(), p.last())
	}

	// after-id and before-id: the messages strictly between.
	p = alice.mam(mamForm("after-id", ids[3], "before-id", ids[7]))
	if !slices.Equal(p.bodies(), all[4:7]) || !p.complete() {
		t.Fatalf("between ids: %v", p.bodies())
	}
	// before-id does not page backwards (unlike RSM <before/>).
	p = alice.mam(mamForm("before-id", ids[20]) + rsm("<max>3</max>"))
	if !slices.Equal(p.bodies(), all[0:3]) || p.complete() {
		t.Fatalf("before-id with max 3: %v complete=%v", p.bodies(), p.complete())
	}
	// ids: those messages, in archive order.
	p = alice.mam(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>` +
		`<field var='ids'><value>` + ids[9] + `</value><value>` + ids[2] + `</value></field></x>`)
	if !slices.Equal(p.bodies(), []string{all[2], all[9]}) {
		t.Fatalf("ids query: %v", p.bodies())
	}
	// A page size above the server's cap is lowered; max 0 counts.
	p = alice.mam(rsm("<max>100000</max>"))
	if len(p.results) != 25 || !p.complete() {
		t.Fatalf("large max: %d results", len(p.results))
	}
	p = alice.mam(rsm("<max>0</max>"))
	if len(p.results) != 0 || p.fin.Child(archive.NSRSM, "set").ChildText(archive.NSRSM, "count") != "25" {
		t.Fatalf("max 0: %s", p.iq)
	}
	md := alice.result("get", "", `<metadata xmlns='urn:xmpp:mam:2'/>`).Child(archive.NS, "metadata")
	if md.Child(archive.NS, "start").Attr("id") != ids[0] || md.Child(archive.NS, "end").Attr("id") != ids[24] {
		t.Fatalf("metadata: %s", md)
	}
	// The offline copies carry the archive ids too.
	alice.available("")
	for i := range 25 {
		m := alice.expectMessage("bob@localhost/pc", all[i])
		if id := oneStanzaID(t, m, "alice@localhost"); id != ids[i] {
			t.Fatalf("offline message %d has stanza-id %s, archive id %s", i, id, ids[i])
		}
	}
}

func TestMAMFilters(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	alice := ts.online(t, "alice", "phone")
	bob := ts.online(t, "bob", "pc")
	carol := ts.online(t, "carol", "tab")
	fill(bob, "alice@localhost", "b", 4)
	fill(carol, "alice@localhost", "c", 3)
	alice.message("bob@localhost", "to bob")
	bob.expectMessage(alice.jid, "to bob")
	alice.drain()

	p := alice.mam(mamForm("with", "bob@localhost"))
	if want := append(numbered("b", 0, 4), "to bob"); !slices.Equal(p.bodies(), want) {
		t.Fatalf("with bob: %v, want %v", p.bodies(), want)
	}
	if p := alice.mam(mamForm("with", "carol@localhost/tab")); !slices.Equal(p.bodies(), numbered("c", 0, 3)) {
		t.Fatalf("with carol's full JID: %v", p.bodies())
	}
	if p := alice.mam(mamForm("with", "carol@localhost/other")); len(p.results) != 0 {
		t.Fatalf("with another resource of carol: %v", p.bodies())
	}
	// bob's archive has the outgoing message too.
	if p := bob.mam(mamForm("with", "alice@localhost")); !slices.Equal(p.bodies(), append(numbered("b", 0, 4), "to bob")) {
		t.Fatalf("bob's archive: %v", p.bodies())
	}

	// Time filters, using the stamps the archive reports: inclusive.
	all := alice.mam("")
	stamp := func(i int) string {
		return all.results[i].Child(archive.NS, "result").Child(archive.NSForward, "forwarded").Child(xmpp.NSDelay, "delay").Attr("stamp")
	}
	p = alice.mam(mamForm("start", stamp(2), "end", stamp(5)))
	if !slices.Equal(p.ids(), all.ids()[2:6]) {
		t.Fatalf("start/end: %v, want %v", p.bodies(), all.bodies()[2:6])
	}
	if p := alice.mam(mamForm("start", "2000-01-01T00:00:00Z", "end", "2000-01-02T00:00:00+02:00")); len(p.results) != 0 || !p.complete() {
		t.Fatalf("a day long ago: %v", p.bodies())
	}
	if p := alice.mam(mamForm("start", stamp(7), "with", "bob@localhost")); !slices.Equal(p.bodies(), []string{"to bob"}) {
		t.Fatalf("start and with: %v", p.bodies())
	}

	// Form fields can be fetched; bad queries are refused.
	form := alice.result("get", "", `<query xmlns='urn:xmpp:mam:2'/>`).String()
	for _, f := range []string{"with", "start", "end", "before-id", "after-id", "ids"} {
		if !strings.Contains(form, "var='"+f+"'") {
			t.Errorf("query form lacks %s: %s", f, form)
		}
	}
	alice.mamError(mamForm("start", "yesterday"), "bad-request")
	alice.mamError(mamForm("with", "@@"), "bad-request")
	alice.mamError(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:other</value></field></x>`, "bad-request")
	alice.mamError(mamForm("full-text-search", "hello"), "feature-not-implemented")
	alice.mamError(rsm("<max>many</max>"), "bad-request")
	alice.mamError(rsm("<index>3</index>"), "feature-not-implemented")
	alice.mamError(mamForm("after-id", "unknown"), "item-not-found")
	alice.mamError(mamForm("ids", "unknown"), "item-not-found")
	// Nobody else may read alice's archive.
	bob.iqError("set", "alice@localhost", `<query xmlns='urn:xmpp:mam:2'/>`, "forbidden")
	bob.iqError("get", "alice@localhost", `<prefs xmlns='urn:xmpp:mam:2'/>`, "forbidden")
}

func TestArchivePreferences(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob", "carol")
	ts.putItem(t, "alice", storage.RosterItem{Contact: "bob@localhost", Subscription: storage.SubBoth})
	alice := ts.online(t, "alice", "phone")
	bob := ts.online(t, "bob", "pc")
	carol := ts.online(t, "carol", "tab")

	prefs := alice.result("get", "", `<prefs xmlns='urn:xmpp:mam:2'/>`).Child(archive.NS, "prefs")
	if prefs.Attr("default") != "always" || prefs.Child(archive.NS, "always") == nil || prefs.Child(archive.NS, "never") == nil {
		t.Fatalf("default prefs: %s", prefs)
	}
	alice.iqError("set", "", `<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>`, "bad-request")

	// never: nothing archived, no stanza-id; the always list still wins.
	res := alice.result("set", "", `<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>carol@localhost</jid></always><never/></prefs>`)
	if p := res.Child(archive.NS, "prefs"); p.Attr("default") != "never" || p.Child(archive.NS, "always").ChildText(archive.NS, "jid") != "carol@localhost" {
		t.Fatalf("set prefs answer: %s", res)
	}
	bob.message("alice@localhost", "not archived")
	if m := alice.expectMessage("bob@localhost/pc", "not archived"); len(stanzaIDs(m, "alice@localhost")) != 0 {
		t.Fatalf("a message not archived carries a stanza-id: %s", m)
	}
	alice.message("bob@localhost", "not archived either")
	carol.message("alice@localhost", "carol always")
	alice.expectMessage("carol@localhost/tab", "carol always")
	if p := alice.mam(""); !slices.Equal(p.bodies(), []string{"carol always"}) {
		t.Fatalf("archive under never+always carol: %v", p.bodies())
	}

	// roster: bob (in the roster) is archived, carol is not; never wins.
	alice.result("set", "", `<prefs xmlns='urn:xmpp:mam:2' default='roster'><always/><never><jid>carol@localhost/tab</jid></never></prefs>`)
	bob.message("alice@localhost", "bob in roster")
	alice.expectMessage("bob@localhost/pc", "bob in roster")
	carol.message("alice@localhost", "carol never")
	alice.expectMessage("carol@localhost/tab", "carol never")
	if p := alice.mam(""); !slices.Equal(p.bodies(), []string{"carol always", "bob in roster"}) {
		t.Fatalf("archive under roster: %v", p.bodies())
	}
	got := alice.result("get", "", `<prefs xmlns='urn:xmpp:mam:2'/>`).Child(archive.NS, "prefs")
	if got.Attr("default") != "roster" || got.Child(archive.NS, "never").ChildText(archive.NS, "jid") != "carol@localhost/tab" {
		t.Fatalf("stored prefs: %s", got)
	}
}

func TestArchiveDefaultModeNeverAndDisabled(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.Archive.DefaultMode = "never" })
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "phone")
	bob := ts.online(t, "bob", "pc")
	bob.message("alice@localhost", "hello")
	alice.expectMessage("bob@localhost/pc", "hello")
	if p := alice.mam(""); len(p.results) != 0 {
		t.Fatalf("archived under default_mode never: %v", p.bodies())
	}

	ts2 := startTestServer(t, func(c *config.Config) { c.Archive.Enabled = false })
	ts2.users(t, "alice", "bob")
	alice = ts2.online(t, "alice", "phone")
	bob = ts2.online(t, "bob", "pc")
	bob.send(`<message to='alice@localhost' type='chat'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='fake'/></message>`)
	if m := alice.expectMessage("bob@localhost/pc", "hi"); len(stanzaIDs(m, "alice@localhost")) != 0 {
		t.Fatalf("claimed stanza-id kept without an archive: %s", m)
	}
	alice.iqError("set", "", `<query xmlns='urn:xmpp:mam:2'/>`, "service-unavailable")
}

// TestArchiveSMTimeoutOnce: a message queued to a stream management
// session that expires is handed back to the router. It must keep its
// stanza-id, be archived once, and not be carbon-copied a second time,
// whether it goes to another resource or to offline storage.
func TestArchiveSMTimeoutOnce(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.StreamManagement.ResumeTimeout = config.Duration{Duration: 300 * time.Millisecond}
	})
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "desk")
	bobPhone := smLogin(t, ts, "bob", "phone")
	bobDesk := ts.online(t, "bob", "desk")
	bobTab := ts.online(t, "bob", "tab")
	for _, c := range []*imClient{bobDesk, bobTab} {
		c.send(`<presence><priority>-1</priority></presence>`)
		c.enableCarbons()
		c.drain()
	}

	// 1. bob's phone gets the message but never acknowledges it; bob's
	// desk and tablet (carbons on) get a copy.
	alice.message("bob@localhost/phone", "unacked")
	m := nextMessage(bobPhone.rawClient)
	id := oneStanzaID(t, m, "bob@localhost")
	for _, other := range []*imClient{bobDesk, bobTab} {
		c := other.expect("carbon", isCarbon("received", "unacked"))
		if cid := oneStanzaID(t, forwardedIn(c.Child(carbons.NS, "received")), "bob@localhost"); cid != id {
			t.Fatalf("carbon stanza-id %s, message %s", cid, id)
		}
	}
	// 2. The desk becomes the best resource; the phone's session expires
	// and the message is routed to the desk, with the same id, as a
	// message (not a second carbon).
	bobDesk.send(`<presence><priority>5</priority></presence>`)
	bobDesk.sync()
	bobPhone.cut()
	waitFor(t, "the phone session to expire", func() bool { return len(ts.router.Sessions("bob")) == 2 })
	again := bobDesk.expectMessage("alice@localhost/desk", "unacked")
	if got := oneStanzaID(t, again, "bob@localhost"); got != id {
		t.Fatalf("rerouted message has stanza-id %s, first delivery %s", got, id)
	}
	bobDesk.expectNone("a second carbon", isAnyCarbon)
	bobTab.expectNone("a second carbon", isAnyCarbon)
	if p := bobDesk.mam(""); !slices.Equal(p.ids(), []string{id}) {
		t.Fatalf("archive ids %v, want [%s] once", p.ids(), id)
	}

	// 3. Same again with nobody else online: the message goes offline
	// with its id, and the archive still holds it once.
	bobDesk.closeStream()
	bobTab.closeStream()
	bobPhone = smLogin(t, ts, "bob", "phone")
	alice.message("bob@localhost/phone", "to offline")
	m = nextMessage(bobPhone.rawClient)
	id2 := oneStanzaID(t, m, "bob@localhost")
	bobPhone.cut()
	waitFor(t, "bob's sessions to end", func() bool { return len(ts.router.Sessions("bob")) == 0 })
	bob := ts.connect(t, "bob", "laptop")
	p := bob.mam("")
	if !slices.Equal(p.ids(), []string{id, id2}) {
		t.Fatalf("archive ids %v, want [%s %s]", p.ids(), id, id2)
	}
	bob.available("")
	off := bob.expectMessage("alice@localhost/desk", "to offline")
	if got := oneStanzaID(t, off, "bob@localhost"); got != id2 {
		t.Fatalf("offline copy has stanza-id %s, archive %s", got, id2)
	}
	if off.Child(xmpp.NSDelay, "delay") == nil {
		t.Fatalf("offline copy without delay: %s", off)
	}
}

func TestArchiveRemovedWithAccount(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "pc")
	fill(bob, "alice@localhost", "x", 3)
	ctx := context.Background()
	if p, err := ts.store.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10}); err != nil || len(p.Messages) != 3 {
		t.Fatalf("before deletion: %d messages, %v", len(p.Messages), err)
	}
	if err := ts.store.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	ts.users(t, "alice")
	alice := ts.connect(t, "alice", "phone")
	if p := alice.mam(""); len(p.results) != 0 {
		t.Fatalf("re-created account sees the old archive: %v", p.bodies())
	}
	// bob's own archive keeps what he sent.
	if p := bob.mam(""); len(p.results) != 3 {
		t.Fatalf("bob's archive: %v", p.bodies())
	}
}

func TestArchiveRetention(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.Archive.MaxPerUser = 5
		c.Archive.CleanupInterval = config.Duration{Duration: time.Hour}
	})
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "pc")
	fill(bob, "alice@localhost", "r", 8)
	// (The cleanup that runs at start found empty archives.)
	n := ts.history.archive.Cleanup(context.Background())
	t.Logf("cleanup removed %d messages", n)
	alice := ts.connect(t, "alice", "phone")
	if p := alice.mam(""); !slices.Equal(p.bodies(), numbered("r", 3, 8)) {
		t.Fatalf("alice's archive after cleanup: %v", p.bodies())
	}
	if p := bob.mam(""); !slices.Equal(p.bodies(), numbered("r", 3, 8)) {
		t.Fatalf("bob's archive after cleanup: %v", p.bodies())
	}
}
