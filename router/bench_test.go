package router

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

type countingSession struct {
	j jid.JID
	n atomic.Int64
}

func (c *countingSession) JID() jid.JID            { return c.j }
func (c *countingSession) Deliver(*xmpp.Element)   { c.n.Add(1) }
func (c *countingSession) Available() (bool, int)  { return true, 0 }
func (c *countingSession) Presence() *xmpp.Element { return nil }
func (c *countingSession) Close(*xmpp.StreamError) {}

// BenchmarkRouteMessageFullJID routes a chat message between two local
// sessions by full JID (no hooks installed).
func BenchmarkRouteMessageFullJID(b *testing.B) {
	r, _ := New("example.com", slog.New(slog.NewTextHandler(io.Discard, nil)))
	bob := &countingSession{j: jid.MustParse("bob@example.com/phone")}
	r.Bind(bob)
	for i := 0; i < 1000; i++ {
		r.Bind(&countingSession{j: jid.MustParse(fmt.Sprintf("user%d@example.com/r", i))})
	}
	from := jid.MustParse("alice@example.com/desk")
	el := xmpp.NewElement(xmpp.NSClient, "message", "to", "bob@example.com/phone", "type", "chat")
	el.AddChild(xmpp.NSClient, "body").AppendText("hi")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Route(ctx, &Stanza{El: el, From: from, To: bob.j})
		}
	})
}

// BenchmarkRouteMessageBareJID routes to a bare JID with two resources
// (priority selection).
func BenchmarkRouteMessageBareJID(b *testing.B) {
	r, _ := New("example.com", slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Bind(&countingSession{j: jid.MustParse("bob@example.com/phone")})
	r.Bind(&countingSession{j: jid.MustParse("bob@example.com/desk")})
	from := jid.MustParse("alice@example.com/desk")
	to := jid.MustParse("bob@example.com")
	el := xmpp.NewElement(xmpp.NSClient, "message", "to", "bob@example.com", "type", "chat")
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Route(ctx, &Stanza{El: el, From: from, To: to})
	}
}
