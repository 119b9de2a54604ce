package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// MinScramIterations is the lowest PBKDF2 iteration count Validate accepts
// for auth.scram_iterations (RFC 7677 recommends at least 4096).
const MinScramIterations = 4096

// Validate checks the configuration and reports every problem it finds, not
// only the first, joined with errors.Join. Each problem names the option as
// it is written in the configuration file. Validate does not modify c.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	// Server identity and files.
	if c.Domain == "" {
		add("domain is empty: set it to the XMPP domain of your users, the part after @ in their addresses (for example domain = \"example.org\")")
	} else if j, err := jid.New("", c.Domain, ""); err != nil {
		add("domain %q is not a valid XMPP domain: %v", c.Domain, err)
	} else if strings.Contains(c.Domain, "..") {
		add("domain %q is not a valid XMPP domain: it contains an empty label (\"..\")", c.Domain)
	} else if norm := j.Domainpart(); norm != c.Domain {
		add("domain %q is not in canonical form: write it as %q", c.Domain, norm)
	}
	if c.DataDir == "" {
		add("data_dir is empty: set it to the directory for the database and generated certificates (for example data_dir = \"/var/lib/wren\")")
	}

	// Logging.
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level %q is unknown: use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format %q is unknown: use text or json", c.Log.Format)
	}

	// TLS.
	switch {
	case c.TLS.CertFile == "" && c.TLS.KeyFile == "":
		// A self-signed certificate is generated.
	case c.TLS.CertFile == "":
		add("tls.key_file is set but tls.cert_file is not: set both, or neither to use a generated self-signed certificate")
	case c.TLS.KeyFile == "":
		add("tls.cert_file is set but tls.key_file is not: set both, or neither to use a generated self-signed certificate")
	default:
		if err := checkReadable(c.TLS.CertFile); err != nil {
			add("tls.cert_file %q cannot be read: %v", c.TLS.CertFile, err)
		}
		if err := checkReadable(c.TLS.KeyFile); err != nil {
			add("tls.key_file %q cannot be read: %v", c.TLS.KeyFile, err)
		}
	}

	if c.TLS.CertDir != "" {
		if c.TLS.CertFile != "" {
			add("tls.cert_dir and tls.cert_file are both set: use one of them")
		} else if fi, err := os.Stat(c.TLS.CertDir); err != nil || !fi.IsDir() {
			add("tls.cert_dir %q is not a readable directory", c.TLS.CertDir)
		}
	}
	if a := c.TLS.ACME; a.Enabled {
		if c.TLS.CertFile != "" || c.TLS.CertDir != "" {
			add("tls.acme.enabled is set together with tls.cert_file or tls.cert_dir: use one way to get certificates")
		}
		if a.HTTPListen == "" {
			add("tls.acme.http_listen must be set: the ACME service validates the domain over HTTP on port 80")
		} else if err := checkAddress(a.HTTPListen); err != nil {
			add("tls.acme.http_listen %q: %v", a.HTTPListen, err)
		}
		if !strings.HasPrefix(a.DirectoryURL, "https://") {
			add("tls.acme.directory_url %q must be an https:// address", a.DirectoryURL)
		}
		if !strings.Contains(c.Domain, ".") {
			add("tls.acme needs a public domain name; %q has no dot", c.Domain)
		}
		if a.CAFile != "" {
			if err := checkReadable(a.CAFile); err != nil {
				add("tls.acme.ca_file: %v", err)
			}
		}
	}
	if c.TLS.WatchInterval.Duration < 0 {
		add("tls.watch_interval must not be negative (\"0s\" turns the check off)")
	}

	// Client listeners.
	if c.C2S.Listen == "" && c.C2S.DirectTLS == "" {
		add("c2s.listen and c2s.direct_tls are both empty: clients need at least one of them to connect")
	}
	if err := checkAddress(c.C2S.Listen); err != nil {
		add("c2s.listen %q: %v", c.C2S.Listen, err)
	}
	if err := checkAddress(c.C2S.DirectTLS); err != nil {
		add("c2s.direct_tls %q: %v", c.C2S.DirectTLS, err)
	}
	if c.C2S.Listen != "" && c.C2S.Listen == c.C2S.DirectTLS && !strings.HasSuffix(c.C2S.Listen, ":0") {
		add("c2s.listen and c2s.direct_tls are both %q: they need different ports", c.C2S.Listen)
	}

	// Client limits.
	positive := func(name string, v int) {
		if v <= 0 {
			add("%s is %d: it must be greater than 0", name, v)
		}
	}
	positive("c2s.max_stanza_bytes", c.C2S.MaxStanzaBytes)
	positive("c2s.max_preauth_bytes", c.C2S.MaxPreAuthBytes)
	positive("c2s.max_depth", c.C2S.MaxDepth)
	positive("c2s.max_attrs", c.C2S.MaxAttrs)
	positive("c2s.send_queue", c.C2S.SendQueue)
	if c.C2S.MaxPreAuthBytes > 0 && c.C2S.MaxStanzaBytes > 0 && c.C2S.MaxPreAuthBytes > c.C2S.MaxStanzaBytes {
		add("c2s.max_preauth_bytes (%d) is larger than c2s.max_stanza_bytes (%d): the limit before authentication must not exceed the one after it",
			c.C2S.MaxPreAuthBytes, c.C2S.MaxStanzaBytes)
	}
	positiveDuration := func(name string, d Duration) {
		if d.Duration <= 0 {
			add("%s is %s: it must be longer than 0 (for example \"30s\")", name, d.Duration)
		}
	}
	positiveDuration("c2s.auth_timeout", c.C2S.AuthTimeout)
	positiveDuration("c2s.idle_timeout", c.C2S.IdleTimeout)
	positiveDuration("c2s.keepalive_interval", c.C2S.KeepaliveInterval)

	// Authentication.
	if c.Auth.ScramIterations < MinScramIterations {
		add("auth.scram_iterations is %d: it must be at least %d to keep stored credentials hard to crack", c.Auth.ScramIterations, MinScramIterations)
	}
	if c.Auth.FailureDelay.Duration < 0 {
		add("auth.failure_delay is %s: it must not be negative (0 disables the delay)", c.Auth.FailureDelay.Duration)
	}
	if c.Auth.MaxFailureDelay.Duration < c.Auth.FailureDelay.Duration {
		add("auth.max_failure_delay (%s) is shorter than auth.failure_delay (%s): the cap must be at least the base delay",
			c.Auth.MaxFailureDelay.Duration, c.Auth.FailureDelay.Duration)
	}

	// Registration and offline storage.
	if c.Registration.MaxPerIP < 0 || c.Registration.PerIPWindow.Duration < 0 {
		add("registration.max_per_ip and registration.per_ip_window must not be negative")
	}
	if c.Registration.MaxPerIP > 0 && c.Registration.PerIPWindow.Duration == 0 {
		add("registration.per_ip_window must be set when registration.max_per_ip is")
	}
	if c.Registration.MinPasswordLength < 0 {
		add("registration.min_password_length is %d: it must not be negative", c.Registration.MinPasswordLength)
	}
	if c.Offline.MaxPerUser < 0 {
		add("offline.max_per_user is %d: it must not be negative (0 means no cap)", c.Offline.MaxPerUser)
	}

	// Message archive.
	switch c.Archive.DefaultMode {
	case "always", "roster", "never":
	default:
		add("archive.default_mode %q is unknown: use always, roster or never", c.Archive.DefaultMode)
	}
	if c.Archive.Retention.Duration < 0 {
		add("archive.retention is %s: it must not be negative (\"0s\" keeps messages forever)", c.Archive.Retention.Duration)
	}
	if c.Archive.MaxPerUser < 0 {
		add("archive.max_per_user is %d: it must not be negative (0 means no cap)", c.Archive.MaxPerUser)
	}
	if c.Archive.CleanupInterval.Duration < time.Second {
		add("archive.cleanup_interval is %s: it must be at least 1s (for example \"1h\")", c.Archive.CleanupInterval.Duration)
	}

	if c.C2S.MaxConnectionsPerIP < 0 || c.C2S.StanzaRate < 0 || c.C2S.StanzaBurst < 0 || c.C2S.ByteRate < 0 {
		add("c2s.max_connections_per_ip, c2s.stanza_rate, c2s.stanza_burst and c2s.byte_rate must not be negative (0 turns them off)")
	}
	if c.C2S.StanzaRate > 0 && c.C2S.StanzaBurst < 1 {
		add("c2s.stanza_burst must be at least 1 when c2s.stanza_rate is set")
	}

	// Metrics endpoint.
	if err := checkAddress(c.Metrics.Listen); err != nil {
		add("metrics.listen %q: %v", c.Metrics.Listen, err)
	} else if c.Metrics.Listen != "" && !strings.HasSuffix(c.Metrics.Listen, ":0") &&
		(c.Metrics.Listen == c.C2S.Listen || c.Metrics.Listen == c.C2S.DirectTLS) {
		add("metrics.listen %q is also a c2s listener address: give the metrics endpoint its own port", c.Metrics.Listen)
	}

	// Stream management.
	sm := c.StreamManagement
	if sm.ResumeTimeout.Duration < 0 || sm.MaxResumeTimeout.Duration < 0 || sm.AckTimeout.Duration < 0 {
		add("stream_management timeouts must not be negative")
	}
	if sm.MaxResumeTimeout.Duration < sm.ResumeTimeout.Duration {
		add("stream_management.max_resume_timeout (%s) is shorter than stream_management.resume_timeout (%s): the cap must be at least the default",
			sm.MaxResumeTimeout.Duration, sm.ResumeTimeout.Duration)
	}

	c.validatePush(add)
	c.validateS2S(add)
	if c.PEP.MaxNodes < 1 || c.PEP.MaxItems < 1 {
		add("pep.max_nodes and pep.max_items must be at least 1")
	}
	if c.Blocking.MaxItems < 1 {
		add("blocking.max_items is %d: it must be at least 1", c.Blocking.MaxItems)
	}

	return errors.Join(errs...)
}

