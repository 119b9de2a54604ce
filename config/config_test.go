package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// writeConfig writes content to a file in a fresh temporary directory and
// returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wren.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestDefaultValues(t *testing.T) {
	c := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"domain", c.Domain, "localhost"},
		{"data_dir", c.DataDir, "./data"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"c2s.listen", c.C2S.Listen, "127.0.0.1:5222"},
		{"c2s.direct_tls", c.C2S.DirectTLS, "127.0.0.1:5223"},
		{"c2s.max_stanza_bytes", c.C2S.MaxStanzaBytes, 262144},
		{"c2s.max_preauth_bytes", c.C2S.MaxPreAuthBytes, 16384},
		{"c2s.auth_timeout", c.C2S.AuthTimeout.Duration, 30 * time.Second},
		{"c2s.idle_timeout", c.C2S.IdleTimeout.Duration, 10 * time.Minute},
		{"c2s.keepalive_interval", c.C2S.KeepaliveInterval.Duration, time.Minute},
		{"auth.scram_iterations", c.Auth.ScramIterations, 10000},
		{"auth.failure_delay", c.Auth.FailureDelay.Duration, 500 * time.Millisecond},
		{"auth.max_failure_delay", c.Auth.MaxFailureDelay.Duration, 8 * time.Second},
		{"auth.allow_plain", c.Auth.AllowPlain, true},
		{"registration.enabled", c.Registration.Enabled, false},
		{"registration.min_password_length", c.Registration.MinPasswordLength, 8},
		{"offline.max_per_user", c.Offline.MaxPerUser, 1000},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Each call returns an independent value.
	c.Domain = "changed"
	if Default().Domain != "localhost" {
		t.Error("Default() shares state between calls")
	}
}

