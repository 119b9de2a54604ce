package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// liveClient is a slixmpp client process that stays online until the
// server ends its session.
type liveClient struct {
	jid   string
	lines chan string
	done  chan error
}

func startLiveClient(t *testing.T, s *Server, user string) *liveClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "slixmpp_admin.py", user,
		"--port", s.Port, "--domain", s.Domain, "--ca", s.CA)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &liveClient{lines: make(chan string, 16), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.done <- cmd.Wait()
	}()
	line := c.next(t, "the client to come online")
	jid, ok := strings.CutPrefix(line, "ONLINE ")
	if !ok {
		t.Fatalf("slixmpp client: %s", line)
	}
	c.jid = jid
	return c
}

func (c *liveClient) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("the slixmpp client exited while waiting for %s", what)
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	return ""
}

type sessionRow struct {
	JID   string `json:"jid"`
	State string `json:"state"`
}

func sessionsOf(t *testing.T, s *Server, user string) []sessionRow {
	t.Helper()
	out, err := s.wren("", "session", "list", user, "--json")
	if err != nil {
		t.Fatalf("wren session list: %v\n%s", err, out)
	}
	var rows []sessionRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("session list --json: %v\n%s", err, out)
	}
	return rows
}

// TestAdminCLIWithLiveClients: 'wren session list' shows a real client's
// session, 'wren session kick' ends it with the reason given (no
// hibernation, though the client enabled stream management), and
// 'wren user del' ends the sessions of the deleted account.
func TestAdminCLIWithLiveClients(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t, "--config", writeConfig(t, "[auth]\nchannel_binding = false\n"))
	s.addUser("bob")
	s.addUser("carol")
	bob := startLiveClient(t, s, "bob")
	carol := startLiveClient(t, s, "carol")

	rows := sessionsOf(t, s, "bob")
	if len(rows) != 1 || rows[0].JID != bob.jid || rows[0].State != "active" {
		t.Fatalf("session list bob: %+v, want the one active session %s", rows, bob.jid)
	}
	out, err := s.wren("", "session", "kick", bob.jid, "--reason", "maintenance window")
	if err != nil || !strings.Contains(out, bob.jid) {
		t.Fatalf("wren session kick: %v\n%s", err, out)
	}
	if l := bob.next(t, "the kick"); l != "ENDED policy-violation: maintenance window" {
		t.Fatalf("the kicked client saw %q", l)
	}
	if rows := sessionsOf(t, s, "bob"); len(rows) != 0 {
		t.Fatalf("after the kick bob still has %+v (a kicked session must not hibernate)", rows)
	}

	out, err = s.wren("", "user", "del", "carol")
	if err != nil || !strings.Contains(out, "deleted user carol") {
		t.Fatalf("wren user del: %v\n%s", err, out)
	}
	if l := carol.next(t, "the account deletion"); !strings.HasPrefix(l, "ENDED not-authorized") {
		t.Fatalf("the deleted user's client saw %q", l)
	}
	out, _ = s.wren("", "user", "list")
	if strings.Contains(out, "carol") {
		t.Fatalf("carol still listed:\n%s", out)
	}
}
