package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Default returns the built-in configuration: a server for "localhost" that
// keeps its data in ./data, listens for clients on the loopback interface
// only and uses a generated self-signed certificate. Every call returns a
// fresh value that the caller may modify.
func Default() *Config {
	return &Config{
		Domain:  "localhost",
		DataDir: "./data",
		Log: Log{
			Level:  "info",
			Format: "text",
		},
		TLS: TLS{
			WatchInterval: Duration{time.Minute},
			ACME: ACME{
				DirectoryURL: "https://acme-v02.api.letsencrypt.org/directory",
				HTTPListen:   ":80",
			},
		},
		C2S: C2S{
			Listen:                 "127.0.0.1:5222",
			DirectTLS:              "127.0.0.1:5223",
			AllowPlaintextLoopback: false,
			MaxStanzaBytes:         262144,
			MaxPreAuthBytes:        16384,
			MaxDepth:               32,
			MaxAttrs:               64,
			AuthTimeout:            Duration{30 * time.Second},
			IdleTimeout:            Duration{10 * time.Minute},
			KeepaliveInterval:      Duration{60 * time.Second},
			SendQueue:              1024,
			MaxConnectionsPerIP:    100,
			StanzaRate:             500,
			StanzaBurst:            1000,
			ByteRate:               262144,
		},
		Auth: Auth{
			ScramIterations: 10000,
			FailureDelay:    Duration{500 * time.Millisecond},
			MaxFailureDelay: Duration{8 * time.Second},
			AllowPlain:      true,
			ChannelBinding:  true,
		},
		Registration: Registration{
			Enabled:           false,
			MinPasswordLength: 8,
			MaxPerIP:          5,
			PerIPWindow:       Duration{time.Hour},
		},
		Offline: Offline{
			MaxPerUser: 1000,
		},
		Archive: Archive{
			Enabled:         true,
			DefaultMode:     "always",
			CleanupInterval: Duration{time.Hour},
		},
		Metrics: Metrics{
			Listen: "127.0.0.1:9590",
		},
		StreamManagement: StreamManagement{
			ResumeTimeout:    Duration{300 * time.Second},
			MaxResumeTimeout: Duration{24 * time.Hour},
			AckTimeout:       Duration{60 * time.Second},
		},
		Push: Push{
			Enabled:          true,
			MaxRegistrations: 10,
			MaxErrors:        5,
			PlaceholderBody:  "New message",
			HibernateTimeout: Duration{72 * time.Hour},
			ReplyTimeout:     Duration{30 * time.Second},
			RetryInterval:    Duration{30 * time.Second},
		},
		PushGateway: PushGateway{
			Enabled:         true,
			QueueSize:       10000,
			Workers:         8,
			MaxAttempts:     6,
			RetryBase:       Duration{time.Second},
			RetryMax:        Duration{5 * time.Minute},
			RequestTimeout:  Duration{10 * time.Second},
			RecordRetention: Duration{30 * 24 * time.Hour},
			APNs:            APNs{Environment: "production"},
		},
		PEP: PEP{
			MaxNodes: 1000,
			MaxItems: 256,
		},
		Blocking: Blocking{
			MaxItems: 1000,
		},
		S2S: S2S{
			RequireTLS:       true,
			Bidi:             true,
			ConnectTimeout:   Duration{10 * time.Second},
			NegotiateTimeout: Duration{30 * time.Second},
			IdleTimeout:      Duration{10 * time.Minute},
			SendQueue:        1000,
			Allow:            []string{},
			Deny:             []string{},
			Addresses:        map[string]string{},
			ComponentListen:  "127.0.0.1:5347",
		},
		Components: map[string]Component{},
	}
}

// PushGatewayDomain returns the push gateway's domain: PushGateway.Domain,
// or "push." followed by the server's domain.
func (c *Config) PushGatewayDomain() string {
	if c.PushGateway.Domain != "" {
		return c.PushGateway.Domain
	}
	return "push." + c.Domain
}

