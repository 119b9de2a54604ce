package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"wren.im/wren/c2s"
	"wren.im/wren/metrics/metricstest"
	"wren.im/wren/offline"
)

// The collectors implement the interfaces of the features.
var (
	_ c2s.Metrics     = (*C2S)(nil)
	_ offline.Metrics = (*Offline)(nil)
)

func TestCountersMove(t *testing.T) {
	m := New("1.2.3")
	c := m.C2S
	c.Auth("PLAIN", c2s.AuthSuccess)
	c.Auth("PLAIN", c2s.AuthFailure)
	c.Auth("PLAIN", c2s.AuthFailure)
	c.Auth("X-EVIL-"+strings.Repeat("A", 100), c2s.AuthFailure)
	c.Auth("SCRAM-SHA-256", "nonsense") // an unknown outcome is ignored
	c.StanzaIn("message")
	c.StanzaIn("iq")
	c.StanzaIn("r") // not a stanza
	c.StanzaOut("presence")
	c.StanzaOut("a")
	c.ConnectionAccepted(true)
	c.Routed(30 * time.Microsecond)
	c.SMEnabled()
	c.SMHibernated()
	c.SMTimedOut()
	m.Offline.OfflineWrite(offline.WriteStored)
	m.Offline.OfflineWrite("weird")

	reg := m.Registry()
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"wren_c2s_auth_attempts_total", map[string]string{"mechanism": "PLAIN", "outcome": "success"}, 1},
		{"wren_c2s_auth_attempts_total", map[string]string{"mechanism": "PLAIN", "outcome": "failure"}, 2},
		{"wren_c2s_auth_attempts_total", map[string]string{"mechanism": "PLAIN", "outcome": "error"}, 0},
		{"wren_c2s_auth_attempts_total", map[string]string{"mechanism": "other", "outcome": "failure"}, 1},
		{"wren_c2s_auth_attempts_total", map[string]string{"mechanism": "SCRAM-SHA-256", "outcome": "success"}, 0},
		{"wren_c2s_stanzas_in_total", map[string]string{"kind": "message"}, 1},
		{"wren_c2s_stanzas_in_total", map[string]string{"kind": "iq"}, 1},
		{"wren_c2s_stanzas_in_total", map[string]string{"kind": "presence"}, 0},
		{"wren_c2s_stanzas_out_total", map[string]string{"kind": "presence"}, 1},
		{"wren_c2s_connections_accepted_total", map[string]string{"transport": "direct_tls"}, 1},
		{"wren_c2s_connections_accepted_total", map[string]string{"transport": "starttls"}, 0},
		{"wren_sm_events_total", map[string]string{"event": "enabled"}, 1},
		{"wren_sm_events_total", map[string]string{"event": "hibernated"}, 1},
		{"wren_sm_events_total", map[string]string{"event": "timed_out"}, 1},
		{"wren_sm_events_total", map[string]string{"event": "resumed"}, 0},
		{"wren_offline_writes_total", map[string]string{"outcome": "stored"}, 1},
		{"wren_offline_writes_total", map[string]string{"outcome": "error"}, 1},
		{"wren_route_duration_seconds", nil, 1},
	}
	for _, c := range checks {
		if got := metricstest.Value(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Label values stay bounded: only known mechanisms and "other".
	if n := metricstest.Series(t, reg, "wren_c2s_auth_attempts_total"); n != 6*3 {
		t.Errorf("wren_c2s_auth_attempts_total has %d series, want 18", n)
	}
}
func TestGaugeFunc(t *testing.T) {
	m := New("dev")
	n := 3.0
	if err := m.GaugeFunc("things", "Things.", func() float64 { return n }); err != nil {
		t.Fatal(err)
	}
	if err := m.GaugeFunc("things", "Things again.", func() float64 { return 0 }); err == nil {
		t.Error("registering a gauge twice succeeded")
	}
	n = 5
	if got := metricstest.Value(t, m.Registry(), "wren_things", nil); got != 5 {
		t.Errorf("wren_things = %v, want 5", got)
	}
}

func TestHandler(t *testing.T) {
	m := New("9.9")
	m.C2S.StanzaIn("message")
	var healthErr error
	srv := httptest.NewServer(m.Handler(func(ctx context.Context) error { return healthErr }, false))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{`wren_c2s_stanzas_in_total{kind="message"} 1`, `wren_build_info{goversion="`, `version="9.9"`, "go_goroutines", "process_"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz healthy: %d %q", code, body)
	}
	healthErr = errors.New("the database does not answer")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "the database does not answer") {
		t.Errorf("/healthz unhealthy: %d %q", code, body)
	}
	if code, _ := get("/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without profiling: %d, want 404", code)
	}
}

func TestHandlerProfiling(t *testing.T) {
	m := New("9.9")
	srv := httptest.NewServer(m.Handler(func(ctx context.Context) error { return nil }, true))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "goroutine profile:") {
		t.Errorf("/debug/pprof/goroutine with profiling: %d %.80q", resp.StatusCode, b)
	}
}
