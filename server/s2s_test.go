package server

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"wren.im/wren/component"
	"wren.im/wren/config"
	"wren.im/wren/s2s"
	"wren.im/wren/s2s/s2stest"
	"wren.im/wren/xmpp"
)

// loopbackS2S returns an address on a loopback IP of its own with the
// standard s2s port, so that two in-process servers can name each other's
// address before either starts.
func loopbackS2S(t *testing.T) string {
	t.Helper()
	for range 50 {
		n, _ := rand.Int(rand.Reader, big.NewInt(250*250*250))
		i := int(n.Int64())
		addr := fmt.Sprintf("127.%d.%d.%d:5269", 2+i/62500, 2+i/250%250, 2+i%250)
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free loopback address for s2s")
	return ""
}

// fedServer is one side of a federation test.
type fedServer struct {
	*testServer
	domain, s2sAddr string
}

// connectAt logs user in at this server's domain.
func (fs *fedServer) online(t *testing.T, user, resource string) *imClient {
	t.Helper()
	rc := dialRaw(t, fs.addr())
	j := rc.login(fs.domain, user, password, resource)
	c := &imClient{rawClient: rc, jid: j, bare: user + "@" + fs.domain}
	c.roster()
	c.available("")
	return c
}

// startFederated starts servers for a.example and b.example that reach
// each other over loopback; mutate adjusts either configuration.
func startFederated(t *testing.T, mutate func(domain string, c *config.Config)) (a, b *fedServer) {
	t.Helper()
	a = &fedServer{domain: "a.example", s2sAddr: loopbackS2S(t)}
	b = &fedServer{domain: "b.example", s2sAddr: loopbackS2S(t)}
	for _, fs := range []*fedServer{a, b} {
		other := b
		if fs == b {
			other = a
		}
		fs.testServer = startTestServer(t, func(c *config.Config) {
			c.Domain = fs.domain
			c.PushGateway.Enabled = false
			c.S2S.Listen = fs.s2sAddr
			c.S2S.Addresses = map[string]string{other.domain: other.s2sAddr}
			c.S2S.NegotiateTimeout = config.Duration{Duration: 10 * time.Second}
			if mutate != nil {
				mutate(fs.domain, c)
			}
		})
		fs.users(t, "alice", "bob")
	}
	return a, b
}

func isErrorFrom(from, cond string) func(*xmpp.Element) bool {
	return func(el *xmpp.Element) bool {
		return el.Attr("type") == "error" && el.Attr("from") == from && errorCondition(el) == cond
	}
}

// federate runs the subscription handshake, presence and messages both
// ways between alice@a and bob@b.
func federate(t *testing.T, a, b *fedServer) {
	t.Helper()
	alice := a.online(t, "alice", "phone")
	bob := b.online(t, "bob", "laptop")
	aliceBare, bobBare := "alice@a.example", "bob@b.example"

	alice.send(`<presence type='subscribe' to='` + bobBare + `'/>`)
	alice.expectPushState(bobBare, "none", "subscribe")
	bob.expect("subscription request from alice", isPresence(aliceBare, "subscribe"))
	bob.send(`<presence type='subscribed' to='` + aliceBare + `'/>`)
	alice.expectPushState(bobBare, "to", "")
	alice.expect("bob's presence after approval", isPresence(bob.jid, ""))

	bob.send(`<presence type='subscribe' to='` + aliceBare + `'/>`)
	alice.expect("subscription request from bob", isPresence(bobBare, "subscribe"))
	alice.send(`<presence type='subscribed' to='` + bobBare + `'/>`)
	bob.expectPushState(aliceBare, "both", "")
	bob.expect("alice's presence after approval", isPresence(alice.jid, ""))

	alice.message(bobBare, "hello from a")
	bob.expectMessage(alice.jid, "hello from a")
	bob.message(alice.jid, "hello from b")
	alice.expectMessage(bob.jid, "hello from b")

	// A new resource probes its contacts: it learns bob's presence from b.
	alice2 := a.online(t, "alice", "tablet")
	alice2.expect("bob's presence answering the probe", isPresence(bob.jid, ""))
	// Unavailable presence crosses too.
	bob.closeStream()
	alice.expect("bob going offline", isPresence(bob.jid, "unavailable"))
	alice2.expect("bob going offline", isPresence(bob.jid, "unavailable"))
}

func authOf(st s2s.Status, local, remote string) (out, in string) {
	for _, s := range st.Outgoing {
		if s.Local == local && s.Remote == remote {
			out = s.Auth
		}
	}
	for _, s := range st.Incoming {
		if s.Remote == remote {
			in = s.Auth
		}
	}
	return out, in
}

// streamSamples returns fs's wren_s2s_streams samples by labels.
func streamSamples(fs *fedServer) map[string]float64 {
	got := map[string]float64{}
	for _, v := range fs.s2sStreams() {
		got[strings.Join(v.Labels, " ")] = v.Value
	}
	return got
}

// TestFederationDialback: with bidirectional streams off on either side,
// each direction has a connection of its own.
func TestFederationDialback(t *testing.T) {
	for _, off := range []string{"a.example", "b.example"} {
		t.Run("bidi off at "+off, func(t *testing.T) {
			a, b := startFederated(t, func(domain string, c *config.Config) {
				c.S2S.Bidi = domain != off
			})
			federate(t, a, b)
			// Self-signed certificates: dialback authenticated both directions.
			for _, fs := range []*fedServer{a, b} {
				st := fs.FederationStatus()
				if len(st.Outgoing) != 1 || len(st.Incoming) != 1 || st.Outgoing[0].Auth != "dialback" || st.Incoming[0].Auth != "dialback" ||
					st.Outgoing[0].Bidi || st.Incoming[0].Bidi {
					t.Errorf("%s's streams: %+v; want one each way, dialback, not bidirectional", fs.domain, st)
				}
			}
			// The metrics and the admin status count the streams by peer.
			if got := streamSamples(a); got["out b.example"] != 1 || got["in b.example"] != 1 {
				t.Errorf("wren_s2s_streams samples %v, want one stream each way with b.example", got)
			}
			if st, err := (backend{a.Server}).Status(t.Context()); err != nil || st.Connections.S2S != 2 {
				t.Errorf("admin status counts %d s2s streams (%v), want 2", st.Connections.S2S, err)
			}
		})
	}
}

// TestFederationBidi: both servers offer bidirectional streams (the
// default): the stream a opens carries b's stanzas too, and b opens none.
func TestFederationBidi(t *testing.T) {
	a, b := startFederated(t, nil)
	federate(t, a, b)
	want := s2s.Stream{Local: "a.example", Remote: "b.example", Auth: "dialback", Bidi: true}
	if st := a.FederationStatus(); len(st.Outgoing) != 1 || st.Outgoing[0] != want || len(st.Incoming) != 0 {
		t.Errorf("a's streams: %+v; want only %+v", st, want)
	}
	want = s2s.Stream{Local: "b.example", Remote: "a.example", Auth: "dialback", Bidi: true}
	if st := b.FederationStatus(); len(st.Outgoing) != 0 || len(st.Incoming) != 1 || st.Incoming[0] != want {
		t.Errorf("b's streams: %+v; want only %+v", st, want)
	}
	if got := streamSamples(a); len(got) != 1 || got["out b.example"] != 1 {
		t.Errorf("a's wren_s2s_streams samples %v, want one outgoing stream", got)
	}
	if got := streamSamples(b); len(got) != 1 || got["in a.example"] != 1 {
		t.Errorf("b's wren_s2s_streams samples %v, want one incoming stream", got)
	}
	for _, fs := range []*fedServer{a, b} {
		if st, err := (backend{fs.Server}).Status(t.Context()); err != nil || st.Connections.S2S != 1 {
			t.Errorf("%s's admin status counts %d s2s streams (%v), want 1", fs.domain, st.Connections.S2S, err)
		}
	}
}

// TestFederationExternal: certificates from a CA both trust, SASL
// EXTERNAL; one bidirectional stream, or one stream each way when a does
// not ask for bidirectional streams.
func TestFederationExternal(t *testing.T) {
	ca, err := s2stest.NewCA(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, bidi := range []bool{true, false} {
		t.Run(fmt.Sprintf("bidi %t", bidi), func(t *testing.T) {
			a, b := startFederated(t, func(domain string, c *config.Config) {
				cert, key, err := ca.Issue(domain)
				if err != nil {
					t.Fatal(err)
				}
				c.TLS.CertFile, c.TLS.KeyFile = cert, key
				c.S2S.CAFile = ca.CertFile
				c.S2S.RequireValidCertificates = true
				c.S2S.Bidi = bidi || domain != "a.example"
			})
			federate(t, a, b)
			wantA, wantB := [2]string{"SASL EXTERNAL", "SASL EXTERNAL"}, [2]string{"SASL EXTERNAL", "SASL EXTERNAL"}
			if bidi {
				// One stream, opened by a.
				wantA[1], wantB[0] = "", ""
			}
			if out, in := authOf(a.FederationStatus(), "a.example", "b.example"); [2]string{out, in} != wantA {
				t.Errorf("a's streams with b: out %q, in %q; want %q", out, in, wantA)
			}
			if out, in := authOf(b.FederationStatus(), "b.example", "a.example"); [2]string{out, in} != wantB {
				t.Errorf("b's streams with a: out %q, in %q; want %q", out, in, wantB)
			}
		})
	}
}

func TestFederationRequireValidCertificates(t *testing.T) {
	ca, err := s2stest.NewCA(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	// a requires valid certificates; b has a self-signed one.
	a, b := startFederated(t, func(domain string, c *config.Config) {
		if domain == "a.example" {
			cert, key, err := ca.Issue(domain)
			if err != nil {
				t.Fatal(err)
			}
			c.TLS.CertFile, c.TLS.KeyFile = cert, key
			c.S2S.CAFile = ca.CertFile
			c.S2S.RequireValidCertificates = true
		}
	})
	alice := a.online(t, "alice", "phone")
	bob := b.online(t, "bob", "laptop")
	alice.message("bob@b.example", "refused")
	el := alice.expect("bounce of the message to b", isErrorFrom("bob@b.example", "remote-server-not-found"))
	if !strings.Contains(el.String(), "certificate") {
		t.Errorf("the bounce does not say why: %s", el)
	}
	// b's stream to a is refused too: a does not accept dialback from a
	// server without a valid certificate.
	bob.message("alice@a.example", "refused too")
	bob.expect("bounce of the message to a", isErrorFrom("alice@a.example", "remote-server-not-found"))
	// Nothing from bob reached alice: a round trip to her server shows
	// what was queued for her.
	alice.send(`<iq type='get' id='rt' to='a.example'><ping xmlns='urn:xmpp:ping'/></iq>`)
	alice.expect("ping result", func(el *xmpp.Element) bool { return el.Attr("id") == "rt" })
	for _, el := range alice.pending {
		if isAnyMessageWithBody(el) {
			t.Errorf("a message from a server a refuses reached alice: %s", el)
		}
	}
}

func isAnyMessageWithBody(el *xmpp.Element) bool {
	return el.Is(xmpp.NSClient, "message") && el.Child(xmpp.NSClient, "body") != nil && el.Attr("type") != "error"
}

func TestFederationBounces(t *testing.T) {
	// A port nobody listens on, and a server that accepts but never speaks.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	const timeout = 1500 * time.Millisecond
	ts := startTestServer(t, func(c *config.Config) {
		c.S2S.Listen = "127.0.0.1:0"
		c.S2S.Addresses = map[string]string{"down.example": closedAddr, "silent.example": silent.Addr().String()}
		c.S2S.Deny = []string{"denied.example"}
		c.S2S.ConnectTimeout = config.Duration{Duration: time.Second}
		c.S2S.NegotiateTimeout = config.Duration{Duration: timeout}
	})
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "phone")

	start := time.Now()
	alice.message("bob@down.example", "anyone?")
	alice.expect("bounce from the stopped server", isErrorFrom("bob@down.example", "remote-server-not-found"))
	if d := time.Since(start); d > timeout {
		t.Errorf("bounce for a refused connection took %s", d)
	}

	start = time.Now()
	alice.message("bob@silent.example", "one")
	alice.message("bob@silent.example", "two")
	alice.expect("bounce of the first message", func(el *xmpp.Element) bool {
		return isErrorFrom("bob@silent.example", "remote-server-timeout")(el) && el.ChildText(xmpp.NSClient, "body") == "one"
	})
	alice.expect("bounce of the second message", func(el *xmpp.Element) bool {
		return isErrorFrom("bob@silent.example", "remote-server-timeout")(el) && el.ChildText(xmpp.NSClient, "body") == "two"
	})
	if d := time.Since(start); d < timeout-100*time.Millisecond || d > timeout+3*time.Second {
		t.Errorf("timeout bounce after %s, want about %s", d, timeout)
	}

	alice.message("bob@denied.example", "no")
	alice.expect("bounce for a denied domain", isErrorFrom("bob@denied.example", "remote-server-not-found"))
}

// TestFederationIdleStreamClosed: a closes its stream to b when idle; the
// next stanza either way opens a new one. Stanzas received on a
// bidirectional stream keep it busy like those sent.
func TestFederationIdleStreamClosed(t *testing.T) {
	a, b := startFederated(t, func(domain string, c *config.Config) {
		if domain == "a.example" {
			c.S2S.IdleTimeout = config.Duration{Duration: time.Second}
		}
	})
	alice := a.online(t, "alice", "phone")
	bob := b.online(t, "bob", "laptop")
	alice.message(bob.jid, "first")
	bob.expectMessage(alice.jid, "first")
	deadline := time.Now().Add(10 * time.Second)
	for len(a.FederationStatus().Outgoing) > 0 || len(b.FederationStatus().Incoming) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the idle stream was not closed: a %+v, b %+v", a.FederationStatus(), b.FederationStatus())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// a's bidirectional stream is gone: b opens one of its own...
	bob.message(alice.jid, "second")
	alice.expectMessage(bob.jid, "second")
	if st := b.FederationStatus(); len(st.Outgoing) != 1 || !st.Outgoing[0].Bidi {
		t.Errorf("b's streams after the idle close: %+v; want its own bidirectional stream to a", st)
	}
	// ... which a uses to answer, without a connection of its own.
	alice.message(bob.jid, "third")
	bob.expectMessage(alice.jid, "third")
	if st := a.FederationStatus(); len(st.Outgoing) != 0 || len(st.Incoming) != 1 || !st.Incoming[0].Bidi {
		t.Errorf("a's streams: %+v; want only b's bidirectional stream", st)
	}
}

// fakePeer is a hand-driven server for a domain of its own: it
// opens streams to a Wren server and answers dialback verification on its
// own listener with a fixed verdict.
type fakePeer struct {
	t       *testing.T
	domain  string
	verdict string // type of the <db:verify/> answers
	ln      net.Listener
}

func startFakePeer(t *testing.T, domain, verdict string) *fakePeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{t: t, domain: domain, verdict: verdict, ln: ln}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.answerVerify(c)
		}
	}()
	return p
}