func (c *Config) validatePush(add func(string, ...any)) {
	p := c.Push
	if p.MaxRegistrations < 0 {
		add("push.max_registrations is %d: it must not be negative (0 means no cap)", p.MaxRegistrations)
	}
	if p.MaxErrors < 1 {
		add("push.max_errors is %d: it must be at least 1", p.MaxErrors)
	}
	if p.HibernateTimeout.Duration < 0 {
		add("push.hibernate_timeout must not be negative (\"0s\" uses the stream_management timeouts)")
	}
	if p.ReplyTimeout.Duration < time.Second {
		add("push.reply_timeout is %s: it must be at least 1s", p.ReplyTimeout.Duration)
	}
	if p.RetryInterval.Duration < 10*time.Millisecond {
		add("push.retry_interval is %s: it must be at least 10ms (for example \"30s\")", p.RetryInterval.Duration)
	}
	g := c.PushGateway
	if !g.Enabled {
		return
	}
	if d := c.PushGatewayDomain(); d == c.Domain {
		add("push_gateway.domain %q is the server's own domain: use a subdomain such as push.%s", d, c.Domain)
	} else if _, err := jid.New("", d, ""); err != nil {
		add("push_gateway.domain %q is not a valid domain name: %v", d, err)
	}
	if g.QueueSize < 1 || g.Workers < 1 || g.MaxAttempts < 1 {
		add("push_gateway.queue_size, push_gateway.workers and push_gateway.max_attempts must be at least 1")
	}
	if g.RetryBase.Duration <= 0 || g.RetryMax.Duration < g.RetryBase.Duration {
		add("push_gateway.retry_base must be positive and push_gateway.retry_max at least retry_base")
	}
	if g.RequestTimeout.Duration < 100*time.Millisecond {
		add("push_gateway.request_timeout is %s: it must be at least 100ms", g.RequestTimeout.Duration)
	}
	if g.RecordRetention.Duration <= 0 {
		add("push_gateway.record_retention must be positive (for example \"720h\")")
	}
	a := g.APNs
	switch a.Environment {
	case "production", "development":
	default:
		add("push_gateway.apns.environment %q is unknown: use production or development", a.Environment)
	}
	if a.KeyFile != "" {
		if a.KeyID == "" || a.TeamID == "" {
			add("push_gateway.apns.key_file needs push_gateway.apns.key_id and push_gateway.apns.team_id (from your Apple developer account)")
		}
		if a.Topic == "" {
			add("push_gateway.apns.topic must be your app's bundle id (like im.example.chat) with token authentication (key_file)")
		}
		for _, f := range []struct{ name, v string }{{"key_id", a.KeyID}, {"team_id", a.TeamID}} {
			if f.v != "" && !appleID(f.v) {
				add("push_gateway.apns.%s %q is not an Apple id: 10 capital letters and digits, as shown in your developer account", f.name, f.v)
			}
		}
		if err := checkReadable(a.KeyFile); err != nil {
			add("push_gateway.apns.key_file: %v", err)
		}
	}
	if a.KeyFile == "" && (a.KeyID != "" || a.TeamID != "") {
		add("push_gateway.apns.key_id and team_id are set but key_file is not: give the .p8 key file too")
	}
	if a.CertFile != "" {
		if a.KeyFile != "" {
			add("push_gateway.apns: set key_file or cert_file, not both")
		}
		if err := checkReadable(a.CertFile); err != nil {
			add("push_gateway.apns.cert_file: %v", err)
		}
	}
	if g.FCM.ProjectID != "" && g.FCM.CredentialsFile == "" {
		add("push_gateway.fcm.project_id is set but credentials_file is not: FCM needs the service account key of the project")
	}
	if f := g.FCM.CredentialsFile; f != "" {
		if err := checkReadable(f); err != nil {
			add("push_gateway.fcm.credentials_file: %v", err)
		}
	}
}

// appleID reports whether s looks like an Apple key or team id.
func appleID(s string) bool {
	if len(s) != 10 {
		return false
	}
	for _, r := range s {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// checkAddress checks a listener address; empty means disabled and is fine.
func checkAddress(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not a host:port address (for example \"0.0.0.0:5222\" or \"[::]:5222\"; an empty string disables the listener): %w", err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	return nil
}

// checkReadable opens and closes the file to make sure it can be read.
func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("it is a directory, not a file")
	}
	return nil
}
