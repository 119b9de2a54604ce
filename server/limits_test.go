package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wren.im/wren/config"
	"wren.im/wren/xmpp"
)

func TestConnectionsPerIPLimit(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) { c.C2S.MaxConnectionsPerIP = 2 })
	a := dialRaw(t, ts.addr())
	a.open("localhost")
	b := dialRaw(t, ts.addr())
	b.open("localhost")
	c := dialRaw(t, ts.addr())
	c.open("localhost")
	c.expectStreamError(xmpp.StreamPolicyViolation)
	// The first two are unaffected, and a slot frees up when one leaves.
	a.next()
	b.next()
	a.conn.Close()
	time.Sleep(100 * time.Millisecond)
	d := dialRaw(t, ts.addr())
	d.open("localhost")
	if f := d.next(); !f.Is(xmpp.NSStream, "features") {
		t.Fatalf("after a slot freed up: %s", f)
	}
}

// TestStanzaRateSlowsNotDrops floods the server faster than the configured
// rate: every stanza must still be answered, and not faster than the rate
// allows.
func TestStanzaRateSlowsNotDrops(t *testing.T) {
	const rate, burst, n = 40, 5, 65
	ts := startTestServer(t, func(c *config.Config) {
		c.C2S.StanzaRate = rate
		c.C2S.StanzaBurst = burst
	})
	ts.addUser(t, "alice", smPass)
	c := dialRaw(t, ts.addr())
	c.login("localhost", "alice", smPass, "r")
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `<iq type='get' id='p%d' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, i)
	}
	start := time.Now()
	c.send(b.String())
	for i := 0; i < n; i++ {
		r := c.next()
		if r.Attr("type") != "result" || r.Attr("id") != fmt.Sprintf("p%d", i) {
			t.Fatalf("answer %d: %s", i, r)
		}
	}
	// (n - burst) stanzas had to wait for tokens at rate/s.
	minimum := time.Duration(float64(n-burst)/rate*float64(time.Second)) * 9 / 10
	if d := time.Since(start); d < minimum {
		t.Fatalf("%d stanzas answered in %s: the %d/s limit was not applied (expected at least %s)", n, d, rate, minimum)
	}
}