func TestExampleLoadsAsDefault(t *testing.T) {
	cfg, err := Load(writeConfig(t, Example()))
	if err != nil {
		t.Fatalf("Load(Example()) = %v", err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("Example() does not match Default():\n got %+v\nwant %+v", cfg, Default())
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() on Example() = %v", err)
	}
}

// TestExampleCoversEveryOption makes sure a new Config field is documented
// in Example(): every TOML key of the struct must be set in the example.
func TestExampleCoversEveryOption(t *testing.T) {
	var m map[string]any
	if _, err := toml.Decode(Example(), &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range tomlKeys(reflect.TypeFor[Config](), "") {
		var v any = m
		for _, part := range strings.Split(key, ".") {
			table, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = table[part]
		}
		if v == nil {
			t.Errorf("Example() does not set option %s", key)
		}
	}
}

// tomlKeys lists the dotted TOML keys of the leaf options of struct type t.
func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	durationType := reflect.TypeFor[Duration]()
	for f := range t.Fields() {
		name := f.Tag.Get("toml")
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			keys = append(keys, tomlKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

func TestLoadOverrides(t *testing.T) {
	path := writeConfig(t, `
domain = "example.org"
data_dir = "/var/lib/wren"

[log]
level = "debug"

[c2s]
listen = "0.0.0.0:5222"
direct_tls = ""
idle_timeout = "5m"
max_stanza_bytes = 100000

[auth]
allow_plain = false

[registration]
enabled = true
`)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Domain = "example.org"
	want.DataDir = "/var/lib/wren"
	want.Log.Level = "debug"
	want.C2S.Listen = "0.0.0.0:5222"
	want.C2S.DirectTLS = ""
	want.C2S.IdleTimeout.Duration = 5 * time.Minute
	want.C2S.MaxStanzaBytes = 100000
	want.Auth.AllowPlain = false
	want.Registration.Enabled = true
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load:\n got %+v\nwant %+v", cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

func TestLoadEmptyFileIsDefault(t *testing.T) {
	cfg, err := Load(writeConfig(t, "# nothing\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("empty file: got %+v", cfg)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string // substrings of the error
	}{
		{
			name:    "unknown key in table",
			content: "[c2s]\nlisten = \"127.0.0.1:5222\"\nlisen = \"x\"\n",
			want:    []string{"line 3: unknown option c2s.lisen"},
		},
		{
			name:    "unknown top-level key",
			content: "domian = \"example.org\"\n",
			want:    []string{"line 1: unknown option domian"},
		},
		{
			name:    "unknown dotted key",
			content: "c2s.lisen = \"x\"\n",
			want:    []string{"line 1: unknown option c2s.lisen"},
		},
		{
			name:    "unknown table reported once",
			content: "[muc]\nlisten = \"x\"\nport = 1\n",
			want:    []string{"line 1: unknown option muc"},
		},
		{
			name:    "several unknown keys",
			content: "foo = 1\n[log]\nlevl = \"debug\"\n",
			want:    []string{"unknown option foo", "line 3: unknown option log.levl"},
		},
		{
			name:    "bad duration",
			content: "[c2s]\nidle_timeout = \"ten minutes\"\n",
			want:    []string{"line 2", "c2s.idle_timeout", `invalid duration "ten minutes"`, `"30s"`},
		},
		{
			name:    "duration without unit",
			content: "[auth]\nfailure_delay = 500\n",
			want:    []string{"line 2", "auth.failure_delay", `invalid duration "500"`},
		},
		{
			name:    "wrong type",
			content: "[c2s]\nmax_depth = \"deep\"\n",
			want:    []string{"line 2: option c2s.max_depth: the value is a string, but an integer is expected"},
		},
		{
			name:    "value for a table",
			content: "log = \"debug\"\n",
			want:    []string{"line 1: option log: the value is a string, but a table is expected"},
		},
		{
			name:    "duplicate key",
			content: "domain = \"a.example\"\ndomain = \"b.example\"\n",
			want:    []string{"line 2", "domain"},
		},
		{
			name:    "syntax error",
			content: "domain = \"example.org\"\ndata_dir = \n",
			want:    []string{"line 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.content)
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config "+path+": ") {
				t.Errorf("error %q does not start with %q", msg, "config "+path+": ")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.toml")
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded on a missing file")
	}
	want := "config " + path + ": cannot read the file: no such file or directory"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestValidateProblems(t *testing.T) {
	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"empty domain", func(c *Config) { c.Domain = "" }, "domain is empty"},
		{"invalid domain", func(c *Config) { c.Domain = "exa mple.org" }, `domain "exa mple.org" is not a valid XMPP domain`},
		{"domain with port", func(c *Config) { c.Domain = "example.org:5222" }, `domain "example.org:5222" is not a valid XMPP domain`},
		{"domain empty label", func(c *Config) { c.Domain = "a..org" }, "empty label"},
		{"domain not canonical", func(c *Config) { c.Domain = "Example.ORG" }, `write it as "example.org"`},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "data_dir is empty"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, `log.level "verbose" is unknown: use debug, info, warn or error`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format "xml" is unknown: use text or json`},
		{"cert without key", func(c *Config) { c.TLS.CertFile = certFile }, "tls.cert_file is set but tls.key_file is not"},
		{"key without cert", func(c *Config) { c.TLS.KeyFile = certFile }, "tls.key_file is set but tls.cert_file is not"},
		{"unreadable key", func(c *Config) {
			c.TLS.CertFile = certFile
			c.TLS.KeyFile = filepath.Join(dir, "nope.pem")
		}, "tls.key_file \"" + filepath.Join(dir, "nope.pem") + "\" cannot be read: no such file or directory"},
		{"cert is directory", func(c *Config) {
			c.TLS.CertFile = dir
			c.TLS.KeyFile = certFile
		}, "it is a directory"},
		{"no listener", func(c *Config) { c.C2S.Listen, c.C2S.DirectTLS = "", "" }, "clients need at least one of them"},
		{"bad listen address", func(c *Config) { c.C2S.Listen = "5222" }, `c2s.listen "5222": not a host:port address`},
		{"bad direct tls port", func(c *Config) { c.C2S.DirectTLS = "127.0.0.1:99999" }, `c2s.direct_tls "127.0.0.1:99999": port "99999" must be a number`},
		{"named port", func(c *Config) { c.C2S.Listen = "127.0.0.1:xmpp" }, `port "xmpp" must be a number`},
		{"same address", func(c *Config) { c.C2S.DirectTLS = c.C2S.Listen }, "they need different ports"},
		{"max stanza", func(c *Config) { c.C2S.MaxStanzaBytes = 0 }, "c2s.max_stanza_bytes is 0: it must be greater than 0"},
		{"max preauth", func(c *Config) { c.C2S.MaxPreAuthBytes = -1 }, "c2s.max_preauth_bytes is -1"},
		{"max depth", func(c *Config) { c.C2S.MaxDepth = 0 }, "c2s.max_depth is 0"},
		{"max attrs", func(c *Config) { c.C2S.MaxAttrs = 0 }, "c2s.max_attrs is 0"},
		{"send queue", func(c *Config) { c.C2S.SendQueue = 0 }, "c2s.send_queue is 0"},
		{"preauth above stanza", func(c *Config) { c.C2S.MaxPreAuthBytes = c.C2S.MaxStanzaBytes + 1 }, "c2s.max_preauth_bytes (262145) is larger than c2s.max_stanza_bytes (262144)"},
		{"auth timeout", func(c *Config) { c.C2S.AuthTimeout.Duration = 0 }, "c2s.auth_timeout is 0s: it must be longer than 0"},
		{"idle timeout", func(c *Config) { c.C2S.IdleTimeout.Duration = -time.Second }, "c2s.idle_timeout is -1s"},
		{"keepalive", func(c *Config) { c.C2S.KeepaliveInterval.Duration = 0 }, "c2s.keepalive_interval is 0s"},
		{"iterations", func(c *Config) { c.Auth.ScramIterations = 1000 }, "auth.scram_iterations is 1000: it must be at least 4096"},
		{"failure delay", func(c *Config) { c.Auth.FailureDelay.Duration = -time.Second }, "auth.failure_delay is -1s: it must not be negative"},
		{"max failure delay", func(c *Config) { c.Auth.MaxFailureDelay.Duration = 100 * time.Millisecond }, "auth.max_failure_delay (100ms) is shorter than auth.failure_delay (500ms)"},
		{"min password length", func(c *Config) { c.Registration.MinPasswordLength = -1 }, "registration.min_password_length is -1"},
		{"offline cap", func(c *Config) { c.Offline.MaxPerUser = -5 }, "offline.max_per_user is -5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidateCollectsAllProblems(t *testing.T) {
	c := Default()
	c.Domain = ""
	c.Log.Level = "loud"
	c.C2S.Listen = "nope"
	c.Auth.ScramIterations = 1
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	multi, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate() error %T does not unwrap to a list", err)
	}
	if n := len(multi.Unwrap()); n != 4 {
		t.Errorf("Validate() reported %d problems, want 4:\n%v", n, err)
	}
}

func TestValidateAcceptsVariants(t *testing.T) {
	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	keyFile := filepath.Join(dir, "key.pem")
	for _, f := range []string{certFile, keyFile} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"only starttls", func(c *Config) { c.C2S.DirectTLS = "" }},
		{"only direct tls", func(c *Config) { c.C2S.Listen = "" }},
		{"ipv6 any", func(c *Config) { c.C2S.Listen = "[::]:5222" }},
		{"ephemeral ports", func(c *Config) { c.C2S.Listen, c.C2S.DirectTLS = "127.0.0.1:0", "127.0.0.1:0" }},
		{"ip domain", func(c *Config) { c.Domain = "192.0.2.1" }},
		{"idn domain", func(c *Config) { c.Domain = "bücher.example" }},
		{"tls files", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile }},
		{"json debug", func(c *Config) { c.Log.Level, c.Log.Format = "debug", "json" }},
		{"no failure delay", func(c *Config) { c.Auth.FailureDelay.Duration, c.Auth.MaxFailureDelay.Duration = 0, 0 }},
		{"no offline cap", func(c *Config) { c.Offline.MaxPerUser = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	c := Default()
	c.DataDir = "/var/lib/wren"
	if got := c.Path("tls"); got != "/var/lib/wren/tls" {
		t.Errorf("Path(tls) = %q", got)
	}
	if got := c.DatabasePath(); got != "/var/lib/wren/wren.db" {
		t.Errorf("DatabasePath() = %q", got)
	}
	c.DataDir = "./data"
	if got := c.DatabasePath(); got != "data/wren.db" {
		t.Errorf("DatabasePath() = %q", got)
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Duration != 90*time.Second {
		t.Errorf("UnmarshalText(1m30s) = %v, %v", d.Duration, err)
	}
	b, err := d.MarshalText()
	if err != nil || string(b) != "1m30s" {
		t.Errorf("MarshalText() = %q, %v", b, err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("UnmarshalText(soon) succeeded")
	}
}
