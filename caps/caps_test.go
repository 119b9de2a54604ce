package caps

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

func parse(t *testing.T, s string) *xmpp.Element {
	t.Helper()
	el, err := xmpp.ParseElement([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return el
}

// The disco#info results of XEP-0115 §5.2 (simple) and §5.3 (complex).
const (
	simpleInfo = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>`
	complexInfo = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'>
      <value>urn:xmpp:dataforms:softwareinfo</value>
    </field>
    <field var='ip_version'>
      <value>ipv4</value>
      <value>ipv6</value>
    </field>
    <field var='os'>
      <value>Mac</value>
    </field>
    <field var='os_version'>
      <value>10.5.1</value>
    </field>
    <field var='software'>
      <value>Psi</value>
    </field>
    <field var='software_version'>
      <value>0.11</value>
    </field>
  </x>
</query>`
)

func TestVerExamples(t *testing.T) {
	for _, tc := range []struct {
		name, query, want string
	}{
		{"simple (XEP-0115 §5.2)", simpleInfo, "QgayPKawpkPSDYmwT/WM94uAlu0="},
		{"complex (XEP-0115 §5.3)", complexInfo, "q07IKJEyjvHSyhy//CH0CxmKi8w="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ParseInfo(parse(t, tc.query))
			if err != nil {
				t.Fatal(err)
			}
			ver, err := info.Ver("sha-1")
			if err != nil || ver != tc.want {
				t.Fatalf("Ver = %q, %v; want %q", ver, err, tc.want)
			}
			if err := Verify(Caps{Node: "n", Ver: tc.want, Hash: "sha-1"}, info); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := Verify(Caps{Node: "n", Ver: "AAAA" + tc.want[4:], Hash: "sha-1"}, info); err == nil {
				t.Fatal("Verify accepted a wrong ver")
			}
		})
	}
}

func TestCompute(t *testing.T) {
	q := parse(t, complexInfo)
	var forms []*xmpp.Element
	for _, el := range q.Elements() {
		if el.Is(xmpp.NSDataForms, "x") {
			forms = append(forms, el)
		}
	}
	ids := []Identity{
		{Category: "client", Type: "pc", Lang: "en", Name: "Psi 0.11"},
		{Category: "client", Type: "pc", Lang: "el", Name: "Ψ 0.11"},
	}
	features := []string{"http://jabber.org/protocol/muc", "http://jabber.org/protocol/caps",
		"http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/disco#info"}
	if got := Compute(ids, features, forms); got != "q07IKJEyjvHSyhy//CH0CxmKi8w=" {
		t.Fatalf("Compute = %q", got)
	}
	// A form without a hidden FORM_TYPE does not count.
	extra := parse(t, `<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:x</value></field></x>`)
	if got := Compute(ids, features, append(forms, extra)); got != "q07IKJEyjvHSyhy//CH0CxmKi8w=" {
		t.Fatalf("Compute with a form that must be ignored = %q", got)
	}
	el := Element("https://wren.im", "abc=")
	if el.String() != `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://wren.im' ver='abc='/>` {
		t.Fatalf("Element = %s", el)
	}
}

func TestOtherHashes(t *testing.T) {
	info, err := ParseInfo(parse(t, simpleInfo))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"sha-224", "sha-256", "sha-384", "sha-512"} {
		ver, err := info.Ver(h)
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		c := Caps{Node: "n", Ver: ver, Hash: h}
		if !c.Verifiable() || Verify(c, info) != nil {
			t.Fatalf("%s: not verifiable", h)
		}
	}
	for _, h := range []string{"", "md5", "sha-3"} {
		if (Caps{Hash: h}).Verifiable() {
			t.Fatalf("hash %q is verifiable", h)
		}
		if _, err := info.Ver(h); err == nil {
			t.Fatalf("Ver(%q) succeeded", h)
		}
	}
}

func TestIllFormed(t *testing.T) {
	for name, q := range map[string]string{
		"duplicate identity": `<query xmlns='http://jabber.org/protocol/disco#info'>
			<identity category='client' type='pc' name='x'/><identity category='client' type='pc' name='x'/></query>`,
		"duplicate feature": `<query xmlns='http://jabber.org/protocol/disco#info'>
			<feature var='a'/><feature var='a'/></query>`,
		"duplicate form type": `<query xmlns='http://jabber.org/protocol/disco#info'>
			<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:a</value></field></x>
			<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:a</value></field></x></query>`,
		"FORM_TYPE with two values": `<query xmlns='http://jabber.org/protocol/disco#info'>
			<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:a</value><value>urn:b</value></field></x></query>`,
	} {
		if _, err := ParseInfo(parse(t, q)); !errors.Is(err, ErrIllFormed) {
			t.Errorf("%s: err = %v, want ErrIllFormed", name, err)
		}
	}
	// Same identity in two languages, and a form without FORM_TYPE: fine.
	info, err := ParseInfo(parse(t, `<query xmlns='http://jabber.org/protocol/disco#info'>
		<identity category='client' type='pc' name='x' xml:lang='en'/><identity category='client' type='pc' name='x' xml:lang='de'/>
		<x xmlns='jabber:x:data' type='result'><field var='a'><value>1</value></field></x></query>`))
	if err != nil || len(info.Identities) != 2 || len(info.Forms) != 0 {
		t.Fatalf("ParseInfo = %+v, %v", info, err)
	}
}

