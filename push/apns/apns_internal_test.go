package apns

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sideshow/apns2"

	"wren.im/wren/push/provider"
)

func TestEnvironmentRouting(t *testing.T) {
	prod, dev := apns2.HostProduction, apns2.HostDevelopment
	for _, tc := range []struct {
		env     Environment
		sandbox bool
		want    string
	}{
		{Auto, false, prod},
		{Auto, true, dev},
		{Production, true, prod},
		{Production, false, prod},
		{Development, false, dev},
		{Development, true, dev},
	} {
		s := &Sender{
			production:  &apns2.Client{Host: prod},
			development: &apns2.Client{Host: dev},
			env:         tc.env,
		}
		if got := s.clientFor(provider.Push{Sandbox: tc.sandbox}).Host; got != tc.want {
			t.Errorf("environment %q, sandbox %v: host %s, want %s", tc.env, tc.sandbox, got, tc.want)
		}
	}
}

func TestEndpointReplacesBothHosts(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{AuthKeyFile: path, KeyID: "ABCDE12345", TeamID: "TEAM123456", Topic: "im.example.chat"}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.production.Host != apns2.HostProduction || s.development.Host != apns2.HostDevelopment {
		t.Errorf("hosts %s, %s; want Apple's", s.production.Host, s.development.Host)
	}
	cfg.Endpoint = "https://127.0.0.1:8443/"
	if s, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if s.production.Host != "https://127.0.0.1:8443" || s.development.Host != "https://127.0.0.1:8443" {
		t.Errorf("hosts %s, %s; want the endpoint for both", s.production.Host, s.development.Host)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(httpTimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(httpTimeFormat), 0},
		{"99999999", 24 * time.Hour},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijkl", 10, "abcdefg…"},
		{strings.Repeat("é", 10), 10, "ééé…"},
	} {
		got := truncate(tc.in, tc.n)
		if got != tc.want || len(got) > tc.n {
			t.Errorf("truncate(%q, %d) = %q, want %q (at most %d bytes)", tc.in, tc.n, got, tc.want, tc.n)
		}
	}
}

func TestCanonicalUUID(t *testing.T) {
	for in, want := range map[string]string{
		"0F8FAD5B-D9CB-469F-A165-70867728950E": "0f8fad5b-d9cb-469f-a165-70867728950e",
		"0f8fad5b-d9cb-469f-a165-70867728950e": "0f8fad5b-d9cb-469f-a165-70867728950e",
		"0f8fad5bd9cb469fa16570867728950e":     "",
		"0f8fad5b-d9cb-469f-a165-70867728950g": "",
		"":                                     "",
	} {
		got, ok := canonicalUUID(in)
		if got != want || ok != (want != "") {
			t.Errorf("canonicalUUID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
