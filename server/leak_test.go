package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"wren.im/wren/config"
	"wren.im/wren/xmpp"
)

// leakSMLogin logs in as user/resource, enables resumable stream
// management asking for maxSeconds of resumption (0: the server's
// default) and sends initial presence.
func leakSMLogin(t *testing.T, ts *testServer, user, resource string, maxSeconds int) *smClient {
	t.Helper()
	rc := dialRaw(t, ts.addr())
	rc.conn.SetDeadline(time.Now().Add(time.Minute))
	rc.login("localhost", user, smPass, resource)
	enable := `<enable xmlns='urn:xmpp:sm:3' resume='true'/>`
	if maxSeconds > 0 {
		enable = fmt.Sprintf(`<enable xmlns='urn:xmpp:sm:3' resume='true' max='%d'/>`, maxSeconds)
	}
	rc.send(enable)
	en := rc.next()
	if !en.Is(xmpp.NSSM, "enabled") || en.Attr("id") == "" {
		t.Fatalf("enable: %s", en)
	}
	c := &smClient{rawClient: rc, id: en.Attr("id")}
	rc.send(`<presence/>`)
	if p := c.stanza(); !p.Is(xmpp.NSClient, "presence") {
		t.Fatalf("expected the echo of the initial presence, got %s", p)
	}
	return c
}

// message reads stanzas until a message, skipping presence.
func (c *smClient) message() *xmpp.Element {
	c.t.Helper()
	for {
		if el := c.stanza(); el.Is(xmpp.NSClient, "message") {
			return el
		}
	}
}

// endStream closes the stream politely, reads until the server has closed
// its side too, and closes the connection.
func endStream(c *rawClient) {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	c.send(`</stream:stream>`)
	for {
		if _, err := c.r.Next(); err != nil {
			break
		}
	}
	c.conn.Close()
}

// clearOffline removes every message stored for user.
func clearOffline(t *testing.T, ts *testServer, user string) {
	t.Helper()
	msgs, err := ts.store.OfflineMessages(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 {
		return
	}
	if err := ts.store.DeleteOffline(context.Background(), user, msgs[len(msgs)-1].ID); err != nil {
		t.Fatal(err)
	}
}

// leakScenario is one kind of session the leak test runs.
type leakScenario struct {
	name string
	run  func(t *testing.T, ts *testServer, alice *rawClient, resource string)
}

// leakScenarios returns the session kinds: each starts and ends one or
// more sessions for bob, with alice (logged in) as the other party.
func leakScenarios() []leakScenario {
	return []leakScenario{
		{"login, message, close", func(t *testing.T, ts *testServer, alice *rawClient, resource string) {
			bob := dialRaw(t, ts.addr())
			bob.login("localhost", "bob", smPass, resource)
			bob.send(`<presence/>`)
			sendChat(alice, "bob@localhost/"+resource, "hello")
			if m := nextMessage(bob); m.ChildText(xmpp.NSClient, "body") != "hello" {
				t.Fatalf("bob got %s", m)
			}
			endStream(bob)
		}},
		{"stream management, message, close", func(t *testing.T, ts *testServer, alice *rawClient, resource string) {
			bob := leakSMLogin(t, ts, "bob", resource, 0)
			sendChat(alice, "bob@localhost/"+resource, "acked")
			if m := bob.message(); m.ChildText(xmpp.NSClient, "body") != "acked" {
				t.Fatalf("bob got %s", m)
			}
			bob.send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, bob.h))
			endStream(bob.rawClient)
		}},
		{"cut, hibernation, resume, close", func(t *testing.T, ts *testServer, alice *rawClient, resource string) {
			bob := leakSMLogin(t, ts, "bob", resource, 60)
			bob.cut()
			waitFor(t, "bob's session to hibernate", func() bool { return ts.c2s.Hibernated() == 1 })
			sendChat(alice, "bob@localhost/"+resource, "while away")
			bob2, res := resume(t, ts, "bob", bob.id, bob.h)
			if !res.Is(xmpp.NSSM, "resumed") {
				t.Fatalf("resume: %s", res)
			}
			if m := bob2.message(); m.ChildText(xmpp.NSClient, "body") != "while away" {
				t.Fatalf("after resume bob got %s", m)
			}
			endStream(bob2.rawClient)
		}},
		{"cut, expiry", func(t *testing.T, ts *testServer, alice *rawClient, resource string) {
			bob := leakSMLogin(t, ts, "bob", resource, 0)
			sendChat(alice, "bob@localhost/"+resource, "goes offline")
			bob.cut()
			waitFor(t, "bob's session to expire", func() bool {
				return len(ts.router.Sessions("bob")) == 0 && ts.c2s.Hibernated() == 0
			})
		}},
		{"stalled client", func(t *testing.T, ts *testServer, alice *rawClient, resource string) {
			bob := dialRaw(t, ts.addr())
			bob.login("localhost", "bob", smPass, resource)
			bob.conn.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn).SetReadBuffer(4096)
			// bob never reads again; alice writes until his queue is full
			// and his session ends.
			body := strings.Repeat("x", 60000)
			deadline := time.Now().Add(10 * time.Second)
			for i := 0; len(ts.router.Sessions("bob")) > 0; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("bob's stalled session did not end after %d messages", i)
				}
				sendChat(alice, "bob@localhost/"+resource, fmt.Sprintf("%d %s", i, body))
				if i%50 == 49 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			bob.conn.Close()
		}},
	}
}

