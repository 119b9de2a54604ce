package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidatePushGateway(t *testing.T) {
	key := filepath.Join(t.TempDir(), "AuthKey.p8")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   string // "" for valid
	}{
		{"token auth complete", func(c *Config) {
			c.PushGateway.APNs = APNs{KeyFile: key, KeyID: "ABCDE12345", TeamID: "TEAM123456", Topic: "im.example.chat", Environment: "production"}
		}, ""},
		{"token auth without topic", func(c *Config) {
			c.PushGateway.APNs = APNs{KeyFile: key, KeyID: "ABCDE12345", TeamID: "TEAM123456", Environment: "production"}
		}, "apns.topic"},
		{"malformed key id", func(c *Config) {
			c.PushGateway.APNs = APNs{KeyFile: key, KeyID: "abc", TeamID: "TEAM123456", Topic: "t", Environment: "production"}
		}, "key_id \"abc\""},
		{"ids without key file", func(c *Config) { c.PushGateway.APNs.KeyID = "ABCDE12345" }, "key_file is not"},
		{"fcm project without credentials", func(c *Config) { c.PushGateway.FCM.ProjectID = "p" }, "credentials_file is not"},
		{"unknown environment", func(c *Config) { c.PushGateway.APNs.Environment = "staging" }, "environment"},
		{"gateway on the server's domain", func(c *Config) { c.PushGateway.Domain = c.Domain }, "own domain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			c.mutate(cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid configuration refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}
