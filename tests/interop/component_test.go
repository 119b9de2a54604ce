package interop

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSlixmppComponent: slixmpp's ComponentXMPP connects to Wren as an
// external component (XEP-0114) and exchanges messages and IQs with a
// local account; one with a wrong secret is refused.
func TestSlixmppComponent(t *testing.T) {
	requirePython(t, "slixmpp")
	const secret = "component-secret-for-tests"
	w := startFedServer(t, "wren.example", wrenS2SConfig("component_listen = \"127.0.0.1:0\"\n", "", "")+
		"\n[component.\"gw.wren.example\"]\nsecret = \""+secret+"\"\n")
	w.addUser("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "slixmpp_component.py",
		"--domain", "wren.example", "--component", "gw.wren.example", "--component-port", w.ComponentPort,
		"--secret", secret, "--port", w.Port, "--ca", w.CA).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS component") {
		t.Fatalf("slixmpp component scenario failed: %v\n%s", err, out)
	}
	t.Logf("slixmpp component:\n%s", out)
	if !strings.Contains(w.Logs(), `msg="refused external component" component=xep0114`) {
		t.Errorf("the wrong secret was not logged")
	}
}
