// Package config holds Wren's configuration: the file format (TOML), the
// embedded defaults, command-line overrides and validation.
package config

import (
	"fmt"
	"time"
)

// Config is the whole server configuration. The zero value is not usable;
// start from Default().
type Config struct {
	// Domain is the XMPP domain served (the part after @ in user JIDs).
	Domain string `toml:"domain"`
	// DataDir holds the SQLite database, generated certificates and
	// runtime files. Relative paths are relative to the working directory.
	DataDir string `toml:"data_dir"`

	Log          Log          `toml:"log"`
	TLS          TLS          `toml:"tls"`
	C2S          C2S          `toml:"c2s"`
	Auth         Auth         `toml:"auth"`
	Registration Registration `toml:"registration"`
	Offline      Offline      `toml:"offline"`
	// Archive configures the message archive (XEP-0313) and stanza ids.
	Archive Archive `toml:"archive"`
	// StreamManagement configures XEP-0198 acks and session resumption.
	StreamManagement StreamManagement `toml:"stream_management"`
	// Metrics configures the Prometheus metrics and health check endpoint.
	Metrics Metrics `toml:"metrics"`
	// Push configures XEP-0357 push notifications for the server's users.
	Push Push `toml:"push"`
	// PushGateway configures the built-in app server for APNs and FCM.
	PushGateway PushGateway `toml:"push_gateway"`
	// PEP configures personal eventing (XEP-0163).
	PEP PEP `toml:"pep"`
	// Blocking configures blocking (XEP-0191).
	Blocking Blocking `toml:"blocking"`
	// S2S configures federation with other servers.
	S2S S2S `toml:"s2s"`
	// Components lists the external components (XEP-0114) by domain.
	Components map[string]Component `toml:"component"`
}

// StreamManagement configures XEP-0198 on client streams.
type StreamManagement struct {
	// ResumeTimeout is how long a session whose connection died is kept
	// for resumption (its stanzas queued, its presence unchanged) when the
	// client does not ask for a shorter or longer time. 0 disables resumption.
	ResumeTimeout Duration `toml:"resume_timeout"`
	// MaxResumeTimeout caps the time a client may ask for with max='...'.
	MaxResumeTimeout Duration `toml:"max_resume_timeout"`
	// AckTimeout is how long the server waits for the client to answer an
	// ack request before it treats the connection as dead (and hibernates
	// the session).
	AckTimeout Duration `toml:"ack_timeout"`
}

// Log configures logging through log/slog.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is text or json.
	Format string `toml:"format"`
}

// TLS names the certificate and key used for c2s. When both are empty a
// self-signed certificate for Domain is generated in DataDir on first start.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// CertDir is a directory searched for the domain's certificate when
	// CertFile is empty: DIR/<domain>/fullchain.pem with privkey.pem (the
	// layout of certbot's live/ directory), or DIR/<domain>.crt with
	// DIR/<domain>.key.
	CertDir string `toml:"cert_dir"`
	// WatchInterval is how often the certificate files are checked for a
	// change (a renewal), which is then loaded without a restart; 0 turns
	// the check off (SIGHUP and 'wren reload' still reload).
	WatchInterval Duration `toml:"watch_interval"`
	// ACME obtains certificates automatically (Let's Encrypt).
	ACME ACME `toml:"acme"`
}

// ACME configures automatic certificates from an ACME service such as
// Let's Encrypt, validated with HTTP-01 challenges.
type ACME struct {
	// Enabled obtains and renews certificates for the domain (and the push
	// gateway's) automatically. Off by default.
	Enabled bool `toml:"enabled"`
	// Email is the contact address given to the ACME service.
	Email string `toml:"email"`
	// DirectoryURL is the ACME directory; the default is Let's Encrypt's.
	DirectoryURL string `toml:"directory_url"`
	// HTTPListen is where the HTTP-01 challenges are answered; the ACME
	// service connects to port 80 of the domain, so this must be port 80
	// or be forwarded from it.
	HTTPListen string `toml:"http_listen"`
	// CAFile is a PEM file of certificates trusted for the ACME
	// directory's HTTPS, for a private ACME service; empty uses the
	// system's.
	CAFile string `toml:"ca_file"`
}

