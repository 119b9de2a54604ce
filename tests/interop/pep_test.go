package interop

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runPepScenario runs one scenario of slixmpp_pep.py against a fresh
// server with the accounts alice, bob, carol and dave.
func runPepScenario(t *testing.T, scenario string) {
	t.Helper()
	requirePython(t, "slixmpp")
	// slixmpp cannot do SCRAM -PLUS over TLS 1.3, so channel binding is off.
	s := startServer(t, "--config", writeConfig(t, "[auth]\nchannel_binding = false\n"))
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		s.addUser(u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "slixmpp_pep.py", scenario,
		"--port", s.Port, "--tls-port", s.TLSPort, "--domain", s.Domain, "--ca", s.CA)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("slixmpp PEP scenario %s failed: %v\n%s", scenario, err, out)
	}
	if !strings.Contains(string(out), "PASS "+scenario) {
		t.Fatalf("slixmpp PEP scenario %s did not report PASS:\n%s", scenario, out)
	}
	t.Logf("slixmpp %s:\n%s", scenario, out)
}

// TestSlixmppPepDevicelist: an OMEMO device list published with open
// access reaches a subscribed contact whose client asked for it
// (xep_0163 add_interest, announced with xep_0115), not a stranger nor a
// contact that did not ask; a mismatching precondition and a stranger's
// publish are refused.
func TestSlixmppPepDevicelist(t *testing.T) { runPepScenario(t, "devicelist") }

// TestSlixmppPepBookmarks: bookmarks (XEP-0402) published with whitelist
// access reach the owner's other resources only; a contact cannot read
// them; a new device fetches them; retraction is notified.
func TestSlixmppPepBookmarks(t *testing.T) { runPepScenario(t, "bookmarks") }

// TestSlixmppPepAvatar: an avatar published with xep_0084 (data and
// metadata) is announced to a contact, who downloads it, and whose new
// session gets the last metadata at login.
func TestSlixmppPepAvatar(t *testing.T) { runPepScenario(t, "avatar") }