// answerVerify serves one verification connection from the Wren server.
func (p *fakePeer) answerVerify(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := xmpp.NewReader(c, xmpp.Limits{MaxBytes: 1 << 16, MaxDepth: 16, MaxAttrs: 16})
	w := bufio.NewWriter(c)
	if _, err := r.ReadHeader(); err != nil {
		return
	}
	// No TLS offered: the test server does not require it.
	w.WriteString(`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' id='v1' version='1.0'><stream:features/>`)
	w.Flush()
	for {
		el, err := r.Next()
		if err != nil {
			return
		}
		if el.Is(s2s.NSDialback, "verify") {
			fmt.Fprintf(w, "<db:verify from='%s' to='%s' id='%s' type='%s'/>", el.Attr("to"), el.Attr("from"), el.Attr("id"), p.verdict)
			w.Flush()
		}
	}
}

// open connects to ts's s2s listener with TLS and returns a client that
// has read the features of the encrypted stream.
func (p *fakePeer) open(ts *testServer, to string) *rawClient {
	t := p.t
	t.Helper()
	c := dialRaw(t, ts.FederationAddrs()["s2s STARTTLS"].String())
	hdr := fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>`, p.domain, to)
	c.send(hdr)
	if _, err := c.r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if f := c.next(); f.Child(xmpp.NSTLS, "starttls") == nil {
		t.Fatalf("no STARTTLS offered: %s", f)
	}
	c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	if el := c.next(); !el.Is(xmpp.NSTLS, "proceed") {
		t.Fatalf("STARTTLS: %s", el)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn = tc
	c.w = bufio.NewWriter(tc)
	c.r = xmpp.NewReader(tc, xmpp.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxAttrs: 64})
	c.send(hdr)
	if _, err := c.r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	f := c.next()
	if f.Child(s2s.NSDialbackFeature, "dialback") == nil {
		t.Fatalf("no dialback offered: %s", f)
	}
	if f.Child(xmpp.NSSASL, "mechanisms") != nil {
		t.Fatalf("SASL EXTERNAL offered for a self-signed certificate: %s", f)
	}
	return c
}

// dialback asks for dialback as p.domain and returns the verdict.
func (p *fakePeer) dialback(c *rawClient, to string) string {
	p.t.Helper()
	c.send(fmt.Sprintf("<db:result from='%s' to='%s'>some-key</db:result>", p.domain, to))
	el := c.next()
	if !el.Is(s2s.NSDialback, "result") {
		p.t.Fatalf("answer to <db:result/>: %s", el)
	}
	return el.Attr("type")
}

func TestS2SIncomingChecks(t *testing.T) {
	good := startFakePeer(t, "good.example", "valid")
	bad := startFakePeer(t, "bad.example", "invalid")
	ts := startTestServer(t, func(c *config.Config) {
		c.S2S.Listen = "127.0.0.1:0"
		c.S2S.RequireTLS = false // the fake peers' verification streams are plain
		c.S2S.Addresses = map[string]string{"good.example": good.ln.Addr().String(), "bad.example": bad.ln.Addr().String()}
	})
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "phone")

	t.Run("stanza before authentication", func(t *testing.T) {
		c := good.open(ts, "localhost")
		c.send(`<message from='x@good.example' to='alice@localhost'><body>early</body></message>`)
		c.expectStreamError("not-authorized")
	})
	t.Run("wrong dialback key", func(t *testing.T) {
		c := bad.open(ts, "localhost")
		if v := bad.dialback(c, "localhost"); v != "invalid" {
			t.Fatalf("dialback with a key its server denies: %q, want invalid", v)
		}
		c.send(`<message from='x@bad.example' to='alice@localhost'><body>sneaky</body></message>`)
		c.expectStreamError("not-authorized")
	})
	t.Run("forged from", func(t *testing.T) {
		c := good.open(ts, "localhost")
		if v := good.dialback(c, "localhost"); v != "valid" {
			t.Fatalf("dialback: %q, want valid", v)
		}
		c.send(`<message from='mallory@good.example' to='alice@localhost' type='chat'><body>legit</body></message>`)
		alice.expectMessage("mallory@good.example", "legit")
		c.send(`<message from='boss@localhost' to='alice@localhost'><body>forged</body></message>`)
		c.expectStreamError("invalid-from")
	})
	t.Run("unknown host", func(t *testing.T) {
		c := good.open(ts, "localhost")
		c.send(`<db:result from='good.example' to='elsewhere.example'>k</db:result>`)
		el := c.next()
		if el.Attr("type") != "error" || el.Child("", "error") == nil {
			t.Fatalf("dialback for a domain not served here: %s", el)
		}
	})
	alice.expectNone("the rejected messages", func(el *xmpp.Element) bool {
		return isAnyMessageWithBody(el) && el.ChildText(xmpp.NSClient, "body") != "legit"
	})
}

// TestS2SBidiIncoming: a peer that asks for a bidirectional stream gets
// the stanzas for its domain on it once dialback succeeded, and nothing
// before; stanzas for a domain it did not authenticate are not sent there.
func TestS2SBidiIncoming(t *testing.T) {
	good := startFakePeer(t, "good.example", "valid")
	ts := startTestServer(t, func(c *config.Config) {
		c.S2S.Listen = "127.0.0.1:0"
		c.S2S.RequireTLS = false // the fake peer's verification streams are plain
		c.S2S.Addresses = map[string]string{"good.example": good.ln.Addr().String()}
		c.S2S.ConnectTimeout = config.Duration{Duration: time.Second}
		c.S2S.NegotiateTimeout = config.Duration{Duration: 2 * time.Second}
	})
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "phone")

	c := good.open(ts, "localhost")
	c.send(`<bidi xmlns='urn:xmpp:bidi'/>`)
	if v := good.dialback(c, "localhost"); v != "valid" {
		t.Fatalf("dialback: %q, want valid", v)
	}
	c.send(`<message from='gina@good.example' to='alice@localhost' type='chat'><body>hi alice</body></message>`)
	alice.expectMessage("gina@good.example", "hi alice")
	alice.message("gina@good.example", "hi gina")
	el := c.next()
	if !el.Is(xmpp.NSServer, "message") || el.Attr("from") != alice.jid || el.Attr("to") != "gina@good.example" ||
		el.ChildText(xmpp.NSServer, "body") != "hi gina" {
		t.Fatalf("the peer received %s; want alice's answer on its own stream", el)
	}
	want := s2s.Stream{Local: "localhost", Remote: "good.example", Auth: "dialback", Bidi: true}
	if st := ts.FederationStatus(); len(st.Outgoing) != 0 || len(st.Incoming) != 1 || st.Incoming[0] != want {
		t.Errorf("streams: %+v; want only %+v", st, want)
	}
	// The peer closes its stream: the next answer needs a stream of Wren's
	// own, which the fake peer's listener does not set up (it only answers
	// dialback verifications), so it comes back after negotiate_timeout.
	c.send(`</stream:stream>`)
	if _, err := c.r.Next(); err != xmpp.ErrStreamClosed {
		t.Fatalf("after the peer's closing tag: %v, want the stream closed", err)
	}
	alice.message("gina@good.example", "still there?")
	alice.expect("bounce once the bidirectional stream is gone", isErrorFrom("gina@good.example", "remote-server-timeout"))
}

// fakeReceiver accepts one stream from the Wren server on ln, offers
// bidirectional streams and dialback (no TLS), accepts Wren's dialback
// key without checking it and returns the stream, ready for stanzas.
func fakeReceiver(t *testing.T, ln net.Listener, domain string) *rawClient {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &rawClient{t: t, conn: conn, w: bufio.NewWriter(conn)}
	c.r = xmpp.NewReader(conn, xmpp.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxAttrs: 64})
	if _, err := c.r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	c.send(`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='` + domain + `' id='r1' version='1.0'>` +
		`<stream:features><bidi xmlns='urn:xmpp:features:bidi'/><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>`)
	if el := c.next(); !el.Is(s2s.NSBidi, "bidi") {
		t.Fatalf("Wren answered the bidi feature with %s", el)
	}
	el := c.next()
	if !el.Is(s2s.NSDialback, "result") || el.Attr("to") != domain {
		t.Fatalf("Wren sent %s instead of its dialback key", el)
	}
	c.send(fmt.Sprintf("<db:result from='%s' to='%s' type='valid'/>", domain, el.Attr("from")))
	return c
}

// TestS2SBidiOutgoing: on its own stream to a server that offers
// bidirectional streams, Wren accepts stanzas from that server's domain
// and ends the stream with invalid-from on any other.
func TestS2SBidiOutgoing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ts := startTestServer(t, func(c *config.Config) {
		c.S2S.Listen = "127.0.0.1:0"
		c.S2S.RequireTLS = false // the fake receiver has no TLS
		c.S2S.Addresses = map[string]string{"recv.example": ln.Addr().String()}
	})
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "phone")

	alice.message("rita@recv.example", "hello rita")
	c := fakeReceiver(t, ln, "recv.example")
	if el := c.next(); el.ChildText(xmpp.NSServer, "body") != "hello rita" {
		t.Fatalf("the receiver got %s", el)
	}
	want := s2s.Stream{Local: "localhost", Remote: "recv.example", Auth: "dialback", Bidi: true}
	if st := ts.FederationStatus(); len(st.Outgoing) != 1 || st.Outgoing[0] != want || len(st.Incoming) != 0 {
		t.Errorf("streams: %+v; want only %+v", st, want)
	}
	c.send(`<message from='rita@recv.example/desk' to='` + alice.jid + `' type='chat'><body>hello alice</body></message>`)
	alice.expectMessage("rita@recv.example/desk", "hello alice")
	c.send(`<message from='boss@localhost' to='` + alice.jid + `' type='chat'><body>forged</body></message>`)
	c.expectStreamError("invalid-from")
	alice.expectNone("the forged message", func(el *xmpp.Element) bool { return el.ChildText(xmpp.NSClient, "body") == "forged" })
}

func TestS2SFederationOff(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "phone")
	alice.message("bob@elsewhere.example", "hi")
	alice.expect("bounce", isErrorFrom("bob@elsewhere.example", "remote-server-not-found"))
	if len(ts.FederationAddrs()) != 0 {
		t.Errorf("federation listeners opened while federation is off: %v", ts.FederationAddrs())
	}
}

// componentConn connects to the component listener as domain and
// performs the XEP-0114 handshake with secret; it returns the client and
// the first element after the handshake attempt (<handshake/> or
// <stream:error/>).
func componentConn(t *testing.T, ts *testServer, domain, secret string) (*rawClient, *xmpp.Element) {
	t.Helper()
	c := dialRaw(t, ts.FederationAddrs()["components"].String())
	c.send(fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'>`, domain))
	h, err := c.r.ReadHeader()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(h.ID + secret))
	c.send("<handshake>" + hex.EncodeToString(sum[:]) + "</handshake>")
	return c, c.next()
}

