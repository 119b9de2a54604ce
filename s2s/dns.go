package s2s

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
)

// DefaultPort is the port of a server that publishes no SRV record.
const DefaultPort = 5269

// target is one address to try for a remote domain.
type target struct {
	host      string
	port      uint16
	directTLS bool // XEP-0368: TLS from the first byte, no STARTTLS
}

func (t target) addr() string { return net.JoinHostPort(t.host, strconv.Itoa(int(t.port))) }

// Resolver looks up SRV records; *net.Resolver implements it.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

// errNoService means the domain publishes that it offers no s2s service
// (an SRV record with target ".").
var errNoService = errors.New("the domain says it has no XMPP server (SRV target \".\")")

// lookupTargets lists where to connect for domain, in order: the
// configured address, else the _xmpps-server._tcp (direct TLS) and
// _xmpp-server._tcp records together, ordered by priority and, within a
// priority, by weighted random choice (RFC 2782, XEP-0368), else the
// domain itself on port 5269.
func lookupTargets(ctx context.Context, res Resolver, overrides map[string]string, domain string) ([]target, error) {
	if addr, ok := overrides[domain]; ok {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, err
		}
		return []target{{host: host, port: uint16(p)}}, nil
	}
	type rec struct {
		srv    *net.SRV
		direct bool
	}
	var recs []rec
	noService := 0
	for _, direct := range []bool{true, false} {
		service := "xmpp-server"
		if direct {
			service = "xmpps-server"
		}
		_, addrs, _ := res.LookupSRV(ctx, service, "tcp", domain)
		if len(addrs) == 1 && (addrs[0].Target == "." || addrs[0].Target == "") {
			noService++
			continue
		}
		for _, a := range addrs {
			recs = append(recs, rec{a, direct})
		}
	}
	if noService == 2 || (noService == 1 && len(recs) == 0) {
		return nil, errNoService
	}
	if len(recs) == 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return []target{{host: domain, port: DefaultPort}}, nil
	}
	// Group by priority, then draw by weight inside each group.
	slices.SortStableFunc(recs, func(a, b rec) int { return int(a.srv.Priority) - int(b.srv.Priority) })
	out := make([]target, 0, len(recs))
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].srv.Priority == recs[i].srv.Priority {
			j++
		}
		group := slices.Clone(recs[i:j])
		slices.SortStableFunc(group, func(a, b rec) int {
			// Records of weight 0 first, so that they are rarely chosen.
			return min(int(a.srv.Weight), 1) - min(int(b.srv.Weight), 1)
		})
		for len(group) > 0 {
			total := 0
			for _, r := range group {
				total += int(r.srv.Weight)
			}
			pick := 0
			if total > 0 {
				n := rand.IntN(total + 1)
				for k, r := range group {
					n -= int(r.srv.Weight)
					if n <= 0 {
						pick = k
						break
					}
				}
			}
			r := group[pick]
			out = append(out, target{host: strings.TrimSuffix(r.srv.Target, "."), port: r.srv.Port, directTLS: r.direct})
			group = slices.Delete(group, pick, pick+1)
		}
		i = j
	}
	return out, nil
}
