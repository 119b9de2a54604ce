package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateS2S(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"bad listen", func(c *Config) { c.S2S.Listen = "5269" }, `s2s.listen "5269"`},
		{"same port as c2s", func(c *Config) { c.S2S.Listen = c.C2S.Listen }, "s2s.listen \"127.0.0.1:5222\" is also c2s.listen"},
		{"negotiate shorter than connect", func(c *Config) { c.S2S.NegotiateTimeout = Duration{time.Second} }, "s2s.negotiate_timeout (1s) is shorter"},
		{"bad address override", func(c *Config) { c.S2S.Addresses = map[string]string{"peer.example": "peer.example"} }, "is not host:port"},
		{"bad deny domain", func(c *Config) { c.S2S.Deny = []string{"a b"} }, "s2s.deny"},
		{"component is own domain", func(c *Config) {
			c.Components = map[string]Component{"localhost": {Secret: strings.Repeat("s", 20)}}
		}, "is the server's own domain"},
		{"short component secret", func(c *Config) {
			c.Components = map[string]Component{"gw.localhost": {Secret: "short"}}
		}, "secret must be at least 16 characters"},
		{"component without listener", func(c *Config) {
			c.Components = map[string]Component{"gw.localhost": {Secret: strings.Repeat("s", 20)}}
			c.S2S.ComponentListen = ""
		}, "s2s.component_listen is empty"},
		{"component on push gateway domain", func(c *Config) {
			c.Components = map[string]Component{"push.localhost": {Secret: strings.Repeat("s", 20)}}
		}, "push gateway's domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	c := Default()
	c.S2S.Listen = "0.0.0.0:5269"
	c.Components = map[string]Component{"gw.localhost": {Secret: strings.Repeat("s", 20)}}
	if err := c.Validate(); err != nil {
		t.Errorf("a valid federation configuration: %v", err)
	}
	if !c.S2S.Federates() || Default().S2S.Federates() {
		t.Error("Federates() does not follow s2s.listen")
	}
	if s := (Component{Secret: "hidden-secret"}).String(); strings.Contains(s, "hidden") {
		t.Errorf("Component.String() shows the secret: %s", s)
	}
}