func TestComponent(t *testing.T) {
	const secret = "a-long-shared-secret"
	ts := startTestServer(t, func(c *config.Config) {
		c.S2S.ComponentListen = "127.0.0.1:0"
		c.Components = map[string]config.Component{"gw.localhost": {Secret: secret}}
	})
	ts.users(t, "alice")
	alice := ts.online(t, "alice", "phone")

	// Not connected yet: stanzas for it come back.
	alice.message("bot@gw.localhost", "anyone?")
	alice.expect("bounce while the component is away", isErrorFrom("bot@gw.localhost", "service-unavailable"))

	// A wrong secret is refused.
	bad, el := componentConn(t, ts, "gw.localhost", "wrong")
	if !el.Is(xmpp.NSStream, "error") || el.Child(xmpp.NSStreams, "not-authorized") == nil {
		t.Fatalf("handshake with a wrong secret: %s", el)
	}
	bad.conn.Close()
	// So is an unknown domain.
	unknown, el := componentConn(t, ts, "other.localhost", secret)
	if !el.Is(xmpp.NSStream, "error") || el.Child(xmpp.NSStreams, "host-unknown") == nil {
		t.Fatalf("handshake for an unconfigured domain: %s", el)
	}
	unknown.conn.Close()

	comp, el := componentConn(t, ts, "gw.localhost", secret)
	if !el.Is(component.NS, "handshake") {
		t.Fatalf("handshake with the right secret: %s", el)
	}
	// Messages both ways.
	alice.message("bot@gw.localhost", "ping")
	got := comp.next()
	if !got.Is(component.NS, "message") || got.Attr("from") != alice.jid || got.ChildText(component.NS, "body") != "ping" {
		t.Fatalf("component received %s", got)
	}
	comp.send(fmt.Sprintf(`<message from='bot@gw.localhost' to='%s' type='chat'><body>pong</body></message>`, alice.jid))
	alice.expectMessage("bot@gw.localhost", "pong")
	// An IQ to the component and its answer.
	alice.send(`<iq type='get' id='v1' to='gw.localhost'><query xmlns='jabber:iq:version'/></iq>`)
	iq := comp.next()
	if !iq.Is(component.NS, "iq") || iq.Attr("id") != "v1" {
		t.Fatalf("component received %s", iq)
	}
	comp.send(fmt.Sprintf(`<iq type='result' id='v1' from='gw.localhost' to='%s'><query xmlns='jabber:iq:version'><name>bot</name></query></iq>`, alice.jid))
	res := alice.expect("the component's IQ result", func(el *xmpp.Element) bool { return el.Attr("id") == "v1" })
	if res.Attr("type") != "result" || res.Child(xmpp.NSVersion, "query").ChildText(xmpp.NSVersion, "name") != "bot" {
		t.Fatalf("IQ result: %s", res)
	}
	// An IQ from the component to the server is answered.
	comp.send(`<iq type='get' id='p1' from='gw.localhost' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if pong := comp.next(); pong.Attr("id") != "p1" || pong.Attr("type") != "result" {
		t.Fatalf("server's answer to the component's ping: %s", pong)
	}
	// A second connection for the same domain is refused.
	dup, el := componentConn(t, ts, "gw.localhost", secret)
	if el.Child(xmpp.NSStreams, "conflict") == nil {
		t.Fatalf("second component for the same domain: %s", el)
	}
	dup.conn.Close()
	// A forged 'from' ends the component's stream.
	comp.send(fmt.Sprintf(`<message from='boss@localhost' to='%s'><body>forged</body></message>`, alice.jid))
	comp.expectStreamError("invalid-from")
	alice.message("bot@gw.localhost", "gone?")
	alice.expect("bounce after the component left", isErrorFrom("bot@gw.localhost", "service-unavailable"))
}
