package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/config"
)

// Server reports whether a Wren server runs with the configuration's data
// directory.
func Server(ctx context.Context, cfg *config.Config, opts Options) []Finding {
	opts = opts.withDefaults(cfg)
	st, err := opts.Status(ctx)
	switch {
	case err == nil:
		return []Finding{{Level: OK, Check: "server", Message: fmt.Sprintf("Wren %s is running for %s (pid %d, up %s)",
			st.Version, st.Domain, st.PID, (time.Duration(st.UptimeSeconds) * time.Second).String())}}
	case errors.Is(err, admin.ErrNotRunning):
		return []Finding{{Level: OK, Check: "server", Message: "no Wren server is running with the data directory " + cfg.DataDir}}
	}
	return []Finding{{Level: Warn, Check: "server", Message: "cannot ask the running server: " + err.Error(),
		Fix: "run 'wren check' as the user the server runs as"}}
}

// Ports tries to bind every configured listener address. An address in
// use is fine when the running Wren listens there.
func Ports(ctx context.Context, cfg *config.Config, opts Options) []Finding {
	opts = opts.withDefaults(cfg)
	var out []Finding
	var status *admin.Status
	statusAsked := false
	for _, l := range []struct{ option, addr string }{
		{"c2s.listen", cfg.C2S.Listen},
		{"c2s.direct_tls", cfg.C2S.DirectTLS},
		{"metrics.listen", cfg.Metrics.Listen},
	} {
		if l.addr == "" {
			continue
		}
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil || port == "0" {
			continue // invalid (reported by validation) or an ephemeral port
		}
		ln, err := opts.Listen("tcp", l.addr)
		if err == nil {
			ln.Close()
			out = append(out, Finding{Level: OK, Check: "port", Message: fmt.Sprintf("%s %s is free for the server", l.option, l.addr)})
			continue
		}
		f := Finding{Level: Error, Check: "port"}
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			if !statusAsked {
				statusAsked = true
				if st, err := opts.Status(ctx); err == nil {
					status = &st
				}
			}
			if status != nil && listensOn(status, port) {
				f.Level = OK
				f.Message = fmt.Sprintf("%s %s is in use by the running Wren (pid %d)", l.option, l.addr, status.PID)
				break
			}
			f.Message = fmt.Sprintf("%s %s is in use by another program", l.option, l.addr)
			f.Fix = fmt.Sprintf("find it with: ss -ltnp 'sport = :%s'; stop it or choose another port for %s", port, l.option)
		case errors.Is(err, syscall.EACCES):
			f.Message = fmt.Sprintf("%s %s: permission denied (ports below 1024 need privileges)", l.option, l.addr)
			f.Fix = "use a port above 1023, or grant the capability (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE)"
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			f.Message = fmt.Sprintf("%s %s: the address is not one of this machine's", l.option, l.addr)
			f.Fix = "use an address of this machine, 0.0.0.0 (all IPv4 addresses) or [::] (all addresses)"
		default:
			f.Message = fmt.Sprintf("%s %s cannot be bound: %v", l.option, l.addr, err)
			f.Fix = "check the address in " + l.option
		}
		out = append(out, f)
	}
	return out
}

func listensOn(st *admin.Status, port string) bool {
	for _, l := range st.Listeners {
		if _, p, err := net.SplitHostPort(l.Addr); err == nil && p == port {
			return true
		}
	}
	return false
}

// isLocalDomain reports whether DNS checks make no sense for domain.
func isLocalDomain(domain string) bool {
	return domain == "localhost" || strings.HasSuffix(domain, ".localhost") || net.ParseIP(strings.Trim(domain, "[]")) != nil
}

// DNS looks up the SRV records of client and server connections and the
// addresses of the domain, and tells whether they point to this machine.
func DNS(ctx context.Context, cfg *config.Config, opts Options) []Finding {
	opts = opts.withDefaults(cfg)
	domain := cfg.Domain
	if isLocalDomain(domain) {
		return []Finding{{Level: OK, Check: "dns", Message: fmt.Sprintf("the domain %s is local: DNS checks skipped", domain)}}
	}
	local, _ := opts.LocalAddrs()
	d := dnsCheck{ctx: ctx, opts: opts, domain: domain, local: local}

	// The domain's own addresses: clients use them when there is no SRV
	// record.
	ips, err := d.lookupIP(domain)
	if err != nil && !isNotFound(err) {
		return []Finding{{Level: Warn, Check: "dns",
			Message: fmt.Sprintf("DNS lookups fail on this machine (%v), so the records of %s could not be checked", err, domain),
			Fix:     "check the network and /etc/resolv.conf, or run 'wren check' where DNS works"}}
	}
	var out []Finding
	clientSRV := d.srv(&out, "xmpp-client", cfg.C2S.Listen, "c2s.listen", "clients")
	directSRV := d.srv(&out, "xmpps-client", cfg.C2S.DirectTLS, "c2s.direct_tls", "clients using direct TLS")
	d.srv(&out, "xmpp-server", cfg.S2S.Listen, "s2s.listen", "other servers")
	if cfg.S2S.DirectTLS != "" {
		d.srv(&out, "xmpps-server", cfg.S2S.DirectTLS, "s2s.direct_tls", "other servers using direct TLS")
	}
	switch {
	case len(ips) > 0:
		out = append(out, d.pointsHere(domain, ips, fmt.Sprintf("%s resolves to %s", domain, joinIPs(ips))))
	case clientSRV || directSRV:
		out = append(out, Finding{Level: OK, Check: "dns", Message: fmt.Sprintf("%s has no A/AAAA record; clients use the SRV records", domain)})
	default:
		out = append(out, Finding{Level: Error, Check: "dns",
			Message: fmt.Sprintf("clients cannot find the server: %s has neither an A/AAAA record nor an _xmpp-client._tcp SRV record", domain),
			Fix:     fmt.Sprintf("add an A (and AAAA) record for %s with this server's public address, or SRV records pointing to the host that runs Wren", domain)})
	}
	return out
}

