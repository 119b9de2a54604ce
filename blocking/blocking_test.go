package blocking

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// fakeStore keeps blocklists, rosters and subscription requests in memory
// and counts blocklist reads.
type fakeStore struct {
	mu       sync.Mutex
	lists    map[string][]string
	rosters  map[string][]storage.RosterItem
	requests map[string][]storage.SubscriptionRequest
	reads    atomic.Int64
	fail     atomic.Bool
}

var errBroken = errors.New("storage is broken")

func newFakeStore() *fakeStore {
	return &fakeStore{
		lists:    map[string][]string{},
		rosters:  map[string][]storage.RosterItem{},
		requests: map[string][]storage.SubscriptionRequest{},
	}
}

func (f *fakeStore) Blocklist(ctx context.Context, user string) ([]string, error) {
	f.reads.Add(1)
	if f.fail.Load() {
		return nil, errBroken
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lists[user]), nil
}

func (f *fakeStore) BlockJIDs(ctx context.Context, user string, jids []string, max int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := slices.Clone(f.lists[user])
	for _, j := range jids {
		if !slices.Contains(l, j) {
			l = append(l, j)
		}
	}
	if max > 0 && len(l) > max {
		return storage.ErrQuotaExceeded
	}
	f.lists[user] = l
	return nil
}

func (f *fakeStore) UnblockJIDs(ctx context.Context, user string, jids []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := len(f.lists[user])
	f.lists[user] = slices.DeleteFunc(f.lists[user], func(j string) bool { return slices.Contains(jids, j) })
	return before - len(f.lists[user]), nil
}

func (f *fakeStore) UnblockAll(ctx context.Context, user string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.lists[user])
	delete(f.lists, user)
	return n, nil
}

func (f *fakeStore) Roster(ctx context.Context, user string) ([]storage.RosterItem, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rosters[user]), 1, nil
}

func (f *fakeStore) SubscriptionRequests(ctx context.Context, user string) ([]storage.SubscriptionRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests[user]), nil
}

func (f *fakeStore) DeleteSubscriptionRequest(ctx context.Context, user, from string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests[user] = slices.DeleteFunc(f.requests[user], func(r storage.SubscriptionRequest) bool { return r.From == from })
	return nil
}

// session is a bound client session that records what it is given.
type session struct {
	j         jid.JID
	avail     bool
	directed  []string
	mu        sync.Mutex
	got       []*xmpp.Element
	requested bool
}

func (s *session) JID() jid.JID            { return s.j }
func (s *session) Available() (bool, int)  { return s.avail, 0 }
func (s *session) Close(*xmpp.StreamError) {}
func (s *session) Directed() []string      { return s.directed }
func (s *session) Presence() *xmpp.Element {
	if !s.avail {
		return nil
	}
	p := xmpp.NewElement(xmpp.NSClient, "presence")
	p.AddChild(xmpp.NSClient, "show").AppendText("chat")
	return p
}
func (s *session) Deliver(el *xmpp.Element) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, el)
}

// take returns and forgets what the session received.
func (s *session) take() []*xmpp.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	s.got = nil
	return got
}

// interestedSession is a session that knows whether its client fetched
// the blocklist.
type interestedSession struct{ *session }

func (s interestedSession) BlocklistRequested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requested
}

func (s interestedSession) SetBlocklistRequested() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requested = true
}

// env is a router for example.com with blocking installed. Stanzas for
// other domains and inbound presence are recorded instead of routed.
type env struct {
	t      *testing.T
	r      *router.Router
	store  *fakeStore
	svc    *Service
	mu     sync.Mutex
	remote []*router.Stanza
	inPres []*router.Stanza
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := router.New("example.com", logger)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, r: r, store: newFakeStore()}
	r.SetHooks(router.Hooks{
		Remote: func(ctx context.Context, s *router.Stanza) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.remote = append(e.remote, s)
		},
		InboundPresence: func(ctx context.Context, s *router.Stanza) bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.inPres = append(e.inPres, s)
			return true
		},
		Offline: func(ctx context.Context, user string, s *router.Stanza) *xmpp.StanzaError {
			t.Errorf("message for %s stored offline: %s", user, s.El)
			return nil
		},
	})
	e.svc = New(cfg, e.store, r, logger)
	r.SetFilter(e.svc.Filter)
	r.HandleIQ(router.ToAccount, NS, e.svc.HandleIQ)
	return e
}

