package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/adhoc"
	"wren.im/wren/push/provider"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/storage/sqlite"
	"wren.im/wren/xmpp"
)

// waitFor bounds every wait of the tests; it is a failure deadline, not a
// synchronisation delay.
const waitFor = 10 * time.Second

// fakeSession is a bound client session that collects what it is sent.
type fakeSession struct {
	j  jid.JID
	in chan *xmpp.Element
}

func (f *fakeSession) JID() jid.JID                { return f.j }
func (f *fakeSession) Deliver(el *xmpp.Element)    { f.in <- el }
func (f *fakeSession) Available() (bool, int)      { return true, 0 }
func (f *fakeSession) Presence() *xmpp.Element     { return nil }
func (f *fakeSession) Close(err *xmpp.StreamError) {}

// call is one Send seen by a fakeSender.
type call struct {
	push     provider.Push
	at       time.Time
	deadline time.Time
}

// fakeSender is a scriptable provider.Sender: fn decides the result of
// call n (1-based); nil fn delivers everything.
type fakeSender struct {
	name    string
	started chan provider.Push

	mu    sync.Mutex
	calls []call
	fn    func(ctx context.Context, n int, p provider.Push) (string, error)
}

func newFakeSender(name string) *fakeSender {
	return &fakeSender{name: name, started: make(chan provider.Push, 100)}
}

func (f *fakeSender) Name() string { return f.name }

func (f *fakeSender) Send(ctx context.Context, p provider.Push) (string, error) {
	dl, _ := ctx.Deadline()
	f.mu.Lock()
	f.calls = append(f.calls, call{push: p, at: time.Now(), deadline: dl})
	n, fn := len(f.calls), f.fn
	f.mu.Unlock()
	f.started <- p
	if fn == nil {
		return f.name + "-" + p.ID, nil
	}
	return fn(ctx, n, p)
}

