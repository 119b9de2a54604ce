package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"wren.im/wren/config"
)

// result is the outcome of one in-process run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// wren runs the command line args with stdin as standard input.
func wren(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// expect checks the exit code and that stdout and stderr contain the given
// substrings.
func (r result) expect(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\n%s", r.code, code, r)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout does not contain %q\n%s", s, r)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not contain %q\n%s", s, r)
		}
	}
}

func TestUsage(t *testing.T) {
	commands := []string{"serve", "status", "session list", "session kick", "reload", "user add", "user passwd", "user del", "user list",
		"check", "config example", "config check", "cert generate", "version", "help"}

	r := wren(t, "")
	r.expect(t, exitUsage, nil, append([]string{"Usage:"}, commands...))

	r = wren(t, "", "help")
	r.expect(t, exitOK, append([]string{"Usage:"}, commands...), nil)

	r = wren(t, "", "--help")
	r.expect(t, exitOK, []string{"Usage:"}, nil)

	r = wren(t, "", "frobnicate")
	r.expect(t, exitUsage, nil, []string{`wren: unknown command "frobnicate"`, "Usage:"})

	r = wren(t, "", "user")
	r.expect(t, exitUsage, nil, []string{"wren user: missing command", "user add", "user list"})
	if strings.Contains(r.stderr, "serve") {
		t.Errorf("group usage lists other commands:\n%s", r)
	}

	r = wren(t, "", "user", "frob")
	r.expect(t, exitUsage, nil, []string{`wren user: unknown command "frob"`})

	r = wren(t, "", "help", "user")
	r.expect(t, exitOK, []string{"user add", "user del"}, nil)

	r = wren(t, "", "help", "nope")
	r.expect(t, exitUsage, nil, []string{`unknown command "nope"`})
}

func TestCommandHelp(t *testing.T) {
	r := wren(t, "", "help", "serve")
	r.expect(t, exitOK, []string{"wren serve [options]", "-config", "-domain", "-data", "-c2s", "-c2s-tls", "-log-level"}, nil)

	r = wren(t, "", "help", "user", "add")
	r.expect(t, exitOK, []string{"wren user add USER", "-password-stdin", "-config"}, nil)

	r = wren(t, "", "user", "list", "-h")
	r.expect(t, exitOK, nil, []string{"wren user list", "-json"})

	r = wren(t, "", "serve", "--no-such-flag")
	r.expect(t, exitUsage, nil, []string{"flag provided but not defined: -no-such-flag"})
}

func TestVersion(t *testing.T) {
	r := wren(t, "", "version")
	r.expect(t, exitOK, []string{"wren dev", runtime.Version()}, nil)

	r = wren(t, "", "version", "extra")
	r.expect(t, exitUsage, nil, []string{`unexpected argument "extra"`})
}

func TestConfigExample(t *testing.T) {
	r := wren(t, "", "config", "example")
	r.expect(t, exitOK, nil, nil)
	if r.stdout != config.Example() {
		t.Error("'wren config example' does not print config.Example()")
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "good.toml", config.Example())
	r := wren(t, "", "config", "check", "--config", good)
	r.expect(t, exitOK, []string{"config OK: " + good}, nil)

	r = wren(t, "", "config", "check", good)
	r.expect(t, exitOK, []string{"config OK: " + good}, nil)

	r = wren(t, "", "config", "check")
	r.expect(t, exitOK, []string{"config OK: (built-in defaults)"}, nil)

	r = wren(t, "", "config", "check", "--domain", "example.org")
	r.expect(t, exitOK, []string{"config OK: (built-in defaults) with command-line options"}, nil)

	bad := writeFile(t, "bad.toml", "domain = \"exa mple\"\n[auth]\nscram_iterations = 100\n")
	r = wren(t, "", "config", "check", bad)
	r.expect(t, exitFailure, nil, []string{
		"config " + bad + `: domain "exa mple" is not a valid XMPP domain`,
		"config " + bad + ": auth.scram_iterations is 100",
	})
	if strings.Contains(r.stdout, "OK") {
		t.Errorf("bad config reported OK\n%s", r)
	}

	unknown := writeFile(t, "unknown.toml", "[c2s]\nlisen = \"x\"\n")
	r = wren(t, "", "config", "check", unknown)
	r.expect(t, exitFailure, nil, []string{"config " + unknown + ": line 2: unknown option c2s.lisen"})

	r = wren(t, "", "config", "check", filepath.Join(t.TempDir(), "missing.toml"))
	r.expect(t, exitFailure, nil, []string{"cannot read the file: no such file or directory"})

	r = wren(t, "", "config", "check", good, "--config", bad)
	r.expect(t, exitUsage, nil, []string{"not both"})

	r = wren(t, "", "config", "check", good, bad)
	r.expect(t, exitUsage, nil, []string{"at most one FILE"})
}

