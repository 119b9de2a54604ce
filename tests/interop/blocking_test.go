package interop

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSlixmppBlocking: alice and bob, mutually subscribed, use slixmpp's
// xep_0191 plugin. When alice blocks bob, bob sees her go unavailable and
// she him; his messages and IQs to her bounce with service-unavailable,
// hers to him with not-acceptable and <blocked/>, and neither sees the
// other's presence. Unblocking restores presence and messages both ways.
func TestSlixmppBlocking(t *testing.T) {
	requirePython(t, "slixmpp")
	// slixmpp cannot do SCRAM -PLUS over TLS 1.3, so channel binding is off.
	s := startServer(t, "--config", writeConfig(t, "[auth]\nchannel_binding = false\n"))
	for _, u := range []string{"alice", "bob"} {
		s.addUser(u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "slixmpp_blocking.py", "blocking",
		"--port", s.Port, "--tls-port", s.TLSPort, "--domain", s.Domain, "--ca", s.CA)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("slixmpp blocking scenario failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS blocking") {
		t.Fatalf("slixmpp blocking scenario did not report PASS:\n%s", out)
	}
	t.Logf("slixmpp blocking:\n%s", out)
}
