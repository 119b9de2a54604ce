package s2stest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

// SRV is one SRV record of a test zone.
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string
}

// DNS is a DNS server on a loopback UDP port that answers A, AAAA and SRV
// queries from records the test sets; other names get NXDOMAIN. It is
// safe for concurrent use.
type DNS struct {
	conn *net.UDPConn
	done chan struct{}

	mu   sync.Mutex
	a    map[string][]netip.Addr
	srv  map[string][]SRV
	seen []string
}

// NewDNS starts a DNS server; Close stops it.
func NewDNS() (*DNS, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	d := &DNS{conn: c, done: make(chan struct{}), a: map[string][]netip.Addr{}, srv: map[string][]SRV{}}
	go d.serve()
	return d, nil
}

// Addr is the server's address (127.0.0.1:port).
func (d *DNS) Addr() string { return d.conn.LocalAddr().String() }

// Close stops the server.
func (d *DNS) Close() {
	d.conn.Close()
	<-d.done
}

func canonical(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) + "." }

// SetA sets the addresses of name.
func (d *DNS) SetA(name string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var list []netip.Addr
	for _, a := range addrs {
		list = append(list, netip.MustParseAddr(a))
	}
	d.a[canonical(name)] = list
}

// SetSRV sets the SRV records of name (such as _xmpp-server._tcp.example.org).
func (d *DNS) SetSRV(name string, recs ...SRV) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srv[canonical(name)] = recs
}

// Queries returns the names asked so far, in order, as "TYPE name".
func (d *DNS) Queries() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.seen...)
}

// Resolver returns a resolver that asks only this server.
func (d *DNS) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "udp", d.Addr())
		},
	}
}

func (d *DNS) serve() {
	defer close(d.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.conn.WriteToUDP(resp, from)
		}
	}
}

func (d *DNS) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	d.mu.Lock()
	d.seen = append(d.seen, q.Type.String()+" "+name)
	addrs, hasA := d.a[name]
	srvs, hasSRV := d.srv[name]
	d.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !hasA && !hasSRV {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	rrh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
	switch q.Type {
	case dnsmessage.TypeA:
		for _, a := range addrs {
			if a.Is4() {
				b.AResource(rrh, dnsmessage.AResource{A: a.As4()})
			}
		}
	case dnsmessage.TypeAAAA:
		for _, a := range addrs {
			if a.Is6() && !a.Is4In6() {
				b.AAAAResource(rrh, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	case dnsmessage.TypeSRV:
		for _, s := range srvs {
			target, err := dnsmessage.NewName(canonical(s.Target))
			if s.Target == "." {
				target, err = dnsmessage.NewName(".")
			}
			if err != nil {
				continue
			}
			b.SRVResource(rrh, dnsmessage.SRVResource{Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: target})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