func (f *fakeSender) script(fn func(ctx context.Context, n int, p provider.Push) (string, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fn = fn
}

func (f *fakeSender) seen() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// blockUntil returns a script whose calls wait for a value on release
// (delivering) or for their context to end.
func blockUntil(release chan struct{}) func(ctx context.Context, n int, p provider.Push) (string, error) {
	return func(ctx context.Context, n int, p provider.Push) (string, error) {
		select {
		case <-release:
			return "released-" + p.ID, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// fakeMetrics reports every outcome on a channel.
type fakeMetrics struct {
	outcomes chan string // "provider outcome"
	mu       sync.Mutex
	depth    int
}

func (m *fakeMetrics) Pushed(p, outcome string)      { m.outcomes <- p + " " + outcome }
func (m *fakeMetrics) Latency(string, time.Duration) {}
func (m *fakeMetrics) QueueDepth(n int) {
	m.mu.Lock()
	m.depth = n
	m.mu.Unlock()
}

type harness struct {
	t       *testing.T
	r       *router.Router
	store   *sqlite.Store
	g       *Gateway
	fcm     *fakeSender
	apns    *fakeSender
	metrics *fakeMetrics
	phone   *fakeSession
	remote  chan *router.Stanza // stanzas routed to other domains
}

const (
	domain  = "localhost"
	gateway = "push.localhost"
	alice   = "alice@localhost"
)

// newHarness runs a gateway at push.localhost with fake senders for the
// given providers (both when none is given), fast retries and a real
// SQLite store.
func newHarness(t *testing.T, cfg Config, providers ...string) *harness {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := router.New(domain, logger)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, r: r, remote: make(chan *router.Stanza, 100),
		metrics: &fakeMetrics{outcomes: make(chan string, 100)},
		fcm:     newFakeSender(provider.FCM), apns: newFakeSender(provider.APNs)}
	r.SetHooks(router.Hooks{Remote: func(ctx context.Context, s *router.Stanza) { h.remote <- s }})
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "wren.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.store = store
	if len(providers) == 0 {
		providers = []string{provider.APNs, provider.FCM}
	}
	senders := map[string]provider.Sender{}
	for _, p := range providers {
		if p == provider.FCM {
			senders[p] = h.fcm
		} else {
			senders[p] = h.apns
		}
	}
	cfg.Domain = gateway
	if cfg.RetryBase == 0 {
		cfg.RetryBase, cfg.RetryMax = time.Millisecond, 2*time.Millisecond
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = waitFor
	}
	cfg.Metrics = h.metrics
	g, err := New(cfg, r, store, senders, logger)
	if err != nil {
		t.Fatal(err)
	}
	h.g = g
	g.Start()
	t.Cleanup(func() {
		g.Close()
		if err := store.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	h.phone = &fakeSession{j: jid.MustParse(alice + "/phone"), in: make(chan *xmpp.Element, 100)}
	r.Bind(h.phone)
	return h
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// iq routes an IQ from the phone to the gateway and returns the reply.
func (h *harness) iq(typ string, payload *xmpp.Element) *xmpp.Element {
	h.t.Helper()
	el := xmpp.NewElement(xmpp.NSClient, "iq", "type", typ, "id", "q1", "to", gateway, "from", h.phone.j.String())
	el.Append(payload)
	h.r.Route(context.Background(), &router.Stanza{El: el, From: h.phone.j, To: jid.MustParse(gateway), Origin: h.phone})
	select {
	case reply := <-h.phone.in:
		if reply.Attr("id") != "q1" || reply.Attr("from") != gateway || reply.Attr("to") != h.phone.j.String() {
			h.t.Fatalf("reply with wrong addresses: %s", reply)
		}
		return reply
	case <-time.After(waitFor):
		h.t.Fatal("no reply")
		return nil
	}
}

// command executes an ad-hoc command with a submitted form (nil: none).
func (h *harness) command(node, action, sid string, fields map[string]string) *xmpp.Element {
	h.t.Helper()
	cmd := xmpp.NewElement(adhoc.NS, "command", "node", node, "action", action, "sessionid", sid)
	if fields != nil {
		f := &adhoc.Form{Type: adhoc.FormTypeSubmit}
		for k, v := range fields {
			f.Set(k, "", v)
		}
		cmd.Append(f.Element())
	}
	return h.iq("set", cmd)
}

// registration is what a register command returned.
type registration struct{ jid, node, secret string }

// registerFCM registers an Android device the way Conversations does.
func (h *harness) registerFCM(token, androidID string) registration {
	h.t.Helper()
	return h.resultForm(h.command(CmdRegisterFCM, "execute", "", map[string]string{"token": token, "android-id": androidID}))
}

func (h *harness) resultForm(reply *xmpp.Element) registration {
	h.t.Helper()
	if reply.Attr("type") != "result" {
		h.t.Fatalf("registration failed: %s", reply)
	}
	cmd := reply.Child(adhoc.NS, "command")
	if cmd == nil || cmd.Attr("status") != adhoc.StatusCompleted {
		h.t.Fatalf("registration not completed: %s", reply)
	}
	f := adhoc.FindForm(cmd)
	if f == nil {
		h.t.Fatalf("registration without form: %s", reply)
	}
	reg := registration{f.Value("jid"), f.Value("node"), f.Value("secret")}
	if reg.jid != gateway || reg.node == "" || len(reg.secret) < 22 {
		h.t.Fatalf("registration form %+v", reg)
	}
	return reg
}

// summary is the XEP-0357 summary of a notification.
type summary struct {
	count  string
	sender string
	body   string
}

// publishEl builds the pubsub publish of a notification.
func publishEl(node, secret string, s summary) *xmpp.Element {
	ps := xmpp.NewElement(NSPubSub, "pubsub")
	x := ps.AddChild(NSPubSub, "publish", "node", node).AddChild(NSPubSub, "item").
		AddChild(NSPush, "notification").AddChild(xmpp.NSDataForms, "x", "type", "form")
	f := &adhoc.Form{Type: adhoc.FormTypeForm}
	f.Set("FORM_TYPE", adhoc.FieldHidden, NSPushSummary)
	if s.count != "" {
		f.Set("message-count", "", s.count)
	}
	if s.sender != "" {
		f.Set("last-message-sender", "", s.sender)
	}
	if s.body != "" {
		f.Set("last-message-body", "", s.body)
	}
	x.Children = f.Element().Children
	if secret != "" {
		po := &adhoc.Form{Type: adhoc.FormTypeSubmit}
		po.Set("FORM_TYPE", adhoc.FieldHidden, NSPublishOption)
		po.Set("secret", "", secret)
		ps.AddChild(NSPubSub, "publish-options").Append(po.Element())
	}
	return ps
}

// publish sends a notification from a server (the user's bare JID, as
// XEP-0357 servers do) and returns the channel its reply comes on.
func (h *harness) publish(from, node, secret string, s summary) chan *router.Stanza {
	el := xmpp.NewElement(xmpp.NSClient, "iq", "type", "set", "to", gateway, "from", from)
	el.Append(publishEl(node, secret, s))
	ch := make(chan *router.Stanza, 1)
	h.r.SendIQ(context.Background(), &router.Stanza{El: el, From: jid.MustParse(from), To: jid.MustParse(gateway)}, waitFor,
		func(reply *router.Stanza) { ch <- reply })
	return ch
}

// wait returns the reply on ch.
func (h *harness) wait(ch chan *router.Stanza) *router.Stanza {
	h.t.Helper()
	select {
	case r := <-ch:
		if r == nil {
			h.t.Fatal("publish: no reply within the IQ timeout")
		}
		return r
	case <-time.After(waitFor):
		h.t.Fatal("publish: no reply")
		return nil
	}
}

// noReply fails if ch already has a reply.
func (h *harness) noReply(ch chan *router.Stanza) {
	h.t.Helper()
	select {
	case r := <-ch:
		h.t.Fatalf("unexpected reply %s", r.El)
	default:
	}
}

// outcome waits for the next outcome the metrics saw.
func (h *harness) outcome() string {
	h.t.Helper()
	select {
	case o := <-h.metrics.outcomes:
		return o
	case <-time.After(waitFor):
		h.t.Fatal("no push outcome")
		return ""
	}
}

// started waits for the sender to be called.
func (h *harness) started(s *fakeSender) provider.Push {
	h.t.Helper()
	select {
	case p := <-s.started:
		return p
	case <-time.After(waitFor):
		h.t.Fatalf("%s was not called", s.name)
		return provider.Push{}
	}
}

// records returns the delivery records of a node, oldest first.
func (h *harness) records(node string) []storage.PushDelivery {
	h.t.Helper()
	all, err := h.g.Records(context.Background(), storage.PushDeliveryFilter{Owner: alice})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []storage.PushDelivery
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Node == node {
			out = append(out, all[i])
		}
	}
	return out
}

// wantResult checks that a reply is an IQ result.
func wantResult(t *testing.T, r *router.Stanza) {
	t.Helper()
	if r.Type() != "result" {
		t.Fatalf("want result, got %s", r.El)
	}
}

// wantError checks the type and condition of an error reply and returns
// its text.
func wantError(t *testing.T, el *xmpp.Element, typ, cond string) string {
	t.Helper()
	if el.Attr("type") != "error" {
		t.Fatalf("want %s error, got %s", cond, el)
	}
	e := el.Child("", "error")
	if e == nil || e.Attr("type") != typ || e.Child(xmpp.NSStanzas, cond) == nil {
		t.Fatalf("want %s/%s error, got %s", typ, cond, el)
	}
	return e.ChildText(xmpp.NSStanzas, "text")
}