// C2S configures client connections.
type C2S struct {
	// Listen is the STARTTLS listener address (host:port); empty disables it.
	Listen string `toml:"listen"`
	// DirectTLS is the XEP-0368 direct TLS listener address; empty disables it.
	DirectTLS string `toml:"direct_tls"`
	// AllowPlaintextLoopback lets clients connecting from a loopback address
	// authenticate without STARTTLS. Off by default.
	AllowPlaintextLoopback bool `toml:"allow_plaintext_loopback"`
	// MaxStanzaBytes is the largest stanza accepted after authentication.
	MaxStanzaBytes int `toml:"max_stanza_bytes"`
	// MaxPreAuthBytes is the largest element accepted before authentication.
	MaxPreAuthBytes int `toml:"max_preauth_bytes"`
	// MaxDepth is the deepest element nesting accepted inside a stanza.
	MaxDepth int `toml:"max_depth"`
	// MaxAttrs is the largest number of attributes on one element.
	MaxAttrs int `toml:"max_attrs"`
	// AuthTimeout closes streams that have not authenticated and bound a
	// resource within this time.
	AuthTimeout Duration `toml:"auth_timeout"`
	// IdleTimeout closes authenticated streams that sent nothing (not even
	// a whitespace keepalive) for this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// KeepaliveInterval is how often the server sends a whitespace
	// keepalive on an otherwise quiet stream.
	KeepaliveInterval Duration `toml:"keepalive_interval"`
	// SendQueue is the number of stanzas queued for one session before the
	// session is considered stalled.
	SendQueue int `toml:"send_queue"`
	// MaxConnectionsPerIP caps simultaneous client connections from one
	// address; 0 means no cap.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// StanzaRate is how many stanzas per second one session may send on
	// average; a faster client is slowed down (not disconnected). 0 turns
	// the limit off.
	StanzaRate float64 `toml:"stanza_rate"`
	// StanzaBurst is how many stanzas a session may send at once above the rate.
	StanzaBurst int `toml:"stanza_burst"`
	// ByteRate is how many bytes per second one connection may send on
	// average (bursts up to one maximum stanza); a faster client is slowed
	// down. 0 turns the limit off.
	ByteRate int `toml:"byte_rate"`
}

// Auth configures authentication.
type Auth struct {
	// ScramIterations is the PBKDF2 iteration count for new credentials.
	ScramIterations int `toml:"scram_iterations"`
	// FailureDelay is the base delay added after a failed authentication
	// from one address; it doubles with each further failure, up to MaxFailureDelay.
	FailureDelay    Duration `toml:"failure_delay"`
	MaxFailureDelay Duration `toml:"max_failure_delay"`
	// AllowPlain offers SASL PLAIN (only ever over TLS).
	AllowPlain bool `toml:"allow_plain"`
	// ChannelBinding offers the SCRAM -PLUS mechanisms (RFC 5802 channel
	// binding, XEP-0440). Turn it off only behind a TLS-terminating proxy.
	ChannelBinding bool `toml:"channel_binding"`
}

// Registration configures in-band registration (XEP-0077).
type Registration struct {
	// Enabled allows anyone who can connect to create an account. Off by default.
	Enabled bool `toml:"enabled"`
	// MinPasswordLength rejects shorter passwords.
	MinPasswordLength int `toml:"min_password_length"`
	// MaxPerIP caps the accounts one address may register within
	// PerIPWindow; 0 means no cap.
	MaxPerIP    int      `toml:"max_per_ip"`
	PerIPWindow Duration `toml:"per_ip_window"`
}

// Offline configures offline message storage (XEP-0160).
type Offline struct {
	// MaxPerUser caps the queue of one user; further messages are bounced
	// with resource-constraint. 0 means no cap.
	MaxPerUser int `toml:"max_per_user"`
}

// Archive configures the server-side message archive (XEP-0313, Message
// Archive Management) that clients use to sync history between devices.
type Archive struct {
	// Enabled archives users' one-to-one messages and serves them to
	// their clients. On by default.
	Enabled bool `toml:"enabled"`
	// DefaultMode is what is archived for users who set no preference:
	// "always" (every message), "roster" (messages with contacts in the
	// user's roster) or "never".
	DefaultMode string `toml:"default_mode"`
	// Retention removes archived messages older than this; 0 keeps them
	// forever.
	Retention Duration `toml:"retention"`
	// MaxPerUser keeps at most this many messages per user, removing the
	// oldest; 0 means no cap.
	MaxPerUser int `toml:"max_per_user"`
	// CleanupInterval is how often Retention and MaxPerUser are applied.
	CleanupInterval Duration `toml:"cleanup_interval"`
}

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: write a number with a unit, such as \"500ms\", \"30s\", \"10m\" or \"1h\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
