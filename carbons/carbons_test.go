package carbons

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

func parse(t *testing.T, s string) *xmpp.Element {
	t.Helper()
	el, err := xmpp.ParseElement([]byte(s))
	if err != nil {
		t.Fatalf("ParseElement(%s): %v", s, err)
	}
	return el
}

func TestEligible(t *testing.T) {
	tests := []struct {
		msg  string
		want bool
	}{
		{`<message type='chat'><body>hi</body></message>`, true},
		{`<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, true},
		{`<message><body>hi</body></message>`, true},
		{`<message type='normal'><body>hi</body></message>`, true},
		{`<message><received xmlns='urn:xmpp:receipts' id='1'/></message>`, false},
		{`<message type='headline'><body>hi</body></message>`, false},
		{`<message type='groupchat'><body>hi</body></message>`, false},
		{`<message type='error'><body>hi</body></message>`, false},
		{`<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>`, false},
		{`<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><body>hi</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>`, false},
		{`<message type='chat'><sent xmlns='urn:xmpp:carbons:2'/></message>`, false},
		{`<message><result xmlns='urn:xmpp:mam:2'/></message>`, false},
	}
	for _, tt := range tests {
		el := parse(t, "<message xmlns='jabber:client'"+tt.msg[len("<message"):])
		if got := Eligible(el); got != tt.want {
			t.Errorf("Eligible(%s) = %v, want %v", tt.msg, got, tt.want)
		}
	}
}

// fakeSession is a bound session that records what it is given.
type fakeSession struct {
	jid jid.JID
	mu  sync.Mutex
	got []*xmpp.Element
}

func (f *fakeSession) JID() jid.JID { return f.jid }
func (f *fakeSession) Deliver(el *xmpp.Element) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, el)
}
func (f *fakeSession) Available() (bool, int)      { return true, 0 }
func (f *fakeSession) Presence() *xmpp.Element     { return nil }
func (f *fakeSession) Close(_ *xmpp.StreamError)   {}
func (f *fakeSession) take() (out []*xmpp.Element) { f.got, out = nil, f.got; return out }

func setup(t *testing.T, resources ...string) (*Service, *router.Router, map[string]*fakeSession) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := router.New("example.org", logger)
	if err != nil {
		t.Fatal(err)
	}
	s := New(r, logger)
	sessions := map[string]*fakeSession{}
	for _, res := range resources {
		f := &fakeSession{jid: jid.MustParse("alice@example.org/" + res)}
		r.Bind(f)
		sessions[res] = f
	}
	return s, r, sessions
}

func TestReceivedCopies(t *testing.T) {
	s, _, sess := setup(t, "phone", "desk", "tab")
	s.set(sess["desk"].jid, true)
	s.set(sess["tab"].jid, true)
	s.set(sess["tab"].jid, true)
	if !s.Enabled(sess["desk"].jid) || s.Enabled(sess["phone"].jid) {
		t.Fatal("enabled state")
	}
	ctx := context.Background()
	route := func(msg string, to ...router.Session) *router.Stanza {
		st := &router.Stanza{El: parse(t, msg), From: jid.MustParse("bob@example.org/pc"), To: jid.MustParse("alice@example.org/phone")}
		s.MessageIn(ctx, st)
		s.MessageDelivered(ctx, st, to)
		return st
	}
	route(`<message xmlns='jabber:client' type='chat' from='bob@example.org/pc' to='alice@example.org/phone'><body>hi</body></message>`, sess["phone"], sess["tab"])
	got := sess["desk"].take()
	if len(got) != 1 || got[0].Attr("from") != "alice@example.org" || got[0].Attr("to") != "alice@example.org/desk" ||
		got[0].Child(NS, "received").Child(nsForward, "forwarded").Child(xmpp.NSClient, "message").ChildText(xmpp.NSClient, "body") != "hi" {
		t.Fatalf("desk got %v", got)
	}
	if n := len(sess["tab"].take()) + len(sess["phone"].take()); n != 0 {
		t.Fatalf("%d copies to resources that got the message", n)
	}

	// <private/> is removed from the delivered message, and nothing is copied.
	st := route(`<message xmlns='jabber:client' type='chat'><body>p</body><private xmlns='urn:xmpp:carbons:2'/></message>`, sess["phone"])
	if st.El.Child(NS, "private") != nil || len(sess["desk"].take()) != 0 {
		t.Fatalf("private: delivered %s", st.El)
	}
	// A claimed stanza-id that survives the archive's hook marks a
	// message routed a second time: not copied again. Here no archive
	// hook runs, so the claimed id stays.
	route(`<message xmlns='jabber:client' type='chat'><body>again</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.org' id='x'/></message>`, sess["phone"])
	if n := len(sess["desk"].take()); n != 0 {
		t.Fatalf("a message routed again was copied %d times", n)
	}
	if len(s.notes) != 0 {
		t.Fatalf("%d notes left behind", len(s.notes))
	}

	// Disabled: no more copies.
	s.set(sess["desk"].jid, false)
	s.set(sess["tab"].jid, false)
	route(`<message xmlns='jabber:client' type='chat'><body>off</body></message>`, sess["phone"])
	if n := len(sess["desk"].take()) + len(sess["tab"].take()); n != 0 {
		t.Fatalf("%d copies after disable", n)
	}
	if len(s.enabled) != 0 {
		t.Fatalf("state left for alice: %v", s.enabled)
	}
}

func TestNotesOfConsumedMessagesExpire(t *testing.T) {
	s, _, _ := setup(t)
	ctx := context.Background()
	for range 3000 {
		st := &router.Stanza{
			El: parse(t, `<message xmlns='jabber:client' type='chat'><body>p</body><private xmlns='urn:xmpp:carbons:2'/></message>`),
			To: jid.MustParse("alice@example.org"),
		}
		s.MessageIn(ctx, st) // never delivered: a later hook consumed it
	}
	// Recent notes are kept (they may still be delivered); the map does
	// not grow without bound once they are old.
	for k, v := range s.notes {
		v.at = v.at.Add(-2 * noteTTL)
		s.notes[k] = v
	}
	st := &router.Stanza{El: parse(t, `<message xmlns='jabber:client' type='chat'><private xmlns='urn:xmpp:carbons:2'/></message>`), To: jid.MustParse("alice@example.org")}
	s.MessageIn(ctx, st)
	if len(s.notes) != 1 {
		t.Fatalf("%d notes kept, want 1", len(s.notes))
	}
}
