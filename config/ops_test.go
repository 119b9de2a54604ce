package config

import (
	"strings"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	a, b := Default(), Default()
	if d := Diff(a, b); len(d) != 0 {
		t.Fatalf("Diff of equal configurations = %+v", d)
	}
	b.Domain = "example.org"
	b.C2S.Listen = "[::]:5222"
	b.StreamManagement.ResumeTimeout = Duration{time.Minute}
	b.Metrics.Listen = ""
	b.Auth.AllowPlain = false
	got := Diff(a, b)
	want := []Change{
		{"domain", `"localhost"`, `"example.org"`},
		{"c2s.listen", `"127.0.0.1:5222"`, `"[::]:5222"`},
		{"auth.allow_plain", "true", "false"},
		{"stream_management.resume_timeout", `"5m0s"`, `"1m0s"`},
		{"metrics.listen", `"127.0.0.1:9590"`, `""`},
	}
	if len(got) != len(want) {
		t.Fatalf("Diff = %+v, want %+v", got, want)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
			}
		}
		if !found {
			t.Errorf("Diff lacks %+v; got %+v", w, got)
		}
	}
}

func TestValidateMetrics(t *testing.T) {
	c := Default()
	c.Metrics.Listen = ""
	if err := c.Validate(); err != nil {
		t.Errorf("an empty metrics.listen (disabled) is refused: %v", err)
	}
	c.Metrics.Listen = "9090"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `metrics.listen "9090"`) {
		t.Errorf("metrics.listen without a host: %v", err)
	}
	c.Metrics.Listen = c.C2S.Listen
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "also a c2s listener address") {
		t.Errorf("metrics.listen on the c2s port: %v", err)
	}
}

func TestDiffHidesSecrets(t *testing.T) {
	a, b := Default(), Default()
	b.PushGateway.APNs.CertPassword = "hunter2"
	b.Components = map[string]Component{"bot.example.org": {Secret: "s3cret"}}
	for _, c := range Diff(a, b) {
		if strings.Contains(c.Old+c.New, "hunter2") || strings.Contains(c.Old+c.New, "s3cret") {
			t.Fatalf("a secret is shown in the diff: %+v", c)
		}
	}
	if len(Diff(a, b)) != 2 {
		t.Fatalf("diff %+v, want the two changed options", Diff(a, b))
	}
}
