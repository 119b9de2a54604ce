package interop

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runHistoryScenario runs one scenario of slixmpp_history.py against s.
func runHistoryScenario(t *testing.T, s *Server, scenario string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "slixmpp_history.py", scenario,
		"--port", s.Port, "--tls-port", s.TLSPort, "--domain", s.Domain, "--ca", s.CA)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("slixmpp history scenario %s failed: %v\n%s", scenario, err, out)
	}
	if !strings.Contains(string(out), "PASS "+scenario) {
		t.Fatalf("slixmpp history scenario %s did not report PASS:\n%s", scenario, out)
	}
	t.Logf("slixmpp %s:\n%s", scenario, out)
}

// historyServer starts a server for the history scenarios. slixmpp cannot
// do SCRAM -PLUS over TLS 1.3, so channel binding is off.
func historyServer(t *testing.T) *Server {
	t.Helper()
	s := startServer(t, "--config", writeConfig(t, "[auth]\nchannel_binding = false\n"))
	for _, u := range []string{"alice", "bob", "carol"} {
		s.addUser(u)
	}
	return s
}

// TestSlixmppHistoryCarbons: two resources of one account with carbons
// enabled (slixmpp's xep_0280) see copies of what the other receives and
// sends, with the same stanza-ids; <private/> and disable are honoured.
func TestSlixmppHistoryCarbons(t *testing.T) {
	requirePython(t, "slixmpp")
	runHistoryScenario(t, historyServer(t), "carbons")
}

// TestSlixmppHistoryMAM: 300 archived messages paged through both ways
// with slixmpp's xep_0313 iterator, filtered by contact and by time.
func TestSlixmppHistoryMAM(t *testing.T) {
	requirePython(t, "slixmpp")
	runHistoryScenario(t, historyServer(t), "mam")
}
