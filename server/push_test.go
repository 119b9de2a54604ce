package server

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/c2s"
	"wren.im/wren/config"
	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// fakeAppServer is an XEP-0357 app server living at a service domain of
// the test server's router: it records the notifications published to it
// and answers them as the test scripts.
type fakeAppServer struct {
	r      *router.Router
	domain string

	mu      sync.Mutex
	got     []*router.Stanza
	answers []string // "result", or an error "type/condition"; the last repeats
	seen    chan struct{}
}

func newFakeAppServer(t *testing.T, ts *testServer, domain string) *fakeAppServer {
	t.Helper()
	a := &fakeAppServer{r: ts.router, domain: domain, answers: []string{"result"}, seen: make(chan struct{}, 100)}
	if err := ts.router.AddService(domain, a.handle); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *fakeAppServer) script(answers ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answers = answers
}

func (a *fakeAppServer) handle(ctx context.Context, st *router.Stanza) {
	a.mu.Lock()
	a.got = append(a.got, st)
	answer := a.answers[0]
	if len(a.answers) > 1 {
		a.answers = a.answers[1:]
	}
	a.mu.Unlock()
	var reply *xmpp.Element
	if answer == "result" {
		reply = xmpp.NewElement(xmpp.NSClient, "iq", "type", "result", "id", st.El.Attr("id"))
	} else {
		typ, cond, _ := strings.Cut(answer, "/")
		reply = xmpp.ErrorReply(st.El, &xmpp.StanzaError{Type: typ, Condition: cond})
	}
	reply.SetAttr("from", st.To.String())
	reply.SetAttr("to", st.From.String())
	a.r.Route(ctx, &router.Stanza{El: reply, From: st.To, To: st.From})
	a.seen <- struct{}{}
}