// Load reads the TOML file at path over the defaults: options the file does
// not mention keep their Default value. An option the file names but Wren
// does not know is an error, so that a typing mistake is not silently
// ignored. Load does not validate the result; call Validate for that.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config %s: cannot read the file: %w", path, err)
	}
	cfg := Default()
	md, err := toml.Decode(string(data), cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s", path, describeTOMLError(err))
	}
	if unknown := unknownKeys(md.Undecoded()); len(unknown) > 0 {
		lines := strings.Split(string(data), "\n")
		errs := make([]error, 0, len(unknown))
		for _, k := range unknown {
			if n := findKeyLine(lines, k); n > 0 {
				errs = append(errs, fmt.Errorf("config %s: line %d: unknown option %s", path, n, k))
			} else {
				errs = append(errs, fmt.Errorf("config %s: unknown option %s", path, k))
			}
		}
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// describeTOMLError turns an error of the toml package into text for an
// operator: the line, the option if known, and what is wrong.
func describeTOMLError(err error) string {
	var line, key, msg string
	var pe toml.ParseError
	if errors.As(err, &pe) {
		key, msg = pe.LastKey, pe.Message
		if pe.Position.Line > 0 {
			line = strconv.Itoa(pe.Position.Line)
		}
	} else {
		// Type mismatches are plain errors:
		// toml: line 2 (last key "c2s.max_depth"): incompatible types: ...
		msg = err.Error()
		if m := lastKeyRE.FindStringSubmatch(msg); m != nil {
			line, key = m[1], m[2]
		}
	}
	msg = strings.TrimPrefix(lastKeyRE.ReplaceAllString(msg, ""), "toml: ")
	if m := typeErrorRE.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("the value is %s, but %s is expected", typeName(m[1]), typeName(m[2]))
	} else if m := mismatchRE.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("the value is %s, but %s is expected", typeName(m[2]), typeName(m[1]))
	}
	if key != "" {
		msg = "option " + key + ": " + msg
	}
	if line != "" {
		msg = "line " + line + ": " + msg
	}
	return msg
}

// Patterns in the messages of the toml package.
var (
	lastKeyRE   = regexp.MustCompile(`^(?:toml: )?(?:line (\d+) )?\(last key "([^"]*)"\): `)
	typeErrorRE = regexp.MustCompile(`^incompatible types: TOML value has type (\S+); destination has type (.+)$`)
	mismatchRE  = regexp.MustCompile(`^type mismatch for \S+: expected (\S+) but found (\S+)$`)
)

// typeName turns a type name in an error of the toml package into words.
func typeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"), t == "integer":
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool", t == "boolean":
		return "true or false"
	case strings.HasPrefix(t, "map"), t == "struct", t == "table":
		return "a table"
	case strings.HasPrefix(t, "[]"), t == "array", t == "slice":
		return "an array"
	case strings.Contains(t, "time"):
		return "a date or time"
	}
	return "a " + t
}

// unknownKeys returns the undecoded keys as dotted names, leaving out keys
// inside an unknown table (reporting the table is enough).
func unknownKeys(keys []toml.Key) []string {
	var out []string
	var tables []toml.Key
next:
	for _, k := range keys {
		for _, t := range tables {
			if len(k) > len(t) && equalKeys(k[:len(t)], t) {
				continue next
			}
		}
		tables = append(tables, k)
		out = append(out, k.String())
	}
	return out
}

func equalKeys(a, b toml.Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// findKeyLine makes a best effort to find the 1-based line on which the
// dotted key is written, as "[table]", "key = ..." inside its table, or
// "table.key = ...". It returns 0 when it cannot tell.
func findKeyLine(lines []string, dotted string) int {
	parts := strings.Split(dotted, ".")
	table := ""
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			end := strings.Index(line, "]")
			if end < 0 {
				continue
			}
			table = strings.TrimSpace(strings.Trim(line[:end+1], "[]"))
			if table == dotted {
				return i + 1
			}
			continue
		}
		eq := strings.Index(line, "=")
		if eq < 0 {
			continue
		}
		key := strings.ReplaceAll(strings.TrimSpace(line[:eq]), " ", "")
		full := key
		if table != "" {
			full = table + "." + key
		}
		if full == dotted || (len(parts) > 1 && strings.HasPrefix(dotted, full+".")) {
			return i + 1
		}
	}
	return 0
}

// Path returns name inside the data directory.
func (c *Config) Path(name string) string {
	return filepath.Join(c.DataDir, name)
}

// DatabasePath is the SQLite database file: wren.db in the data directory.
func (c *Config) DatabasePath() string {
	return c.Path("wren.db")
}
