package component

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

type recordingSession struct {
	j   jid.JID
	mu  sync.Mutex
	got []*xmpp.Element
}

func (r *recordingSession) JID() jid.JID { return r.j }
func (r *recordingSession) Deliver(el *xmpp.Element) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, el)
}
func (r *recordingSession) Available() (bool, int)      { return true, 0 }
func (r *recordingSession) Presence() *xmpp.Element     { return nil }
func (r *recordingSession) Close(err *xmpp.StreamError) {}

// TestQueuedStanzasBouncedWhenComponentLeaves: stanzas that were queued
// for a component but never written when it disconnected come back to
// their senders as service-unavailable errors instead of vanishing.
func TestQueuedStanzasBouncedWhenComponentLeaves(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	r, err := router.New("example.org", logger)
	if err != nil {
		t.Fatal(err)
	}
	alice := &recordingSession{j: jid.MustParse("alice@example.org/pc")}
	r.Bind(alice)
	svc := New(Config{Router: r, Logger: logger, SendQueue: 8, Secrets: map[string]string{"bot.example.org": "s"}})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newSession(svc, a)
	c.domain = "bot.example.org"
	for _, id := range []string{"m1", "m2"} {
		c.q <- xmpp.NewElement(xmpp.NSClient, "message", "id", id, "type", "chat", "from", "alice@example.org/pc", "to", "bot.example.org")
	}
	c.bounceQueued(context.Background())
	alice.mu.Lock()
	defer alice.mu.Unlock()
	if len(alice.got) != 2 {
		t.Fatalf("alice got %d bounces, want 2", len(alice.got))
	}
	for _, el := range alice.got {
		if el.Attr("type") != "error" || el.Child(xmpp.NSClient, "error").Child(xmpp.NSStanzas, xmpp.CondServiceUnavailable) == nil {
			t.Fatalf("bounce %s", el)
		}
	}
}
