// Package check finds what stands between a Wren configuration and a
// server that clients can reach: certificate problems, ports in use, and
// DNS records that are missing or point elsewhere. Every finding says what
// to do about it. 'wren check' runs it.
package check

import (
	"context"
	"crypto/x509"
	"net"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/config"
)

// Level is how serious a finding is.
type Level string

// Levels of findings.
const (
	OK    Level = "ok"
	Warn  Level = "warn"
	Error Level = "error"
)

// Finding is one result of a check.
type Finding struct {
	Level Level `json:"level"`
	// Check names the area: config, server, certificate, port or dns.
	Check   string `json:"check"`
	Message string `json:"message"`
	// Fix says what to do; empty for OK findings.
	Fix string `json:"fix,omitempty"`
}

// Resolver is the part of *net.Resolver the DNS checks use.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Options are the system facilities the checks use; the zero value uses
// the real ones.
type Options struct {
	// Resolver answers DNS queries (default net.DefaultResolver).
	Resolver Resolver
	// Roots verifies certificate chains (default: the system's roots).
	Roots *x509.CertPool
	// Now is the current time (default time.Now).
	Now func() time.Time
	// LocalAddrs lists this machine's addresses, to tell whether DNS
	// points here (default: the addresses of the network interfaces).
	LocalAddrs func() ([]net.IP, error)
	// Listen binds a TCP address, to tell whether a port is free
	// (default net.Listen).
	Listen func(network, address string) (net.Listener, error)
	// Status asks the running server for its status; it returns an
	// error wrapping admin.ErrNotRunning when no server runs (default:
	// the admin socket in the data directory).
	Status func(ctx context.Context) (admin.Status, error)
	// LookupTimeout bounds each DNS query (default 5s).
	LookupTimeout time.Duration
}

func (o Options) withDefaults(cfg *config.Config) Options {
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LocalAddrs == nil {
		o.LocalAddrs = interfaceAddrs
	}
	if o.Listen == nil {
		o.Listen = net.Listen
	}
	if o.Status == nil {
		path := cfg.Path(admin.SocketName)
		o.Status = func(ctx context.Context) (admin.Status, error) {
			c, err := admin.Dial(ctx, path)
			if err != nil {
				return admin.Status{}, err
			}
			defer c.Close()
			return c.Status(ctx)
		}
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 5 * time.Second
	}
	return o
}

// Run runs every check on a loaded configuration (it need not be valid;
// reporting validation problems is the caller's job).
func Run(ctx context.Context, cfg *config.Config, opts Options) []Finding {
	opts = opts.withDefaults(cfg)
	var out []Finding
	out = append(out, Server(ctx, cfg, opts)...)
	out = append(out, Certificate(cfg, opts)...)
	out = append(out, Ports(ctx, cfg, opts)...)
	out = append(out, DNS(ctx, cfg, opts)...)
	return out
}

// Failed reports whether any finding is an error.
func Failed(findings []Finding) bool {
	for _, f := range findings {
		if f.Level == Error {
			return true
		}
	}
	return false
}

func interfaceAddrs() ([]net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out, nil
}