// next waits for the next notification.
func (a *fakeAppServer) next(t *testing.T) *router.Stanza {
	t.Helper()
	select {
	case <-a.seen:
	case <-time.After(waitTimeout):
		t.Fatal("no push notification reached the app server")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[len(a.got)-1]
}

// none fails if a notification arrives within d.
func (a *fakeAppServer) none(t *testing.T, d time.Duration, why string) {
	t.Helper()
	select {
	case <-a.seen:
		a.mu.Lock()
		defer a.mu.Unlock()
		t.Fatalf("unexpected push notification (%s): %s", why, a.got[len(a.got)-1].El)
	case <-time.After(d):
	}
}

// summaryField returns a field of the notification's summary form.
func summaryField(t *testing.T, st *router.Stanza, name string) string {
	t.Helper()
	pub := st.El.Child("http://jabber.org/protocol/pubsub", "pubsub")
	if pub == nil {
		t.Fatalf("notification without <pubsub/>: %s", st.El)
	}
	n := pub.Child("http://jabber.org/protocol/pubsub", "publish").
		Child("http://jabber.org/protocol/pubsub", "item").
		Child("urn:xmpp:push:0", "notification")
	if n == nil {
		t.Fatalf("notification without <notification/>: %s", st.El)
	}
	for _, f := range n.Child(xmpp.NSDataForms, "x").Elements() {
		if f.Attr("var") == name {
			return f.ChildText(xmpp.NSDataForms, "value")
		}
	}
	return ""
}

const pushEnable = `<enable xmlns='urn:xmpp:push:0' jid='apps.localhost' node='node-1'>` +
	`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
	`<field var='secret'><value>s3cret</value></field></x></enable>`

func TestPushEnableValidation(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	bob := ts.online(t, "bob", "phone")
	bob.iqError("set", "", `<enable xmlns='urn:xmpp:push:0' node='n'/>`, xmpp.CondBadRequest)
	bob.iqError("set", "", `<enable xmlns='urn:xmpp:push:0' jid='apps.localhost'/>`, xmpp.CondBadRequest)
	bob.iqError("set", "", `<enable xmlns='urn:xmpp:push:0' jid='apps.localhost' node='n'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x></enable>`, xmpp.CondBadRequest)
	bob.iqError("get", "", `<enable xmlns='urn:xmpp:push:0' jid='apps.localhost' node='n'/>`, xmpp.CondBadRequest)
	// Nobody enables push for somebody else's account.
	alice := ts.online(t, "alice", "pc")
	alice.iqError("set", "bob@localhost", pushEnable, xmpp.CondForbidden)
	// The account advertises the feature.
	info := bob.result("get", "bob@localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	found := false
	for _, f := range info.Child(xmpp.NSDiscoInfo, "query").Elements() {
		if f.Local == "feature" && f.Attr("var") == "urn:xmpp:push:0" {
			found = true
		}
	}
	if !found {
		t.Fatalf("account disco#info does not advertise urn:xmpp:push:0: %s", info)
	}
	regs, err := ts.store.PushRegistrations(context.Background(), "bob")
	if err != nil || len(regs) != 0 {
		t.Fatalf("refused enables stored registrations: %v %v", regs, err)
	}
}

func TestPushWhenOffline(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	app := newFakeAppServer(t, ts, "apps.localhost")
	alice := ts.online(t, "alice", "pc")

	bob := ts.online(t, "bob", "phone")
	bob.result("set", "", pushEnable)
	// A live device needs no push.
	alice.message("bob@localhost", "hello")
	bob.expectMessage(alice.jid, "hello")
	app.none(t, 300*time.Millisecond, "the device is online")
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")

	alice.message("bob@localhost", "are you there?")
	n := app.next(t)
	if n.From.String() != "bob@localhost" || n.El.Attr("type") != "set" {
		t.Fatalf("notification must be published from the user's bare JID: %s", n.El)
	}
	if node := n.El.Child("http://jabber.org/protocol/pubsub", "pubsub").Child("http://jabber.org/protocol/pubsub", "publish").Attr("node"); node != "node-1" {
		t.Fatalf("published to node %q", node)
	}
	opts := n.El.Child("http://jabber.org/protocol/pubsub", "pubsub").Child("http://jabber.org/protocol/pubsub", "publish-options")
	if opts == nil || !containsText(opts, "s3cret") {
		t.Fatalf("the publish-options form with the secret is missing: %s", n.El)
	}
	if got := summaryField(t, n, "message-count"); got != "1" {
		t.Fatalf("message-count %q", got)
	}
	// Defaults reveal neither the sender nor the text.
	if s := summaryField(t, n, "last-message-sender"); s != "" {
		t.Fatalf("sender revealed by default: %q", s)
	}
	if b := summaryField(t, n, "last-message-body"); b != "New message" {
		t.Fatalf("last-message-body %q, want the placeholder", b)
	}
	// The rest of the burst wakes nobody again.
	alice.message("bob@localhost", "hello?")
	alice.message("bob@localhost", "hello??")
	app.none(t, 300*time.Millisecond, "the device was already woken for this burst")

	// The device comes back (gets its messages), leaves; the next message wakes it again.
	bob = ts.connect(t, "bob", "phone")
	bob.roster()
	bob.available("")
	for _, body := range []string{"are you there?", "hello?", "hello??"} {
		bob.expectMessage(alice.jid, body)
	}
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	alice.message("bob@localhost", "again")
	if n := app.next(t); summaryField(t, n, "message-count") != "1" {
		t.Fatalf("the count did not restart: %s", n.El)
	}

	// Disable stops pushes.
	bob = ts.connect(t, "bob", "phone")
	bob.result("set", "", `<disable xmlns='urn:xmpp:push:0' jid='apps.localhost' node='node-1'/>`)
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	alice.message("bob@localhost", "after disable")
	app.none(t, 300*time.Millisecond, "push was disabled")
}

// waitGone waits until a session has left the router (a closed stream is
// torn down asynchronously).
func (ts *testServer) waitGone(t *testing.T, full string) {
	t.Helper()
	j := jid.MustParse(full)
	waitFor(t, full+" to go offline", func() bool { return ts.router.Session(j) == nil })
}

func containsText(el *xmpp.Element, s string) bool {
	if el.Text() == s {
		return true
	}
	for _, c := range el.Elements() {
		if containsText(c, s) {
			return true
		}
	}
	return false
}

func TestPushSenderAndBodyWhenConfigured(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.Push.IncludeSender = true
		c.Push.IncludeBody = true
	})
	ts.users(t, "alice", "bob")
	app := newFakeAppServer(t, ts, "apps.localhost")
	bob := ts.connect(t, "bob", "phone")
	bob.result("set", "", pushEnable)
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	alice := ts.online(t, "alice", "pc")
	alice.message("bob@localhost", "the text")
	n := app.next(t)
	if s := summaryField(t, n, "last-message-sender"); s != "alice@localhost" {
		t.Fatalf("sender %q", s)
	}
	if b := summaryField(t, n, "last-message-body"); b != "the text" {
		t.Fatalf("body %q", b)
	}
	// A subscription request is pushed too, once the burst is over.
	bob = ts.connect(t, "bob", "phone")
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	alice.send(`<presence type='subscribe' to='bob@localhost'/>`)
	if n := app.next(t); summaryField(t, n, "pending-subscription-count") != "1" {
		t.Fatalf("subscription request push: %s", n.El)
	}
}

func TestPushErrorsDisableRegistration(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.Push.MaxErrors = 2
		c.Push.RetryInterval = config.Duration{Duration: 50 * time.Millisecond}
	})
	ts.users(t, "alice", "bob")
	app := newFakeAppServer(t, ts, "apps.localhost")
	bob := ts.connect(t, "bob", "phone")
	bob.result("set", "", pushEnable)
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	alice := ts.online(t, "alice", "pc")
	regs := func() int {
		r, err := ts.store.PushRegistrations(context.Background(), "bob")
		if err != nil {
			t.Fatal(err)
		}
		return len(r)
	}

	// A "wait" error does not count, and the notification is sent again
	// after push.retry_interval without another message.
	app.script("wait/resource-constraint", "cancel/not-acceptable", "result")
	alice.message("bob@localhost", "1")
	app.next(t)
	app.next(t) // the retry: not-acceptable, one error
	waitFor(t, "the error to be counted", func() bool {
		r, _ := ts.store.PushRegistrations(context.Background(), "bob")
		return len(r) == 1 && r[0].Errors == 1
	})
	alice.message("bob@localhost", "2")
	app.next(t) // message 2: success resets the count
	waitFor(t, "the error count to reset", func() bool {
		r, _ := ts.store.PushRegistrations(context.Background(), "bob")
		return len(r) == 1 && r[0].Errors == 0
	})

	// Two errors in a row disable the registration.
	bob = ts.connect(t, "bob", "phone")
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	app.script("cancel/not-acceptable")
	alice.message("bob@localhost", "4")
	app.next(t)
	alice.message("bob@localhost", "5")
	app.next(t)
	waitFor(t, "the registration to be disabled", func() bool { return regs() == 0 })
	alice.message("bob@localhost", "6")
	app.none(t, 300*time.Millisecond, "the registration was disabled")

	// item-not-found (the app server forgot the device) disables at once.
	bob = ts.connect(t, "bob", "phone")
	bob.result("set", "", pushEnable)
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	app.script("cancel/item-not-found")
	alice.message("bob@localhost", "7")
	app.next(t)
	waitFor(t, "the registration to be disabled after item-not-found", func() bool { return regs() == 0 })
}

func TestPushHibernatedSession(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.StreamManagement.ResumeTimeout = config.Duration{Duration: time.Minute}
		c.Push.HibernateTimeout = config.Duration{Duration: time.Hour}
	})
	ts.users(t, "alice", "bob")
	app := newFakeAppServer(t, ts, "apps.localhost")
	alice := ts.online(t, "alice", "pc")
	bob := ts.online(t, "bob", "phone")
	bob.send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	bob.expect("sm enabled", func(el *xmpp.Element) bool { return el.Is(xmpp.NSSM, "enabled") })
	bob.result("set", "", pushEnable)
	bob.conn.Close() // the network drops: the session hibernates

	full := jid.MustParse("bob@localhost/phone")
	var sess *c2s.Session
	waitFor(t, "the session to hibernate", func() bool {
		s, ok := ts.router.Session(full).(*c2s.Session)
		sess = s
		return ok && s.Hibernated()
	})
	if _, timeout := sess.HibernatedFor(); timeout != time.Hour {
		t.Fatalf("a push-enabled session hibernates for %s, want push.hibernate_timeout (1h)", timeout)
	}
	// A presence update is not worth a push; a message is.
	alice.send(`<presence><show>away</show></presence>`)
	app.none(t, 300*time.Millisecond, "presence only")
	alice.message("bob@localhost", "wake up")
	n := app.next(t)
	if summaryField(t, n, "last-message-body") != "New message" {
		t.Fatalf("an important message must carry the placeholder body: %s", n.El)
	}
	// After the first important push the normal resume timeout applies.
	waitFor(t, "the hibernation to be shortened", func() bool {
		since, timeout := sess.HibernatedFor()
		return timeout > 0 && timeout <= since+time.Minute
	})
	alice.message("bob@localhost", "still there?")
	app.none(t, 300*time.Millisecond, "one push per burst")
}

// TestPushWhileAnotherResourceOnline: a message delivered to the user's
// desktop (and archived) still wakes the phone, which has no session and
// will fetch it from the archive; a receipt alone does not.
func TestPushWhileAnotherResourceOnline(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	app := newFakeAppServer(t, ts, "apps.localhost")
	alice := ts.online(t, "alice", "pc")
	bob := ts.connect(t, "bob", "phone")
	bob.result("set", "", pushEnable)
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	desk := ts.online(t, "bob", "desk")

	alice.send(`<message type='chat' to='bob@localhost'><received xmlns='urn:xmpp:receipts' id='x'/></message>`)
	app.none(t, 300*time.Millisecond, "a receipt is not worth waking a phone whose user is at the desk")
	alice.message("bob@localhost", "seen at the desk")
	desk.expectMessage(alice.jid, "seen at the desk")
	if n := app.next(t); summaryField(t, n, "message-count") != "1" {
		t.Fatalf("notification %s", n.El)
	}
}