type dnsCheck struct {
	ctx    context.Context
	opts   Options
	domain string
	local  []net.IP
}

func (d dnsCheck) lookupIP(host string) ([]net.IP, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.LookupTimeout)
	defer cancel()
	addrs, err := d.opts.Resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, len(addrs))
	for i, a := range addrs {
		ips[i] = a.IP
	}
	return ips, nil
}

// srv checks _service._tcp.domain. addr is the listener the record should
// lead to ("" when the service is not served: s2s, or a disabled
// listener). It reports whether a usable record exists.
func (d dnsCheck) srv(out *[]Finding, service, addr, option, who string) bool {
	name := "_" + service + "._tcp." + d.domain
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.LookupTimeout)
	defer cancel()
	_, records, err := d.opts.Resolver.LookupSRV(ctx, service, "tcp", d.domain)
	_, port, _ := net.SplitHostPort(addr)
	add := func(level Level, msg, fix string) {
		*out = append(*out, Finding{Level: level, Check: "dns", Message: msg, Fix: fix})
	}
	if err != nil || len(records) == 0 {
		switch {
		case err != nil && !isNotFound(err):
			add(Warn, fmt.Sprintf("the SRV lookup of %s failed: %v", name, err), "check the domain's DNS servers")
		case service == "xmpp-server" && addr == "":
			add(OK, fmt.Sprintf("no SRV record %s; federation is off (s2s.listen is empty), so none is needed", name), "")
		case addr == "":
			add(OK, fmt.Sprintf("no SRV record %s, and %s is disabled", name, option), "")
		case port == "0":
			add(OK, fmt.Sprintf("no SRV record %s (%s uses an ephemeral port)", name, option), "")
		case service == "xmpp-client":
			add(Warn, fmt.Sprintf("no SRV record %s: %s fall back to %s port 5222", name, who, d.domain),
				fmt.Sprintf("add the record: %s. 3600 IN SRV 5 0 %s <host running Wren>.", name, port))
		case service == "xmpp-server":
			level := Warn
			if port == "5269" {
				level = OK
			}
			add(level, fmt.Sprintf("no SRV record %s: %s fall back to %s port 5269", name, who, d.domain),
				fixIf(level, fmt.Sprintf("add the record: %s. 3600 IN SRV 5 0 %s <host running Wren>.", name, port)))
		default:
			add(Warn, fmt.Sprintf("no SRV record %s: %s cannot find the direct TLS port", name, who),
				fmt.Sprintf("add the record: %s. 3600 IN SRV 5 0 %s <host running Wren>.", name, port))
		}
		return false
	}
	if len(records) == 1 && records[0].Target == "." {
		level := Error
		if addr == "" {
			level = OK
		}
		add(level, fmt.Sprintf("%s says the service is not available at %s (target \".\")", name, d.domain),
			fixIf(level, fmt.Sprintf("point %s to the host running Wren, or remove it", name)))
		return false
	}
	for _, r := range records {
		target := strings.TrimSuffix(r.Target, ".")
		where := fmt.Sprintf("%s points to %s port %d", name, target, r.Port)
		if addr == "" && service == "xmpp-server" {
			add(Warn, where+", but federation is off here (s2s.listen is empty): other servers cannot reach your users",
				"set s2s.listen (e.g. \"[::]:5269\") to federate, or remove the record")
			continue
		}
		if port != "" && port != "0" && strconv.Itoa(int(r.Port)) != port {
			add(Warn, fmt.Sprintf("%s, but %s uses port %s", where, option, port),
				fmt.Sprintf("make the record use port %s, or make sure a firewall or proxy forwards port %d to it", port, r.Port))
			continue
		}
		ips, err := d.lookupIP(target)
		if err != nil {
			add(Error, fmt.Sprintf("%s, which does not resolve: %v", where, err),
				fmt.Sprintf("add an A/AAAA record for %s", target))
			continue
		}
		*out = append(*out, d.pointsHere(target, ips, fmt.Sprintf("%s (%s)", where, joinIPs(ips))))
	}
	return true
}

// pointsHere reports whether ips include an address of this machine.
func (d dnsCheck) pointsHere(host string, ips []net.IP, what string) Finding {
	for _, ip := range ips {
		if slices.ContainsFunc(d.local, ip.Equal) {
			return Finding{Level: OK, Check: "dns", Message: what + ", an address of this machine"}
		}
	}
	return Finding{Level: Warn, Check: "dns",
		Message: what + ", none of which is an address of this machine",
		Fix:     fmt.Sprintf("fine behind NAT, a port forward or a load balancer; otherwise point %s to this server", host)}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func joinIPs(ips []net.IP) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

func fixIf(level Level, fix string) string {
	if level == OK {
		return ""
	}
	return fix
}
