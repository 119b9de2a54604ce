package router

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

type fakeSession struct {
	j        jid.JID
	avail    bool
	prio     int
	mu       sync.Mutex
	received []*xmpp.Element
	closed   *xmpp.StreamError
}

func (f *fakeSession) JID() jid.JID { return f.j }
func (f *fakeSession) Deliver(el *xmpp.Element) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.received = append(f.received, el)
}
func (f *fakeSession) Available() (bool, int) { return f.avail, f.prio }
func (f *fakeSession) Presence() *xmpp.Element {
	if !f.avail {
		return nil
	}
	return xmpp.NewElement(xmpp.NSClient, "presence")
}
func (f *fakeSession) Close(err *xmpp.StreamError) { f.closed = err }
func (f *fakeSession) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.received)
}
func (f *fakeSession) last() *xmpp.Element {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.received) == 0 {
		return nil
	}
	return f.received[len(f.received)-1]
}

type env struct {
	r       *Router
	offline []*Stanza
	users   map[string]bool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	r, err := New("example.com", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{r: r, users: map[string]bool{"alice": true, "bob": true}}
	r.SetHooks(Hooks{
		Offline: func(ctx context.Context, user string, s *Stanza) *xmpp.StanzaError {
			e.offline = append(e.offline, s)
			return nil
		},
		AccountExists: func(ctx context.Context, user string) bool { return e.users[user] },
	})
	return e
}

func (e *env) session(full string, avail bool, prio int) *fakeSession {
	s := &fakeSession{j: jid.MustParse(full), avail: avail, prio: prio}
	e.r.Bind(s)
	return s
}

func msg(from, to, typ, body string) *Stanza {
	el := xmpp.NewElement(xmpp.NSClient, "message", "from", from, "to", to, "type", typ)
	if body != "" {
		el.AddChild(xmpp.NSClient, "body").AppendText(body)
	}
	return &Stanza{El: el, From: jid.MustParse(from), To: jid.MustParse(to)}
}

func TestMessageToBareGoesToHighestPriority(t *testing.T) {
	e := newEnv(t)
	hi := e.session("bob@example.com/hi", true, 5)
	hi2 := e.session("bob@example.com/hi2", true, 5)
	lo := e.session("bob@example.com/lo", true, 1)
	neg := e.session("bob@example.com/neg", true, -1)
	sender := e.session("alice@example.com/a", true, 0)
	e.r.Route(context.Background(), msg("alice@example.com/a", "bob@example.com", "chat", "hi"))
	if hi.count() != 1 || hi2.count() != 1 || lo.count() != 0 || neg.count() != 0 || sender.count() != 0 {
		t.Fatalf("deliveries hi=%d hi2=%d lo=%d neg=%d sender=%d", hi.count(), hi2.count(), lo.count(), neg.count(), sender.count())
	}
}

func TestMessageToBareOnlyNegativePriorityGoesOffline(t *testing.T) {
	e := newEnv(t)
	neg := e.session("bob@example.com/neg", true, -1)
	e.r.Route(context.Background(), msg("alice@example.com/a", "bob@example.com", "chat", "hi"))
	if neg.count() != 0 || len(e.offline) != 1 {
		t.Fatalf("neg got %d, offline %d", neg.count(), len(e.offline))
	}
}

func TestMessageToAbsentFullJIDTreatedAsBare(t *testing.T) {
	e := newEnv(t)
	other := e.session("bob@example.com/other", true, 0)
	e.r.Route(context.Background(), msg("alice@example.com/a", "bob@example.com/gone", "chat", "hi"))
	if other.count() != 1 {
		t.Fatalf("other resource got %d messages", other.count())
	}
	// Headline to an absent resource is dropped, not stored.
	e.r.Route(context.Background(), msg("alice@example.com/a", "bob@example.com/gone", "headline", "news"))
	if other.count() != 1 || len(e.offline) != 0 {
		t.Fatalf("headline was delivered or stored")
	}
}

func TestIQToAbsentFullJIDGetsServiceUnavailable(t *testing.T) {
	e := newEnv(t)
	alice := e.session("alice@example.com/a", true, 0)
	iq := xmpp.NewElement(xmpp.NSClient, "iq", "type", "get", "id", "q1", "from", "alice@example.com/a", "to", "bob@example.com/gone")
	iq.AddChild("urn:xmpp:ping", "ping")
	e.r.Route(context.Background(), &Stanza{El: iq, From: alice.j, To: jid.MustParse("bob@example.com/gone")})
	got := alice.last()
	if got == nil || got.Attr("type") != "error" || got.Attr("id") != "q1" || got.Child(xmpp.NSClient, "error").Child(xmpp.NSStanzas, "service-unavailable") == nil {
		t.Fatalf("alice got %v", got)
	}
}

func TestNoErrorInReplyToError(t *testing.T) {
	e := newEnv(t)
	alice := e.session("alice@example.com/a", true, 0)
	iq := xmpp.NewElement(xmpp.NSClient, "iq", "type", "error", "id", "q1", "from", "alice@example.com/a", "to", "bob@example.com/gone")
	e.r.Route(context.Background(), &Stanza{El: iq, From: alice.j, To: jid.MustParse("bob@example.com/gone")})
	m := msg("alice@example.com/a", "nobody@example.com", "error", "x")
	e.r.Route(context.Background(), m)
	if alice.count() != 0 {
		t.Fatalf("an error was answered with an error: %v", alice.last())
	}
}

func TestMessageToUnknownUserBounces(t *testing.T) {
	e := newEnv(t)
	alice := e.session("alice@example.com/a", true, 0)
	e.r.Route(context.Background(), msg("alice@example.com/a", "nobody@example.com", "chat", "x"))
	if got := alice.last(); got == nil || got.Attr("type") != "error" {
		t.Fatalf("alice got %v", got)
	}
	if len(e.offline) != 0 {
		t.Fatal("message for an unknown user was stored")
	}
}

func TestRemoteDomainBounced(t *testing.T) {
	e := newEnv(t)
	alice := e.session("alice@example.com/a", true, 0)
	e.r.Route(context.Background(), msg("alice@example.com/a", "x@elsewhere.example", "chat", "x"))
	got := alice.last()
	if got == nil || got.Child(xmpp.NSClient, "error").Child(xmpp.NSStanzas, "remote-server-not-found") == nil {
		t.Fatalf("alice got %v", got)
	}
}

func TestUnknownServerIQNamespace(t *testing.T) {
	e := newEnv(t)
	alice := e.session("alice@example.com/a", true, 0)
	iq := xmpp.NewElement(xmpp.NSClient, "iq", "type", "get", "id", "x", "from", "alice@example.com/a", "to", "example.com")
	iq.AddChild("urn:unknown", "query")
	e.r.Route(context.Background(), &Stanza{El: iq, From: alice.j, To: jid.MustParse("example.com")})
	got := alice.last()
	if got == nil || got.Child(xmpp.NSClient, "error").Child(xmpp.NSStanzas, "service-unavailable") == nil {
		t.Fatalf("alice got %v", got)
	}
}

func TestBindReplacesAndUnbindOnlyCurrent(t *testing.T) {
	e := newEnv(t)
	old := &fakeSession{j: jid.MustParse("bob@example.com/r")}
	if e.r.Bind(old) != nil {
		t.Fatal("first bind replaced something")
	}
	nw := &fakeSession{j: jid.MustParse("bob@example.com/r")}
	if e.r.Bind(nw) != Session(old) {
		t.Fatal("second bind did not return the old session")
	}
	if e.r.Unbind(old) {
		t.Fatal("unbinding the replaced session removed the new one")
	}
	if e.r.Session(jid.MustParse("bob@example.com/r")) != Session(nw) {
		t.Fatal("new session not bound")
	}
	if !e.r.Unbind(nw) || e.r.Count() != 0 {
		t.Fatal("unbind failed")
	}
}

func TestSubscriptionPresenceToUnknownUserIgnored(t *testing.T) {
	e := newEnv(t)
	var got []string
	e.r.SetHooks(Hooks{
		AccountExists: func(ctx context.Context, user string) bool { return e.users[user] },
		InboundPresence: func(ctx context.Context, s *Stanza) bool {
			got = append(got, s.To.String()+" "+s.Type())
			return true
		},
	})
	alice := e.session("alice@example.com/a", true, 0)
	for _, to := range []string{"nobody@example.com", "nobody@example.com/r", "bob@example.com"} {
		for _, typ := range []string{"subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"} {
			p := xmpp.NewElement(xmpp.NSClient, "presence", "from", "alice@example.com", "to", to, "type", typ)
			e.r.Route(context.Background(), &Stanza{El: p, From: jid.MustParse("alice@example.com"), To: jid.MustParse(to)})
		}
	}
	// RFC 6121 §8.5.1: nothing reaches the presence feature for the
	// missing account, and nothing comes back; bob's are handled.
	if len(got) != 5 {
		t.Fatalf("hook saw %v, want bob's five stanzas only", got)
	}
	for _, g := range got {
		if !strings.HasPrefix(g, "bob@example.com ") {
			t.Fatalf("hook saw %v", got)
		}
	}
	if alice.count() != 0 {
		t.Fatalf("alice got %v", alice.last())
	}
}
