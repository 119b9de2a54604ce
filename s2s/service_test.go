package s2s

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/s2s/s2stest"
	"wren.im/wren/xmpp"
)

// session is a router.Session that hands delivered stanzas to a channel.
type session struct {
	j  jid.JID
	in chan *xmpp.Element
}

func (s *session) JID() jid.JID             { return s.j }
func (s *session) Deliver(el *xmpp.Element) { s.in <- el }
func (s *session) Available() (bool, int)   { return true, 0 }
func (s *session) Presence() *xmpp.Element  { return nil }
func (s *session) Close(*xmpp.StreamError)  {}
func newSession(full string) *session {
	return &session{j: jid.MustParse(full), in: make(chan *xmpp.Element, 16)}
}

type node struct {
	svc    *Service
	router *router.Router
	user   *session
}

// startNode runs a federation service for domain with a certificate from
// ca, and one user session user@domain/res; bidi turns XEP-0288 on.
func startNode(t *testing.T, domain string, ca *s2stest.CA, dns *s2stest.DNS, bidi bool) (*node, map[bool]string) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	r, err := router.New(domain, logger)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.Issue(domain)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := LoadRoots(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{
		Domain:            domain,
		Certificate:       func() *tls.Certificate { return &cert },
		Roots:             roots,
		RequireTLS:        true,
		RequireValidCerts: true,
		Bidi:              bidi,
		Limits:            xmpp.Limits{MaxBytes: 65536, MaxDepth: 32, MaxAttrs: 64},
		NegotiateTimeout:  10 * time.Second,
		Resolver:          dns.Resolver(),
		HostResolver:      dns.Resolver(),
		Router:            r,
		Logger:            logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.SetRemote(svc.Route)
	n := &node{svc: svc, router: r, user: newSession("user@" + domain + "/res")}
	r.Bind(n.user)
	ports := map[bool]string{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	started := 0
	for _, direct := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, ports[direct], _ = net.SplitHostPort(ln.Addr().String())
		started++
		go func() {
			svc.Serve(ctx, ln, direct)
			done <- struct{}{}
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range started {
			<-done
		}
		svc.Close()
	})
	return n, ports
}

// TestDirectTLSBySRV: a domain that publishes only _xmpps-server._tcp is
// reached over direct TLS (XEP-0368), found through SRV and A records.
// Without bidirectional streams the answer comes back over a stream of
// its own, with them over the same one.
func TestDirectTLSBySRV(t *testing.T) {
	for _, bidi := range []bool{false, true} {
		t.Run(fmt.Sprintf("bidi %t", bidi), func(t *testing.T) { testDirectTLSBySRV(t, bidi) })
	}
}

func testDirectTLSBySRV(t *testing.T, bidi bool) {
	ca, err := s2stest.NewCA(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	dns, err := s2stest.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	a, aPorts := startNode(t, "a.example", ca, dns, bidi)
	b, bPorts := startNode(t, "b.example", ca, dns, bidi)
	port := func(s string) uint16 { p, _ := strconv.Atoi(s); return uint16(p) }
	// b: direct TLS only, on a host name of its own; a: STARTTLS.
	dns.SetSRV("_xmpps-server._tcp.b.example", s2stest.SRV{Priority: 1, Weight: 1, Port: port(bPorts[true]), Target: "xmpp.b.example"})
	dns.SetA("xmpp.b.example", "127.0.0.1")
	dns.SetSRV("_xmpp-server._tcp.a.example", s2stest.SRV{Priority: 1, Weight: 1, Port: port(aPorts[false]), Target: "a.example"})
	dns.SetA("a.example", "127.0.0.1")

	ctx := context.Background()
	msg := xmpp.NewElement(xmpp.NSClient, "message", "from", "user@a.example/res", "to", "user@b.example/res", "type", "chat")
	msg.AddChild(xmpp.NSClient, "body").AppendText("over direct TLS")
	a.router.Route(ctx, &router.Stanza{El: msg, From: a.user.j, To: b.user.j})
	select {
	case el := <-b.user.in:
		if el.ChildText(xmpp.NSClient, "body") != "over direct TLS" || el.Attr("from") != "user@a.example/res" {
			t.Fatalf("b received %s", el)
		}
	case el := <-a.user.in:
		t.Fatalf("a's user got %s", el)
	case <-time.After(10 * time.Second):
		t.Fatal("the message did not arrive")
	}
	want := Stream{Local: "a.example", Remote: "b.example", Auth: "SASL EXTERNAL", Bidi: bidi}
	if st := a.svc.Status(); len(st.Outgoing) != 1 || st.Outgoing[0] != want {
		t.Errorf("a's outgoing streams: %+v, want %+v", st.Outgoing, want)
	}
	want = Stream{Local: "b.example", Remote: "a.example", Auth: "SASL EXTERNAL", Bidi: bidi}
	if st := b.svc.Status(); len(st.Incoming) != 1 || st.Incoming[0] != want {
		t.Errorf("b's incoming streams: %+v, want %+v", st.Incoming, want)
	}
	// The answer goes the other way: over STARTTLS, or over the same
	// stream when it is bidirectional.
	reply := xmpp.NewElement(xmpp.NSClient, "message", "from", "user@b.example/res", "to", "user@a.example/res", "type", "chat")
	reply.AddChild(xmpp.NSClient, "body").AppendText("back")
	b.router.Route(ctx, &router.Stanza{El: reply, From: b.user.j, To: a.user.j})
	select {
	case el := <-a.user.in:
		if el.ChildText(xmpp.NSClient, "body") != "back" || el.Attr("from") != "user@b.example/res" {
			t.Fatalf("a received %s", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reply did not arrive")
	}
	wantOut := 1
	if bidi {
		wantOut = 0
	}
	if st := b.svc.Status(); len(st.Outgoing) != wantOut {
		t.Errorf("b's outgoing streams: %+v, want %d", st.Outgoing, wantOut)
	}
	if st := a.svc.Status(); len(st.Incoming) != wantOut {
		t.Errorf("a's incoming streams: %+v, want %d", st.Incoming, wantOut)
	}
}
