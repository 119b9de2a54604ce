package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"wren.im/wren/config"
	"wren.im/wren/server"
)

// startWren runs an in-process Wren on a loopback port with in-band
// registration open and its rate limits off, as the comparison runs it.
func startWren(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.C2S.Listen = "127.0.0.1:0"
	cfg.C2S.DirectTLS = ""
	cfg.C2S.AllowPlaintextLoopback = true
	cfg.C2S.MaxConnectionsPerIP = 0
	cfg.C2S.StanzaRate = 0
	cfg.C2S.ByteRate = 0
	cfg.Metrics.Listen = ""
	cfg.Auth.ScramIterations = 4096
	cfg.Auth.FailureDelay = config.Duration{}
	cfg.Registration.Enabled = true
	cfg.Registration.MaxPerIP = 0
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("server did not stop within 15s")
		}
	})
	return s.Addrs()[0].String()
}

// phase runs one wren-bench phase and decodes its JSON summary.
func phase(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("wren-bench %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("summary line %q: %v", lines[len(lines)-1], err)
	}
	t.Logf("%s: %s", args[0], lines[len(lines)-1])
	return res
}

func TestPhasesAgainstWren(t *testing.T) {
	addr := startWren(t)
	common := []string{"--addr", addr, "--users", "6", "--users-prefix", "it", "--password", "it-password", "--deadline", "30s"}
	with := func(name string, extra ...string) []string {
		return append(append([]string{name}, common...), extra...)
	}

	r := phase(t, with("register", "--concurrency", "3")...)
	if r["created"] != 6.0 {
		t.Errorf("register: created %v, want 6", r["created"])
	}
	r = phase(t, with("register")...)
	if r["existing"] != 6.0 {
		t.Errorf("second register: existing %v, want 6", r["existing"])
	}

	for _, mech := range []string{"SCRAM-SHA-1", "SCRAM-SHA-256"} {
		r = phase(t, with("login", "--mech", mech, "--concurrency", "3")...)
		if r["ok"] != 6.0 || r["failures"] != 0.0 {
			t.Errorf("login %s: %v", mech, r)
		}
		if r["logins_per_s"].(float64) <= 0 || r["p99_ms"].(float64) <= 0 {
			t.Errorf("login %s: no rate or latency: %v", mech, r)
		}
	}

	r = phase(t, with("msgs", "--pairs", "3", "--duration", "1s", "--window", "8")...)
	if r["sent"].(float64) < 10 || r["lost"] != 0.0 || r["duplicated"] != 0.0 || r["delivered"] != r["sent"] {
		t.Errorf("msgs at max rate: %v", r)
	}
	r = phase(t, with("msgs", "--pairs", "3", "--duration", "1s", "--rate", "60", "--plain")...)
	if s := r["sent"].(float64); s < 45 || s > 75 || r["lost"] != 0.0 || r["p99_ms"].(float64) <= 0 {
		t.Errorf("msgs at 60/s: %v", r)
	}

	r = phase(t, with("idle", "--conns", "12", "--settle", "100ms", "--server-pid", strconv.Itoa(os.Getpid()))...)
	if r["ok"] != 12.0 || r["rss_after_kb"].(float64) <= 0 {
		t.Errorf("idle: %v", r)
	}

	// A wrong password fails and says so.
	var out, errb bytes.Buffer
	args := []string{"login", "--addr", addr, "--users", "1", "--users-prefix", "it", "--password", "wrong", "--deadline", "10s"}
	if code := run(args, &out, &errb); code != 0 {
		t.Logf("exit %d", code)
	}
	var res LoginResult
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &res); err != nil || res.Failures != 1 || len(res.Errors) == 0 {
		t.Errorf("login with a wrong password: %+v (%v)", res, err)
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 {
		t.Errorf("no arguments: exit %d, want 2", code)
	}
	if code := run([]string{"nope"}, &out, &errb); code != 2 {
		t.Errorf("unknown phase: exit %d, want 2", code)
	}
	if code := run([]string{"msgs", "--users", "3", "--pairs", "2", "--deadline", "1s"}, &out, &errb); code != 1 {
		t.Errorf("too few accounts: exit %d, want 1", code)
	}
}

func TestMedianAndTable(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	res := map[string]map[string]*cell{
		"Wren":    {"login": {vals: []float64{400, 500, 600}}},
		"Prosody": {"login": {vals: []float64{200}}, "msgs_on": {errs: []string{"boom"}}},
	}
	out := renderTable(&compareOpts{wrenBin: "/nonexistent", reps: 3, idleReps: 1}, []string{"Wren", "Prosody"}, res, time.Now(), "1 1 1", "2 2 2")
	for _, want := range []string{"| 500 | 200 | 2.50 | 192 / 452 |", "Prosody msgs_on: boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
