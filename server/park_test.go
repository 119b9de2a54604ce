package server

import (
	"runtime"
	"testing"
	"time"

	"wren.im/wren/config"
	"wren.im/wren/xmpp"
)

// waitParked waits until n client connections are parked.
func (ts *testServer) waitParked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for ts.c2s.Parked() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", ts.c2s.Parked(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Idle sessions park their sockets (no goroutine each) and wake up for
// what their clients send; they still count against the per-address limit,
// and they still receive what is routed to them.
func TestParkedSessions(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.C2S.MaxConnectionsPerIP = 3 })
	ts.users(t, "alice", "bob", "carol")
	ts.mutual(t, "alice", "bob")
	before := runtime.NumGoroutine()
	alice := ts.online(t, "alice", "desk")
	bob := ts.online(t, "bob", "phone")
	carol := ts.online(t, "carol", "tablet")
	alice.drain()
	bob.drain()
	ts.waitParked(t, 3)
	if n := ts.c2s.Connections(); n != 3 {
		t.Fatalf("%d connections counted, want 3", n)
	}
	// Three parked sessions cost no goroutine of their own (some slack
	// for the runtime's and the test's own).
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Errorf("%d goroutines with 3 parked sessions, %d before they logged in", g, before)
	}
	// The per-address limit still counts parked connections.
	extra := dialRaw(t, ts.addr())
	extra.open("localhost")
	extra.expectStreamError(xmpp.StreamPolicyViolation)

	// A parked sender wakes up for its message; the parked recipient gets
	// it, answers, and both go back to sleep.
	alice.message("bob@localhost", "are you there?")
	bob.expectMessage("alice@localhost/desk", "are you there?")
	bob.message("alice@localhost", "yes")
	alice.expectMessage("bob@localhost/phone", "yes")
	ts.waitParked(t, 3)
	// IQs through a parked session too.
	if r := carol.result("get", "localhost", `<ping xmlns='urn:xmpp:ping'/>`); r == nil {
		t.Fatal("no ping answer")
	}
	ts.waitParked(t, 3)
	// A parked session that is closed from the server side (kicked by
	// an administrator, here) is woken and ends properly.
	if ended, err := ts.adminClient(t).Kick(t.Context(), "carol@localhost/tablet", ""); err != nil || len(ended) != 1 {
		t.Fatalf("Kick = %v, %v", ended, err)
	}
	expectStreamErrorText(t, carol.rawClient, xmpp.StreamPolicyViolation, DefaultKickReason)
	ts.waitConnections(t, 2)
	// A client that disconnects while parked is noticed at once.
	bob.conn.Close()
	ts.waitConnections(t, 1)
	ts.waitUnbound(t, "bob")
}

// A parked session that stays quiet for the idle timeout is closed with
// connection-timeout, like one whose reader waited.
func TestParkedSessionIdleTimeout(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.C2S.IdleTimeout = config.Duration{Duration: 1800 * time.Millisecond}
		c.C2S.KeepaliveInterval = config.Duration{Duration: time.Hour}
	})
	ts.users(t, "alice")
	start := time.Now()
	alice := ts.connect(t, "alice", "desk")
	ts.waitParked(t, 1)
	alice.expectStreamError(xmpp.StreamConnectionTimeout)
	if d := time.Since(start); d < 1700*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout of 1.8s", d)
	}
	ts.waitConnections(t, 0)
}