// bind binds an available session.
func (e *env) bind(full string) *session {
	s := &session{j: jid.MustParse(full), avail: true}
	e.r.Bind(s)
	return s
}

func (e *env) takeRemote() []*router.Stanza {
	e.mu.Lock()
	defer e.mu.Unlock()
	got := e.remote
	e.remote = nil
	return got
}

// send routes a stanza as if the client of sess sent it.
func (e *env) send(sess router.Session, raw string) {
	e.t.Helper()
	el, err := xmpp.ParseElement([]byte(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	el.SetAttr("from", sess.JID().String())
	st := &router.Stanza{El: el, From: sess.JID(), Origin: sess}
	if to := el.Attr("to"); to != "" {
		st.To = jid.MustParse(to)
	}
	e.r.Route(context.Background(), st)
}

// inject routes a stanza with the addresses it carries and no origin (one
// from another server, or generated by this one).
func (e *env) inject(raw string) {
	e.t.Helper()
	el, err := xmpp.ParseElement([]byte(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	e.r.Route(context.Background(), &router.Stanza{El: el, From: jid.MustParse(el.Attr("from")), To: jid.MustParse(el.Attr("to"))})
}

// iq sends an IQ to the account of sess and returns the answer.
func (e *env) iq(sess *session, typ, payload string) *xmpp.Element {
	e.t.Helper()
	e.send(sess, "<iq xmlns='jabber:client' type='"+typ+"' id='q1'>"+payload+"</iq>")
	var answer *xmpp.Element
	var rest []*xmpp.Element
	for _, el := range sess.take() {
		if answer == nil && el.Local == "iq" && el.Attr("id") == "q1" {
			answer = el
		} else {
			rest = append(rest, el)
		}
	}
	sess.mu.Lock()
	sess.got = append(rest, sess.got...)
	sess.mu.Unlock()
	if answer == nil {
		e.t.Fatalf("no answer to IQ %s %s", typ, payload)
	}
	return answer
}

func (e *env) result(sess *session, typ, payload string) *xmpp.Element {
	e.t.Helper()
	r := e.iq(sess, typ, payload)
	if r.Attr("type") != "result" {
		e.t.Fatalf("IQ %s %s: %s", typ, payload, r)
	}
	return r
}

func (e *env) iqError(sess *session, typ, payload, cond string) *xmpp.Element {
	e.t.Helper()
	r := e.iq(sess, typ, payload)
	if r.Attr("type") != "error" || condition(r) != cond {
		e.t.Fatalf("IQ %s %s: %s, want error %s", typ, payload, r, cond)
	}
	return r
}

func condition(el *xmpp.Element) string {
	for _, c := range el.Child(xmpp.NSClient, "error").Elements() {
		if c.Space == xmpp.NSStanzas && c.Local != "text" {
			return c.Local
		}
	}
	return ""
}

func block(jids ...string) string {
	s := "<block xmlns='urn:xmpp:blocking'>"
	for _, j := range jids {
		s += "<item jid='" + j + "'/>"
	}
	return s + "</block>"
}

func unblock(jids ...string) string {
	s := "<unblock xmlns='urn:xmpp:blocking'>"
	for _, j := range jids {
		s += "<item jid='" + j + "'/>"
	}
	return s + "</unblock>"
}

func blocklist(t *testing.T, r *xmpp.Element) []string {
	t.Helper()
	bl := r.Child(NS, "blocklist")
	if bl == nil {
		t.Fatalf("no <blocklist/> in %s", r)
	}
	var out []string
	for _, it := range bl.Elements() {
		out = append(out, it.Attr("jid"))
	}
	return out
}

func TestRemoteStanzasNeverTouchStorage(t *testing.T) {
	e := newEnv(t, Config{})
	for _, raw := range []string{
		"<message xmlns='jabber:client' from='a@remote.net/x' to='b@other.net' type='chat'><body>hi</body></message>",
		"<presence xmlns='jabber:client' from='a@remote.net/x' to='b@other.net'/>",
		"<iq xmlns='jabber:client' from='example.com' to='alice@example.com/a' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
	} {
		e.inject(raw)
	}
	if n := e.store.reads.Load(); n != 0 {
		t.Fatalf("%d blocklist reads for stanzas between remote entities or from the server", n)
	}
}

func TestEmptyListsCached(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	bob := e.bind("bob@example.com/b")
	for range 50 {
		e.send(alice, "<message xmlns='jabber:client' to='bob@example.com' type='chat'><body>hi</body></message>")
		e.send(bob, "<message xmlns='jabber:client' to='alice@example.com' type='chat'><body>hi</body></message>")
	}
	if n := e.store.reads.Load(); n != 2 {
		t.Fatalf("%d blocklist reads, want 2 (one per user)", n)
	}
	if got := len(alice.take()); got != 50 {
		t.Fatalf("alice got %d messages, want 50", got)
	}
}

func TestBlockGetUnblock(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	if l := blocklist(t, e.result(alice, "get", "<blocklist xmlns='urn:xmpp:blocking'/>")); len(l) != 0 {
		t.Fatalf("new blocklist: %v", l)
	}
	e.result(alice, "set", block("Romeo@Montague.lit", "evil.net", "iago@example.org/x", "romeo@montague.lit"))
	want := []string{"romeo@montague.lit", "evil.net", "iago@example.org/x"}
	if l := blocklist(t, e.result(alice, "get", "<blocklist xmlns='urn:xmpp:blocking'/>")); !slices.Equal(l, want) {
		t.Fatalf("blocklist %v, want %v (normalised, without duplicates)", l, want)
	}
	e.result(alice, "set", unblock("evil.net", "nobody@x"))
	want = []string{"romeo@montague.lit", "iago@example.org/x"}
	if l := blocklist(t, e.result(alice, "get", "<blocklist xmlns='urn:xmpp:blocking'/>")); !slices.Equal(l, want) {
		t.Fatalf("after unblock: %v, want %v", l, want)
	}
	e.result(alice, "set", unblock())
	if l := blocklist(t, e.result(alice, "get", "<blocklist xmlns='urn:xmpp:blocking'/>")); len(l) != 0 {
		t.Fatalf("after unblock all: %v", l)
	}
	if l := e.store.lists["alice"]; len(l) != 0 {
		t.Fatalf("storage after unblock all: %v", l)
	}
}

func TestBlockRequestErrors(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	e.iqError(alice, "set", block(), xmpp.CondBadRequest)
	e.iqError(alice, "set", "<block xmlns='urn:xmpp:blocking'><item/></block>", xmpp.CondBadRequest)
	e.iqError(alice, "set", block("a@b@c"), xmpp.CondJIDMalformed)
	e.iqError(alice, "set", unblock("@x"), xmpp.CondJIDMalformed)
	e.iqError(alice, "get", block("a@x"), xmpp.CondBadRequest)
	e.iqError(alice, "set", "<blocklist xmlns='urn:xmpp:blocking'/>", xmpp.CondBadRequest)
	e.send(alice, "<iq xmlns='jabber:client' type='get' id='q1' to='bob@example.com'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	if r := alice.take(); len(r) != 1 || condition(r[0]) != xmpp.CondForbidden {
		t.Fatalf("reading bob's blocklist: %v", r)
	}
	if len(e.store.lists) != 0 {
		t.Fatalf("refused requests changed storage: %v", e.store.lists)
	}
}

func TestBlockCap(t *testing.T) {
	e := newEnv(t, Config{MaxItems: 2})
	alice := e.bind("alice@example.com/a")
	e.result(alice, "set", block("a@x", "b@x"))
	e.result(alice, "set", block("a@x")) // already there: no growth
	r := e.iqError(alice, "set", block("c@x"), xmpp.CondNotAcceptable)
	if r.Child(xmpp.NSClient, "error").ChildText(xmpp.NSStanzas, "text") == "" {
		t.Errorf("the cap error has no text: %s", r)
	}
	if l := blocklist(t, e.result(alice, "get", "<blocklist xmlns='urn:xmpp:blocking'/>")); !slices.Equal(l, []string{"a@x", "b@x"}) {
		t.Fatalf("blocklist after a refused block: %v", l)
	}
	e.result(alice, "set", unblock("a@x"))
	e.result(alice, "set", block("c@x"))
}

func TestPushes(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	plain := e.bind("alice@example.com/plain") // cannot tell: gets pushes
	s := &session{j: jid.MustParse("alice@example.com/fetched"), avail: true}
	fetched := interestedSession{s}
	e.r.Bind(fetched)
	s2 := &session{j: jid.MustParse("alice@example.com/never"), avail: true}
	e.r.Bind(interestedSession{s2})
	e.send(fetched, "<iq xmlns='jabber:client' type='get' id='f1'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
	s.take()

	e.result(alice, "set", block("romeo@montague.lit"))
	for _, sess := range []*session{plain, s} {
		got := sess.take()
		if len(got) != 1 || got[0].Attr("type") != "set" || got[0].Attr("to") != sess.j.String() {
			t.Fatalf("%s: got %v, want one block push", sess.j, got)
		}
		items := got[0].Child(NS, "block").Elements()
		if len(items) != 1 || items[0].Attr("jid") != "romeo@montague.lit" {
			t.Fatalf("%s: push %s", sess.j, got[0])
		}
	}
	if got := s2.take(); len(got) != 0 {
		t.Fatalf("a session that never fetched the blocklist got %v", got)
	}
	e.result(alice, "set", unblock())
	got := plain.take()
	if len(got) != 1 || got[0].Child(NS, "unblock") == nil || len(got[0].Child(NS, "unblock").Elements()) != 0 {
		t.Fatalf("unblock all push: %v", got)
	}
}

func TestFilterBothWays(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	alice2 := e.bind("alice@example.com/b")
	bob := e.bind("bob@example.com/b")
	e.result(alice, "set", block("bob@example.com"))
	alice.take()
	alice2.take()
	bob.take()

	// bob -> alice: chat bounced with service-unavailable, as if alice did not exist.
	e.send(bob, "<message xmlns='jabber:client' to='alice@example.com' type='chat' id='m1'><body>hi</body></message>")
	got := bob.take()
	if len(got) != 1 || got[0].Attr("type") != "error" || condition(got[0]) != xmpp.CondServiceUnavailable || got[0].Attr("id") != "m1" {
		t.Fatalf("bob's message to alice: bob got %v", got)
	}
	// Headlines, groupchat, presence and IQ answers vanish; IQ requests bounce.
	e.send(bob, "<message xmlns='jabber:client' to='alice@example.com/a' type='headline'><body>x</body></message>")
	e.send(bob, "<presence xmlns='jabber:client' to='alice@example.com'/>")
	e.send(bob, "<presence xmlns='jabber:client' to='alice@example.com' type='subscribe'/>")
	e.send(bob, "<iq xmlns='jabber:client' to='alice@example.com/a' type='result' id='r1'/>")
	if got := bob.take(); len(got) != 0 {
		t.Fatalf("bob got answers to stanzas that must vanish: %v", got)
	}
	e.send(bob, "<iq xmlns='jabber:client' to='alice@example.com/a' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>")
	got = bob.take()
	if len(got) != 1 || condition(got[0]) != xmpp.CondServiceUnavailable {
		t.Fatalf("bob's IQ to alice: %v", got)
	}
	e.mu.Lock()
	inPres := len(e.inPres)
	e.mu.Unlock()
	if inPres != 0 {
		t.Fatal("bob's subscription request reached alice's presence handling")
	}

	// alice -> bob: not-acceptable with <blocked/> for what her client sent.
	e.send(alice, "<message xmlns='jabber:client' to='bob@example.com' type='chat' id='m2'><body>hi</body></message>")
	got = alice.take()
	if len(got) != 1 || condition(got[0]) != xmpp.CondNotAcceptable || got[0].Child(xmpp.NSClient, "error").Child(NSErrors, "blocked") == nil {
		t.Fatalf("alice's message to bob: alice got %v", got)
	}
	if typ := got[0].Child(xmpp.NSClient, "error").Attr("type"); typ != xmpp.ErrTypeCancel {
		t.Errorf("error type %q, want cancel (XEP-0191 example 9)", typ)
	}
	e.send(alice, "<iq xmlns='jabber:client' to='bob@example.com/b' type='get' id='i2'><ping xmlns='urn:xmpp:ping'/></iq>")
	if got := alice.take(); len(got) != 1 || condition(got[0]) != xmpp.CondNotAcceptable {
		t.Fatalf("alice's IQ to bob: %v", got)
	}
	e.send(alice, "<presence xmlns='jabber:client' to='bob@example.com'/>")
	// Server-generated stanzas on alice's behalf are dropped without error.
	e.inject("<message xmlns='jabber:client' from='alice@example.com' to='bob@example.com/b' type='headline'/>")
	e.inject("<presence xmlns='jabber:client' from='alice@example.com/a' to='bob@example.com'/>")
	if got := alice.take(); len(got) != 0 {
		t.Fatalf("alice got errors for presence or server-generated stanzas: %v", got)
	}
	if got := bob.take(); len(got) != 0 {
		t.Fatalf("bob received stanzas from alice: %v", got)
	}

	// alice's own resources and the server are never blocked.
	e.send(alice, "<message xmlns='jabber:client' to='alice@example.com/b' type='chat'><body>self</body></message>")
	if got := alice2.take(); len(got) != 1 {
		t.Fatalf("message between alice's resources: %v", got)
	}
}

func TestDomainAndResourceBlocks(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	e.result(alice, "set", block("evil.net", "good.net/bot"))
	alice.take()
	e.inject("<message xmlns='jabber:client' from='spam@evil.net/x' to='alice@example.com' type='chat'><body>buy</body></message>")
	e.inject("<message xmlns='jabber:client' from='evil.net' to='alice@example.com' type='normal'><body>buy</body></message>")
	e.inject("<message xmlns='jabber:client' from='friend@good.net/bot' to='alice@example.com' type='chat'><body>beep</body></message>")
	e.inject("<message xmlns='jabber:client' from='friend@good.net/phone' to='alice@example.com' type='chat'><body>hello</body></message>")
	e.inject("<message xmlns='jabber:client' from='x@sub.evil.net/x' to='alice@example.com' type='chat'><body>sub</body></message>")
	got := alice.take()
	var bodies []string
	for _, m := range got {
		bodies = append(bodies, m.ChildText(xmpp.NSClient, "body"))
	}
	if !slices.Equal(bodies, []string{"hello", "sub"}) {
		t.Fatalf("alice got %v, want only hello and sub", bodies)
	}
	bounced := e.takeRemote()
	if len(bounced) != 3 {
		t.Fatalf("%d bounces to remote senders, want 3", len(bounced))
	}
	for _, b := range bounced {
		if condition(b.El) != xmpp.CondServiceUnavailable {
			t.Errorf("bounce %s", b.El)
		}
	}
	e.send(alice, "<message xmlns='jabber:client' to='anyone@evil.net' type='chat'><body>x</body></message>")
	if got := alice.take(); len(got) != 1 || condition(got[0]) != xmpp.CondNotAcceptable {
		t.Fatalf("alice's message into a blocked domain: %v", got)
	}
	if r := e.takeRemote(); len(r) != 0 {
		t.Fatalf("a stanza left for a blocked domain: %v", r[0].El)
	}
}

func TestStorageFailureFailsOpen(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	e.store.fail.Store(true)
	e.inject("<message xmlns='jabber:client' from='a@remote.net/x' to='alice@example.com' type='chat'><body>hi</body></message>")
	if got := alice.take(); len(got) != 1 {
		t.Fatalf("with storage down alice got %v, want the message", got)
	}
	e.iqError(alice, "get", "<blocklist xmlns='urn:xmpp:blocking'/>", xmpp.CondInternalServerError)
	e.iqError(alice, "set", block("a@remote.net"), xmpp.CondInternalServerError)
	e.store.fail.Store(false)
	e.result(alice, "set", block("a@remote.net"))
}

func TestPresenceOnBlockAndUnblock(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	bob := e.bind("bob@example.com/b")
	e.store.rosters["alice"] = []storage.RosterItem{
		{Contact: "bob@example.com", Subscription: storage.SubBoth},
		{Contact: "carol@remote.net", Subscription: storage.SubTo},
		{Contact: "dave@remote.net", Subscription: storage.SubFrom},
	}
	e.store.requests["alice"] = []storage.SubscriptionRequest{{From: "mallory@evil.net"}, {From: "ok@fine.net"}}
	alice.directed = []string{"troll@evil.net/x", "zed@elsewhere.net"}

	e.result(alice, "set", block("bob@example.com", "carol@remote.net", "dave@remote.net", "evil.net"))
	// bob (subscribed to alice) sees her go; alice no longer sees bob.
	if got := bob.take(); len(got) != 1 || got[0].Attr("type") != "unavailable" || got[0].Attr("from") != "alice@example.com/a" {
		t.Fatalf("bob got %v, want alice's unavailable", got)
	}
	var fromAlice []string
	for _, el := range alice.take() {
		if el.Local == "presence" {
			if el.Attr("type") != "unavailable" {
				t.Errorf("alice got %s", el)
			}
			fromAlice = append(fromAlice, el.Attr("from"))
		}
	}
	slices.Sort(fromAlice)
	if !slices.Equal(fromAlice, []string{"bob@example.com/b", "carol@remote.net"}) {
		t.Fatalf("alice got unavailable from %v, want bob's resource and carol", fromAlice)
	}
	var remoteTo []string
	for _, st := range e.takeRemote() {
		if st.Kind() != "presence" || st.Type() != "unavailable" {
			t.Errorf("remote got %s", st.El)
		}
		remoteTo = append(remoteTo, st.To.String())
	}
	slices.Sort(remoteTo)
	// dave (from) and the blocked MUC occupant got unavailable; carol (to
	// only) and the unblocked directed target did not.
	if !slices.Equal(remoteTo, []string{"dave@remote.net", "troll@evil.net/x"}) {
		t.Fatalf("unavailable sent to %v", remoteTo)
	}
	if r := e.store.requests["alice"]; len(r) != 1 || r[0].From != "ok@fine.net" {
		t.Fatalf("subscription requests after blocking evil.net: %v", r)
	}

	e.result(alice, "set", unblock("bob@example.com", "carol@remote.net"))
	if got := bob.take(); len(got) != 1 || got[0].Attr("type") != "" || got[0].Attr("from") != "alice@example.com/a" || got[0].ChildText(xmpp.NSClient, "show") != "chat" {
		t.Fatalf("bob got %v, want alice's current presence", got)
	}
	// alice probes the contacts she is subscribed to, to see them again.
	e.mu.Lock()
	probes := e.inPres
	e.inPres = nil
	e.mu.Unlock()
	if len(probes) != 1 || probes[0].Type() != "probe" || probes[0].From.String() != "alice@example.com" || probes[0].To.String() != "bob@example.com" {
		t.Fatalf("local probes after unblock: %v", probes)
	}
	remote := e.takeRemote()
	if len(remote) != 1 || remote[0].Type() != "probe" || remote[0].To.String() != "carol@remote.net" {
		t.Fatalf("remote stanzas after unblock: %v", remote)
	}
}

func TestBlockedContactOfflineUserGetsNothing(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	e.result(alice, "set", block("bob@example.com"))
	e.r.Unbind(alice)
	bob := e.bind("bob@example.com/b")
	// The Offline hook fails the test if the message is stored.
	e.send(bob, "<message xmlns='jabber:client' to='alice@example.com' type='chat'><body>hi</body></message>")
	if got := bob.take(); len(got) != 1 || condition(got[0]) != xmpp.CondServiceUnavailable {
		t.Fatalf("bob got %v", got)
	}
}

func TestForget(t *testing.T) {
	e := newEnv(t, Config{})
	alice := e.bind("alice@example.com/a")
	e.result(alice, "set", block("bob@example.com"))
	if !e.svc.Blocks(context.Background(), "alice", jid.MustParse("bob@example.com/x")) {
		t.Fatal("Blocks: bob is not blocked")
	}
	e.store.mu.Lock()
	delete(e.store.lists, "alice") // the account was deleted and created again
	e.store.mu.Unlock()
	e.svc.Forget("alice")
	if e.svc.Blocks(context.Background(), "alice", jid.MustParse("bob@example.com/x")) {
		t.Fatal("Blocks after Forget: the cached list survived")
	}
}

// TestConcurrentEditsAndFilter: resources of one user block and unblock
// in parallel while stanzas are filtered; the cached list must end equal
// to the stored one.
func TestConcurrentEditsAndFilter(t *testing.T) {
	e := newEnv(t, Config{})
	bob := e.bind("bob@example.com/b")
	var wg sync.WaitGroup
	for i := range 8 {
		sess := e.bind("alice@example.com/r" + string(rune('a'+i)))
		target := "u" + string(rune('a'+i)) + "@x.example"
		wg.Go(func() {
			for range 50 {
				e.send(sess, "<iq xmlns='jabber:client' type='set' id='b'>"+block(target)+"</iq>")
				e.send(sess, "<iq xmlns='jabber:client' type='set' id='u'>"+unblock(target)+"</iq>")
			}
			e.send(sess, "<iq xmlns='jabber:client' type='set' id='b'>"+block(target)+"</iq>")
			sess.take()
		})
	}
	wg.Go(func() {
		for range 400 {
			e.send(bob, "<message xmlns='jabber:client' to='alice@example.com' type='chat'><body>x</body></message>")
			e.svc.Forget("alice")
		}
	})
	wg.Wait()
	stored, _ := e.store.Blocklist(context.Background(), "alice")
	cached := e.svc.lookup(context.Background(), "alice")
	slices.Sort(stored)
	got := slices.Clone(cached.items)
	slices.Sort(got)
	if len(stored) != 8 || !slices.Equal(got, stored) {
		t.Fatalf("cached %v, stored %v", got, stored)
	}
}