func TestServeConfigProblems(t *testing.T) {
	bad := writeFile(t, "bad.toml", "[log]\nlevel = \"loud\"\n")
	r := wren(t, "", "serve", "--config", bad)
	r.expect(t, exitFailure, nil, []string{"wren serve:", `log.level "loud" is unknown`})

	r = wren(t, "", "serve", "--c2s", "", "--c2s-tls", "")
	r.expect(t, exitFailure, nil, []string{"(built-in defaults) with command-line options", "both empty"})

	r = wren(t, "", "serve", "--c2s", "nope", "--log-level", "chatty", "--domain", "a b")
	r.expect(t, exitFailure, nil, []string{`c2s.listen "nope"`, `log.level "chatty"`, `domain "a b"`})

	r = wren(t, "", "serve", "extra")
	r.expect(t, exitUsage, nil, []string{`unexpected argument "extra"`})
}

// TestServeStartsAndStops runs the real server on ephemeral ports and stops
// it by cancelling the context, as SIGINT does.
func TestServeStartsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", t.TempDir(), "--c2s", "127.0.0.1:0", "--c2s-tls", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-level", "debug"},
			strings.NewReader(""), &stdout, &stderr)
	}()
	select {
	case code := <-done:
		t.Fatalf("serve returned %d before being stopped\n%s", code, stderr.String())
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited with %d after cancel, want 0\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of the context being cancelled")
	}
	if !strings.Contains(stderr.String(), "configuration loaded") {
		t.Errorf("no start message in the log:\n%s", stderr.String())
	}
}