// TestNoGoroutineLeakAfterSessions runs 50 sessions through every way a
// session can start and end (a plain login, stream management, a cut
// followed by a resume, a cut followed by expiry, a client that stops
// reading) and checks that the server's goroutines return to their
// number before the sessions.
func TestNoGoroutineLeakAfterSessions(t *testing.T) {
	const (
		sessions = 50
		slack    = 5
	)
	ts := startTestServer(t, func(c *config.Config) {
		c.StreamManagement.ResumeTimeout = config.Duration{Duration: 300 * time.Millisecond}
		c.C2S.SendQueue = 16
		c.C2S.StanzaRate = 0
		c.C2S.ByteRate = 0
		c.Offline.MaxPerUser = 0
		c.Archive.Enabled = false
	})
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)

	// A first login and message set up what is created once (database
	// connections, caches); the baseline is taken after it.
	warm := dialRaw(t, ts.addr())
	warm.login("localhost", "alice", smPass, "warmup")
	sendChat(warm, "bob@localhost", "warm-up")
	endStream(warm)
	clearOffline(t, ts, "bob")
	waitFor(t, "the warm-up session to end", func() bool { return ts.router.Count() == 0 })
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()

	scenarios := leakScenarios()
	for i := range sessions {
		sc := scenarios[i%len(scenarios)]
		alice := dialRaw(t, ts.addr())
		alice.conn.SetDeadline(time.Now().Add(time.Minute))
		alice.login("localhost", "alice", smPass, fmt.Sprintf("desk%d", i))
		sc.run(t, ts, alice, fmt.Sprintf("r%d", i))
		endStream(alice)
		// What went to offline storage would be delivered to bob's next
		// session and disturb it.
		clearOffline(t, ts, "bob")
		waitFor(t, "every session to end", func() bool { return ts.router.Count() == 0 && ts.c2s.Hibernated() == 0 })
		if t.Failed() {
			t.Fatalf("session %d (%s) failed", i, sc.name)
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	n := runtime.NumGoroutine()
	for n > base+slack && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > base+slack {
		var dump bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Fatalf("%d goroutines 10 s after %d sessions ended, %d before (slack %d); sessions left: %d, hibernated: %d\n%s",
			n, sessions, base, slack, ts.router.Count(), ts.c2s.Hibernated(), dump.String())
	}
	t.Logf("%d sessions: %d goroutines before, %d after", sessions, base, n)
}