func TestFromElement(t *testing.T) {
	p := parse(t, `<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://conversations.im' ver='abc='/></presence>`)
	c, ok := FromElement(p)
	if !ok || c != (Caps{Node: "https://conversations.im", Ver: "abc=", Hash: "sha-1"}) {
		t.Fatalf("FromElement = %+v, %v", c, ok)
	}
	if c.DiscoNode() != "https://conversations.im#abc=" || c.Key() != "sha-1 abc=" {
		t.Fatalf("DiscoNode %q Key %q", c.DiscoNode(), c.Key())
	}
	for _, s := range []string{
		`<presence/>`,
		`<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' ver='abc='/></presence>`,
		`<presence><c xmlns='urn:other' hash='sha-1' node='n' ver='abc='/></presence>`,
	} {
		if _, ok := FromElement(parse(t, s)); ok {
			t.Errorf("FromElement(%s) found caps", s)
		}
	}
}

func TestFeatures(t *testing.T) {
	f := NewFeatures([]string{"urn:xmpp:avatar:metadata+notify", "eu.siacs.conversations.axolotl.devicelist+notify", "+notify", "urn:x", "urn:xmpp:avatar:metadata+notify"})
	if !f.Wants("urn:xmpp:avatar:metadata") || f.Wants("urn:x") || !f.Has("urn:x") {
		t.Fatal("Wants/Has")
	}
	if got, want := f.Notify(), []string{"eu.siacs.conversations.axolotl.devicelist", "urn:xmpp:avatar:metadata"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Notify = %v, want %v", got, want)
	}
	var none *Features
	if none.Has("x") || none.Wants("x") || none.Notify() != nil || none.Len() != 0 {
		t.Fatal("nil Features is not empty")
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := NewCache(2)
	a, b, d := NewFeatures([]string{"a"}), NewFeatures([]string{"b"}), NewFeatures([]string{"d"})
	c.Put("a", a)
	c.Put("b", b)
	if f, ok := c.Get("a"); !ok || f != a {
		t.Fatal("a missing")
	}
	c.Put("d", d) // evicts b, the least recently used
	if _, ok := c.Get("b"); ok {
		t.Fatal("b was not evicted")
	}
	if _, ok := c.Get("a"); !ok {
		t.Fatal("a was evicted")
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d", c.Len())
	}
	c.Put("d", a)
	if f, _ := c.Get("d"); f != a || c.Len() != 2 {
		t.Fatal("replacing an entry")
	}
}

// fakeAsker records queries; the test answers them.
type fakeAsker struct {
	mu      sync.Mutex
	queries []fakeQuery
}

type fakeQuery struct {
	from, to jid.JID
	node     string
	done     func(*xmpp.Element)
}

func (a *fakeAsker) ask(_ context.Context, from, to jid.JID, node string, done func(*xmpp.Element)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queries = append(a.queries, fakeQuery{from, to, node, done})
}

func (a *fakeAsker) take(t *testing.T) fakeQuery {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queries) == 0 {
		t.Fatal("no query was sent")
	}
	q := a.queries[0]
	a.queries = a.queries[1:]
	return q
}

func (a *fakeAsker) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queries)
}

func TestResolver(t *testing.T) {
	ctx := context.Background()
	asker := &fakeAsker{}
	cache := NewCache(10)
	r := NewResolver(cache, asker.ask, 2, nil)
	server := jid.MustParse("alice@example.org")
	one := jid.MustParse("bob@example.org/one")
	two := jid.MustParse("carol@example.org/two")
	c := Caps{Node: "http://code.google.com/p/exodus", Ver: "QgayPKawpkPSDYmwT/WM94uAlu0=", Hash: "sha-1"}

	var got1, got2 []*Features
	if _, ok := r.Resolve(ctx, server, one, c, func(f *Features) { got1 = append(got1, f) }); ok {
		t.Fatal("unknown caps resolved at once")
	}
	if _, ok := r.Resolve(ctx, server, two, c, func(f *Features) { got2 = append(got2, f) }); ok {
		t.Fatal("unknown caps resolved at once")
	}
	if asker.count() != 1 {
		t.Fatalf("%d queries for one ver, want 1", asker.count())
	}
	q := asker.take(t)
	if q.node != c.DiscoNode() || !q.to.Equal(one) || !q.from.Equal(server) {
		t.Fatalf("query %+v", q)
	}
	q.done(parse(t, simpleInfo))
	if len(got1) != 1 || len(got2) != 1 || !got1[0].Has("http://jabber.org/protocol/muc") || got1[0] != got2[0] {
		t.Fatalf("waiters got %v and %v", got1, got2)
	}
	if f, ok := r.Resolve(ctx, server, two, c, func(*Features) { t.Error("done called for cached caps") }); !ok || f != got1[0] {
		t.Fatal("verified caps were not cached")
	}
	if f, ok := r.Cached(c); !ok || f != got1[0] {
		t.Fatal("Cached")
	}
	if r.Pending() != 0 {
		t.Fatalf("Pending = %d", r.Pending())
	}
}

