package router

import (
	"context"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

func iqStanza(from, to, typ, id string) *Stanza {
	el := xmpp.NewElement(xmpp.NSClient, "iq", "type", typ, "id", id, "from", from, "to", to)
	if typ == "get" || typ == "set" {
		el.AddChild("urn:test", "q")
	}
	return &Stanza{El: el, From: jid.MustParse(from), To: jid.MustParse(to)}
}

func TestServiceDomainGetsItsStanzas(t *testing.T) {
	e := newEnv(t)
	got := make(chan *Stanza, 1)
	if err := e.r.AddService("push.example.com", func(ctx context.Context, s *Stanza) { got <- s }); err != nil {
		t.Fatal(err)
	}
	if err := e.r.AddService("push.example.com", func(context.Context, *Stanza) {}); err == nil {
		t.Fatal("the same service domain was registered twice")
	}
	if err := e.r.AddService("example.com", func(context.Context, *Stanza) {}); err == nil {
		t.Fatal("the server's own domain was accepted as a service domain")
	}
	e.r.Route(context.Background(), iqStanza("alice@example.com/phone", "push.example.com", "set", "1"))
	select {
	case s := <-got:
		if s.From.String() != "alice@example.com/phone" {
			t.Fatalf("service saw from %s", s.From)
		}
	default:
		t.Fatal("the service did not get the stanza addressed to it")
	}
	if !e.r.IsService("push.example.com") || e.r.IsService("other.example.com") {
		t.Fatal("IsService is wrong")
	}
}

func TestSendIQGetsItsReplyOnly(t *testing.T) {
	e := newEnv(t)
	bob := e.session("bob@example.com/pc", true, 0)
	replies := make(chan *Stanza, 2)
	req := iqStanza("alice@example.com", "bob@example.com/pc", "get", "")
	e.r.SendIQ(context.Background(), req, time.Minute, func(r *Stanza) { replies <- r })
	if bob.count() != 1 {
		t.Fatalf("bob got %d stanzas, want the request", bob.count())
	}
	id := bob.last().Attr("id")
	if id == "" {
		t.Fatal("no id was generated for the request")
	}
	// A reply with the right id from somebody else is not the answer.
	e.r.Route(context.Background(), iqStanza("mallory@example.com/x", "alice@example.com", "result", id))
	// Neither is the right peer answering another requester.
	e.r.Route(context.Background(), iqStanza("bob@example.com/pc", "example.com", "result", id))
	select {
	case r := <-replies:
		t.Fatalf("a forged reply was taken: %v", r.El)
	default:
	}
	e.r.Route(context.Background(), iqStanza("bob@example.com/pc", "alice@example.com", "result", id))
	select {
	case r := <-replies:
		if r == nil || r.Type() != "result" {
			t.Fatalf("reply %v", r)
		}
	default:
		t.Fatal("the real reply did not reach the requester")
	}
	// A second copy of the reply is routed normally, not taken again.
	e.r.Route(context.Background(), iqStanza("bob@example.com/pc", "alice@example.com", "result", id))
	if len(replies) != 0 {
		t.Fatal("done ran twice")
	}
}

func TestSendIQBounceAndTimeout(t *testing.T) {
	e := newEnv(t)
	replies := make(chan *Stanza, 2)
	// To an absent resource: the router bounces, and the bounce is the reply.
	e.r.SendIQ(context.Background(), iqStanza("example.com", "bob@example.com/gone", "get", "x1"), time.Minute, func(r *Stanza) { replies <- r })
	r := <-replies
	if r == nil || r.Type() != "error" {
		t.Fatalf("want an error reply for an absent resource, got %v", r)
	}
	// Nobody answers: done gets nil after the timeout.
	e.session("bob@example.com/silent", true, 0)
	start := time.Now()
	e.r.SendIQ(context.Background(), iqStanza("example.com", "bob@example.com/silent", "get", "x2"), 50*time.Millisecond, func(r *Stanza) { replies <- r })
	select {
	case r := <-replies:
		if r != nil {
			t.Fatalf("want nil on timeout, got %v", r.El)
		}
		if time.Since(start) < 50*time.Millisecond {
			t.Fatal("timed out early")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done never ran after the timeout")
	}
	if n := e.r.iqs.count.Load(); n != 0 {
		t.Fatalf("%d requests still tracked", n)
	}
}
