package config

import (
	"fmt"
	"net"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// S2S configures federation: server-to-server streams with other XMPP
// servers (RFC 6120), and the listener for external components (XEP-0114).
type S2S struct {
	// Listen is the address (host:port) where other servers connect and
	// upgrade with STARTTLS. Empty turns federation off: stanzas for other
	// domains are then returned with remote-server-not-found.
	Listen string `toml:"listen"`
	// DirectTLS is the XEP-0368 direct TLS listener address; empty disables it.
	DirectTLS string `toml:"direct_tls"`
	// RequireTLS refuses to exchange stanzas with a server over a stream
	// that is not encrypted, in both directions. On by default.
	RequireTLS bool `toml:"require_tls"`
	// RequireValidCertificates accepts only servers whose certificate is
	// valid for their domain (SASL EXTERNAL, XEP-0178); without it, a
	// server with a self-signed or otherwise unverifiable certificate is
	// authenticated with dialback (XEP-0220).
	RequireValidCertificates bool `toml:"require_valid_certificates"`
	// CAFile is a PEM file of certificate authorities trusted for other
	// servers' certificates, in addition to the system's.
	CAFile string `toml:"ca_file"`
	// Bidi uses bidirectional streams (XEP-0288) with the servers that
	// support them: a stream opened by either side carries stanzas both
	// ways, so two servers need one connection instead of two. On by
	// default.
	Bidi bool `toml:"bidi"`
	// ConnectTimeout bounds one TCP connection attempt to one address of a
	// remote server.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// NegotiateTimeout bounds the whole setup of a stream with a remote
	// server (lookups, connections, TLS, authentication); stanzas waiting
	// for it are returned with remote-server-timeout when it expires.
	NegotiateTimeout Duration `toml:"negotiate_timeout"`
	// IdleTimeout closes streams on which no stanza was sent or received
	// for this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// SendQueue caps the stanzas waiting for one remote domain; further
	// ones are returned with resource-constraint.
	SendQueue int `toml:"send_queue"`
	// Allow, when not empty, lists the only domains this server federates
	// with; Deny lists domains it never federates with.
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`
	// Addresses maps a remote domain to the host:port to connect to
	// instead of looking it up in DNS (split-horizon set-ups, tests).
	Addresses map[string]string `toml:"addresses"`
	// ComponentListen is where external components (XEP-0114) connect.
	// It is only opened when components are configured.
	ComponentListen string `toml:"component_listen"`
}

// Component is an external component (XEP-0114): a separate service that
// connects to the server and handles every stanza for its domain.
type Component struct {
	// Secret is the shared secret the component authenticates with.
	Secret string `toml:"secret"`
}

func (c *Config) validateS2S(add func(string, ...any)) {
	s := c.S2S
	if err := checkAddress(s.Listen); err != nil {
		add("s2s.listen %q: %v", s.Listen, err)
	}
	if err := checkAddress(s.DirectTLS); err != nil {
		add("s2s.direct_tls %q: %v", s.DirectTLS, err)
	}
	if err := checkAddress(s.ComponentListen); err != nil {
		add("s2s.component_listen %q: %v", s.ComponentListen, err)
	}
	used := map[string]string{}
	for _, l := range []struct{ name, addr string }{
		{"c2s.listen", c.C2S.Listen}, {"c2s.direct_tls", c.C2S.DirectTLS}, {"metrics.listen", c.Metrics.Listen},
		{"s2s.listen", s.Listen}, {"s2s.direct_tls", s.DirectTLS}, {"s2s.component_listen", s.ComponentListen},
	} {
		if l.addr == "" || strings.HasSuffix(l.addr, ":0") {
			continue
		}
		if other, ok := used[l.addr]; ok && strings.HasPrefix(l.name, "s2s.") {
			add("%s %q is also %s: give each listener its own port", l.name, l.addr, other)
		}
		used[l.addr] = l.name
	}
	if s.CAFile != "" {
		if err := checkReadable(s.CAFile); err != nil {
			add("s2s.ca_file %q cannot be read: %v", s.CAFile, err)
		}
	}
	if s.ConnectTimeout.Duration < 100*time.Millisecond {
		add("s2s.connect_timeout is %s: it must be at least 100ms (for example \"10s\")", s.ConnectTimeout.Duration)
	}
	if s.NegotiateTimeout.Duration < s.ConnectTimeout.Duration {
		add("s2s.negotiate_timeout (%s) is shorter than s2s.connect_timeout (%s): it bounds the whole setup, connection included",
			s.NegotiateTimeout.Duration, s.ConnectTimeout.Duration)
	}
	if s.IdleTimeout.Duration < time.Second {
		add("s2s.idle_timeout is %s: it must be at least 1s (for example \"10m\")", s.IdleTimeout.Duration)
	}
	if s.SendQueue < 1 {
		add("s2s.send_queue is %d: it must be at least 1", s.SendQueue)
	}
	checkDomain := func(option, d string) {
		if j, err := jid.New("", d, ""); err != nil {
			add("%s: %q is not a valid domain: %v", option, d, err)
		} else if j.Domainpart() != d {
			add("%s: write %q as %q", option, d, j.Domainpart())
		}
	}
	for _, d := range s.Allow {
		checkDomain("s2s.allow", d)
	}
	for _, d := range s.Deny {
		checkDomain("s2s.deny", d)
	}
	for d, addr := range s.Addresses {
		checkDomain("s2s.addresses", d)
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("s2s.addresses: the address of %s, %q, is not host:port (for example \"192.0.2.7:5269\")", d, addr)
		}
	}
	for d, comp := range c.Components {
		checkDomain("component", d)
		switch {
		case d == c.Domain:
			add("component %q is the server's own domain: use a subdomain such as gateway.%s", d, c.Domain)
		case c.PushGateway.Enabled && d == c.PushGatewayDomain():
			add("component %q is also the push gateway's domain: give one of them another name", d)
		}
		if len(comp.Secret) < 16 {
			add("component %q: secret must be at least 16 characters; generate one with 'openssl rand -hex 24'", d)
		}
	}
	if len(c.Components) > 0 && s.ComponentListen == "" {
		add("components are configured but s2s.component_listen is empty: set the address they connect to (for example \"127.0.0.1:5347\")")
	}
}

// Federates reports whether federation with other servers is on.
func (s S2S) Federates() bool { return s.Listen != "" || s.DirectTLS != "" }

// String keeps the secret out of logs and error messages that print a
// configuration.
func (c Component) String() string {
	return fmt.Sprintf("component(secret: %d characters)", len(c.Secret))
}