func TestConfigFlagsOverrideOnlyWhenSet(t *testing.T) {
	path := writeFile(t, "wren.toml", "domain = \"example.org\"\ndata_dir = \"/srv/wren\"\n[c2s]\nlisten = \"0.0.0.0:5222\"\n")
	c := &cli{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	cmd := serveCommand()
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	cf.override("c2s", "", func(cfg *config.Config, v string) { cfg.C2S.Listen = v })
	cf.override("c2s-tls", "", func(cfg *config.Config, v string) { cfg.C2S.DirectTLS = v })
	if _, _, ok := parse(fs, []string{"--config", path, "--data", "/tmp/w", "--c2s-tls", ""}); !ok {
		t.Fatal("parse failed")
	}
	cfg, err := cf.load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domain != "example.org" || cfg.C2S.Listen != "0.0.0.0:5222" {
		t.Errorf("options not given changed the file's values: domain %q, listen %q", cfg.Domain, cfg.C2S.Listen)
	}
	if cfg.DataDir != "/tmp/w" || cfg.C2S.DirectTLS != "" {
		t.Errorf("options given were not applied: data_dir %q, direct_tls %q", cfg.DataDir, cfg.C2S.DirectTLS)
	}
}

func TestParseInterspersed(t *testing.T) {
	c := &cli{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	fs := userAddCommand().flagSet(c)
	stdinFlag := passwordStdinFlag(fs)
	pos, _, ok := parse(fs, []string{"alice", "--password-stdin", "--", "-bob"})
	if !ok {
		t.Fatal("parse failed")
	}
	if !*stdinFlag {
		t.Error("--password-stdin after the argument was not parsed")
	}
	if !slices.Equal(pos, []string{"alice", "-bob"}) {
		t.Errorf("positional = %q", pos)
	}
}

func TestParseUser(t *testing.T) {
	tests := []struct {
		arg, want, err string
	}{
		{arg: "alice", want: "alice@example.org"},
		{arg: "Alice", want: "alice@example.org"},
		{arg: "alice@example.org", want: "alice@example.org"},
		{arg: "ALICE@Example.ORG", want: "alice@example.org"},
		{arg: "alice@other.org", err: "alice@other.org is not on this server's domain example.org"},
		{arg: "alice@example.org/phone", err: "has a resource"},
		{arg: "al ice", err: `"al ice" is not a valid user name`},
		{arg: "@example.org", err: "not a valid XMPP address"},
		{arg: "", err: "empty"},
	}
	for _, tt := range tests {
		got, err := parseUser(tt.arg, "example.org")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseUser(%q) error = %v, want %q", tt.arg, err, tt.err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("parseUser(%q) = %q, %v; want %q", tt.arg, got, err, tt.want)
		}
	}
}

func TestUserRoundTrip(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	common := []string{"--data", data, "--domain", "example.org"}
	user := func(stdin string, args ...string) result {
		t.Helper()
		return wren(t, stdin, append(append([]string{"user"}, args...), common...)...)
	}

	r := user("", "list")
	r.expect(t, exitOK, nil, []string{"no database"})
	if r.stdout != "" {
		t.Errorf("list on a new data dir printed %q", r.stdout)
	}
	r = user("", "list", "--json")
	r.expect(t, exitOK, []string{"[]"}, nil)

	r = user("correct horse battery staple\n", "add", "alice", "--password-stdin")
	r.expect(t, exitOK, []string{"created user alice@example.org"}, nil)
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("unexpected warning\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(data, "wren.db")); err != nil {
		t.Errorf("database not created: %v", err)
	}

	// A short password is accepted with a warning; CRLF is trimmed.
	r = user("short\r\n", "add", "Bob@Example.org", "--password-stdin")
	r.expect(t, exitOK, []string{"created user bob@example.org"}, []string{"warning:", "registration.min_password_length (8)"})

	r = user("another password\n", "add", "ALICE", "--password-stdin")
	r.expect(t, exitFailure, nil, []string{"user alice@example.org already exists; use 'wren user passwd' to change the password"})

	r = user("", "list")
	r.expect(t, exitOK, nil, nil)
	if r.stdout != "alice@example.org\nbob@example.org\n" {
		t.Errorf("list printed %q", r.stdout)
	}
	r = user("", "list", "--json")
	r.expect(t, exitOK, nil, nil)
	var list []string
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("list --json printed %q: %v", r.stdout, err)
	}
	if !slices.Equal(list, []string{"alice@example.org", "bob@example.org"}) {
		t.Errorf("list --json = %q", list)
	}

	r = user("new password 123\n", "passwd", "alice", "--password-stdin")
	r.expect(t, exitOK, []string{"changed the password of alice@example.org"}, nil)

	r = user("new password 123\n", "passwd", "carol", "--password-stdin")
	r.expect(t, exitFailure, nil, []string{"no such user carol@example.org"})

	r = user("", "del", "bob")
	r.expect(t, exitOK, []string{"deleted user bob@example.org"}, nil)

	r = user("", "del", "bob")
	r.expect(t, exitFailure, nil, []string{"no such user bob@example.org"})

	r = user("", "list")
	if r.stdout != "alice@example.org\n" {
		t.Errorf("list after del printed %q", r.stdout)
	}
}

func TestUserErrors(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	common := []string{"--data", data}

	r := wren(t, "secret password\n", append([]string{"user", "add", "alice@example.org", "--password-stdin"}, common...)...)
	r.expect(t, exitFailure, nil, []string{"alice@example.org is not on this server's domain localhost"})

	r = wren(t, "", append([]string{"user", "add", "alice"}, common...)...)
	r.expect(t, exitFailure, nil, []string{"not a terminal", "--password-stdin"})

	r = wren(t, "\n", append([]string{"user", "add", "alice", "--password-stdin"}, common...)...)
	r.expect(t, exitFailure, nil, []string{"password read from standard input is empty"})

	r = wren(t, "", append([]string{"user", "add", "alice", "--password-stdin"}, common...)...)
	r.expect(t, exitFailure, nil, []string{"empty"})

	r = wren(t, "", append([]string{"user", "add"}, common...)...)
	r.expect(t, exitUsage, nil, []string{"missing USER"})

	r = wren(t, "", append([]string{"user", "del", "a", "b"}, common...)...)
	r.expect(t, exitUsage, nil, []string{"expected one USER"})

	r = wren(t, "", append([]string{"user", "del", "nobody"}, common...)...)
	r.expect(t, exitFailure, nil, []string{"no such user nobody@localhost", "no database"})

	r = wren(t, "", append([]string{"user", "passwd", "nobody", "--password-stdin"}, common...)...)
	r.expect(t, exitFailure, nil, []string{"no such user nobody@localhost"})

	r = wren(t, "", "user", "list", "--domain", "bad domain")
	r.expect(t, exitFailure, nil, []string{`domain "bad domain"`})

	// Nothing was created by the failed commands.
	r = wren(t, "", append([]string{"user", "list"}, common...)...)
	if r.stdout != "" {
		t.Errorf("failed commands created users: %q", r.stdout)
	}
}