func TestResolverRejectsMismatch(t *testing.T) {
	ctx := context.Background()
	asker := &fakeAsker{}
	r := NewResolver(NewCache(10), asker.ask, 10, nil)
	server := jid.MustParse("example.org")
	entity := jid.MustParse("bob@example.org/one")
	lie := Caps{Node: "n", Ver: "QgayPKawpkPSDYmwT/WM94uAlu0=", Hash: "sha-1"}
	var got []*Features
	called := 0
	r.Resolve(ctx, server, entity, lie, func(f *Features) { called++; got = append(got, f) })
	asker.take(t).done(parse(t, `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:evil+notify'/></query>`))
	if called != 1 || got[0] != nil {
		t.Fatalf("a mismatching answer gave %v", got)
	}
	if _, ok := r.Cached(lie); ok {
		t.Fatal("a mismatching answer was cached")
	}
	// No answer at all.
	called = 0
	r.Resolve(ctx, server, entity, lie, func(f *Features) { called++; got = append(got, f) })
	asker.take(t).done(nil)
	if called != 1 || got[1] != nil {
		t.Fatal("timeout did not give nil")
	}
}

func TestResolverLegacyCapsPerEntity(t *testing.T) {
	ctx := context.Background()
	asker := &fakeAsker{}
	r := NewResolver(NewCache(10), asker.ask, 10, nil)
	server := jid.MustParse("example.org")
	legacy := Caps{Node: "http://psi-im.org/caps", Ver: "0.11"}
	var a, b *Features
	r.Resolve(ctx, server, jid.MustParse("a@example.org/x"), legacy, func(f *Features) { a = f })
	r.Resolve(ctx, server, jid.MustParse("b@example.org/x"), legacy, func(f *Features) { b = f })
	if asker.count() != 2 {
		t.Fatalf("legacy caps of two entities: %d queries, want 2", asker.count())
	}
	asker.take(t).done(parse(t, `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:a+notify'/></query>`))
	asker.take(t).done(parse(t, `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:b+notify'/></query>`))
	if !a.Wants("urn:a") || !b.Wants("urn:b") || a.Wants("urn:b") {
		t.Fatalf("legacy features mixed up: %v %v", a.Notify(), b.Notify())
	}
	if _, ok := r.Cached(legacy); ok {
		t.Fatal("legacy caps cached")
	}
}

func TestResolverBoundsOutstandingQueries(t *testing.T) {
	ctx := context.Background()
	asker := &fakeAsker{}
	r := NewResolver(NewCache(10), asker.ask, 2, nil)
	server := jid.MustParse("example.org")
	for i := range 3 {
		c := Caps{Node: "n", Ver: fmt.Sprintf("v%d", i), Hash: "sha-1"}
		f, ok := r.Resolve(ctx, server, jid.MustParse("a@example.org/x"), c, func(*Features) {})
		if want := i == 2; ok != want || f != nil {
			t.Fatalf("query %d: ok = %v, want %v", i, ok, want)
		}
	}
	if asker.count() != 2 || r.Pending() != 2 {
		t.Fatalf("%d queries, %d pending; want 2", asker.count(), r.Pending())
	}
}

func TestResolverBoundsQueriesPerEntity(t *testing.T) {
	ctx := context.Background()
	asker := &fakeAsker{}
	r := NewResolver(NewCache(10), asker.ask, 100, nil)
	server := jid.MustParse("example.org")
	noisy := jid.MustParse("a@example.org/x")
	for i := range 5 {
		c := Caps{Node: "n", Ver: fmt.Sprintf("v%d", i), Hash: "sha-1"}
		_, ok := r.Resolve(ctx, server, noisy, c, func(*Features) {})
		if want := i == 4; ok != want {
			t.Fatalf("query %d to one entity: ok = %v, want %v", i, ok, want)
		}
	}
	// Others are still served, and answering frees the entity's slots.
	if _, ok := r.Resolve(ctx, server, jid.MustParse("b@example.org/y"), Caps{Node: "n", Ver: "w", Hash: "sha-1"}, func(*Features) {}); ok {
		t.Fatal("another entity was refused")
	}
	asker.take(t).done(nil)
	if _, ok := r.Resolve(ctx, server, noisy, Caps{Node: "n", Ver: "v9", Hash: "sha-1"}, func(*Features) {}); ok {
		t.Fatal("the entity was refused after an answer")
	}
}
