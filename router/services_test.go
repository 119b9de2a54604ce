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

func TestFilterSeesEachStanzaOnceAndBouncesPass(t *testing.T) {
	e := newEnv(t)
	bob := e.session("bob@example.com/pc", true, 0)
	alice := e.session("alice@example.com/phone", true, 0)
	seen := 0
	e.r.SetFilter(func(ctx context.Context, s *Stanza) bool {
		seen++
		// Block everything from alice to bob, bouncing it.
		if s.From.Bare().String() == "alice@example.com" && s.To.Bare().String() == "bob@example.com" {
			e.r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondNotAcceptable, ""))
			return true
		}
		return false
	})
	msg := &Stanza{El: xmpp.NewElement(xmpp.NSClient, "message", "type", "chat", "from", "alice@example.com/phone", "to", "bob@example.com"),
		From: jid.MustParse("alice@example.com/phone"), To: jid.MustParse("bob@example.com")}
	if !e.r.Filter(context.Background(), msg) {
		t.Fatal("the filter did not consume the message")
	}
	e.r.Route(context.Background(), msg) // already filtered: not seen again
	if seen != 1 {
		t.Fatalf("filter ran %d times, want 1", seen)
	}
	if bob.count() != 1 {
		// Route delivered it since Filtered was set; that is the caller's
		// contract (c2s stops after a consumed Filter).
		t.Fatalf("bob got %d", bob.count())
	}
	if alice.count() != 1 || alice.last().Attr("type") != "error" {
		t.Fatalf("alice did not get the bounce through the filter: %d", alice.count())
	}
}

func TestPresenceInRunsForAvailableAndUnavailableOnly(t *testing.T) {
	e := newEnv(t)
	e.session("bob@example.com/pc", true, 0)
	var got []string
	e.r.AddPresenceIn(func(ctx context.Context, s *Stanza) { got = append(got, s.Type()+">"+s.To.String()) })
	for _, typ := range []string{"", "unavailable", "subscribe", "probe"} {
		el := xmpp.NewElement(xmpp.NSClient, "presence", "from", "alice@example.com/phone", "to", "bob@example.com")
		if typ != "" {
			el.SetAttr("type", typ)
		}
		e.r.Route(context.Background(), &Stanza{El: el, From: jid.MustParse("alice@example.com/phone"), To: jid.MustParse("bob@example.com")})
	}
	el := xmpp.NewElement(xmpp.NSClient, "presence", "from", "alice@example.com/phone", "to", "bob@example.com/pc")
	e.r.Route(context.Background(), &Stanza{El: el, From: jid.MustParse("alice@example.com/phone"), To: jid.MustParse("bob@example.com/pc")})
	want := []string{">bob@example.com", "unavailable>bob@example.com", ">bob@example.com/pc"}
	if len(got) != len(want) {
		t.Fatalf("PresenceIn saw %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("PresenceIn saw %v, want %v", got, want)
		}
	}
}

func TestSetHooksKeepsFeatureHooks(t *testing.T) {
	e := newEnv(t) // installs Offline and AccountExists
	var order []string
	e.r.AddMessageIn(func(ctx context.Context, s *Stanza) bool { order = append(order, "feature"); return false })
	e.r.SetHooks(Hooks{MessageIn: []func(context.Context, *Stanza) bool{
		func(ctx context.Context, s *Stanza) bool { order = append(order, "core"); return false },
	}})
	msg := &Stanza{El: xmpp.NewElement(xmpp.NSClient, "message", "type", "chat"), From: jid.MustParse("bob@example.com/x"), To: jid.MustParse("alice@example.com")}
	e.r.Route(context.Background(), msg)
	if len(order) != 2 || order[0] != "feature" || order[1] != "core" {
		t.Fatalf("MessageIn hooks ran %v, want the feature's and then the core's", order)
	}
	// The earlier Offline hook is still installed: alice is offline.
	if len(e.offline) != 1 {
		t.Fatalf("offline got %d, want the message", len(e.offline))
	}
}
