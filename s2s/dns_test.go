package s2s

import (
	"context"
	"errors"
	"testing"
	"time"

	"wren.im/wren/s2s/s2stest"
)

func lookup(t *testing.T, d *s2stest.DNS, overrides map[string]string, domain string) ([]target, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return lookupTargets(ctx, d.Resolver(), overrides, domain)
}

func TestLookupTargets(t *testing.T) {
	d, err := s2stest.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Both SRV names: direct TLS and STARTTLS records share one priority order.
	d.SetSRV("_xmpps-server._tcp.both.example",
		s2stest.SRV{Priority: 10, Weight: 0, Port: 5270, Target: "tls.both.example"},
		s2stest.SRV{Priority: 30, Weight: 0, Port: 5270, Target: "late.both.example"})
	d.SetSRV("_xmpp-server._tcp.both.example",
		s2stest.SRV{Priority: 5, Weight: 1, Port: 5269, Target: "first.both.example"},
		s2stest.SRV{Priority: 20, Weight: 1, Port: 5269, Target: "plain.both.example"})
	// Only STARTTLS.
	d.SetSRV("_xmpp-server._tcp.plain.example", s2stest.SRV{Priority: 0, Weight: 0, Port: 5299, Target: "xmpp.plain.example"})
	// No service at all.
	d.SetSRV("_xmpp-server._tcp.none.example", s2stest.SRV{Target: "."})
	d.SetSRV("_xmpps-server._tcp.none.example", s2stest.SRV{Target: "."})

	got, err := lookup(t, d, nil, "both.example")
	if err != nil {
		t.Fatal(err)
	}
	want := []target{
		{"first.both.example", 5269, false},
		{"tls.both.example", 5270, true},
		{"plain.both.example", 5269, false},
		{"late.both.example", 5270, true},
	}
	if len(got) != len(want) {
		t.Fatalf("targets = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	got, err = lookup(t, d, nil, "plain.example")
	if err != nil || len(got) != 1 || got[0] != (target{"xmpp.plain.example", 5299, false}) {
		t.Errorf("STARTTLS-only domain: %v, %v", got, err)
	}
	// No records: the domain itself on 5269.
	got, err = lookup(t, d, nil, "bare.example")
	if err != nil || len(got) != 1 || got[0] != (target{"bare.example", DefaultPort, false}) {
		t.Errorf("domain without SRV records: %v, %v", got, err)
	}
	if _, err := lookup(t, d, nil, "none.example"); !errors.Is(err, errNoService) {
		t.Errorf("domain with SRV target '.': %v, want errNoService", err)
	}
	// A configured address wins over DNS.
	got, err = lookup(t, d, map[string]string{"both.example": "192.0.2.1:7000"}, "both.example")
	if err != nil || len(got) != 1 || got[0] != (target{"192.0.2.1", 7000, false}) {
		t.Errorf("override: %v, %v", got, err)
	}
}

// TestLookupWeights checks that within one priority the weights decide
// how often a record comes first (RFC 2782).
func TestLookupWeights(t *testing.T) {
	d, err := s2stest.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetSRV("_xmpp-server._tcp.w.example",
		s2stest.SRV{Priority: 1, Weight: 90, Port: 1, Target: "heavy.w.example"},
		s2stest.SRV{Priority: 1, Weight: 10, Port: 2, Target: "light.w.example"},
		s2stest.SRV{Priority: 2, Weight: 0, Port: 3, Target: "backup.w.example"})
	heavyFirst := 0
	const n = 200
	for range n {
		got, err := lookup(t, d, nil, "w.example")
		if err != nil || len(got) != 3 {
			t.Fatalf("%v, %v", got, err)
		}
		if got[2].host != "backup.w.example" {
			t.Fatalf("the lower priority record is not last: %v", got)
		}
		if got[0].host == "heavy.w.example" {
			heavyFirst++
		}
	}
	if heavyFirst < n*7/10 || heavyFirst == n {
		t.Errorf("the record with weight 90 of 100 came first %d times of %d", heavyFirst, n)
	}
}

func TestDialbackKey(t *testing.T) {
	secret := []byte("s3cr3t")
	k := dialbackKey(secret, "target.example", "sender.example", "D60000229F")
	if len(k) != 64 {
		t.Fatalf("key %q is not hex SHA-256", k)
	}
	if !checkDialbackKey(secret, "target.example", "sender.example", "D60000229F", k) {
		t.Error("own key not accepted")
	}
	for _, c := range [][3]string{
		{"other.example", "sender.example", "D60000229F"},
		{"target.example", "other.example", "D60000229F"},
		{"target.example", "sender.example", "other"},
	} {
		if checkDialbackKey(secret, c[0], c[1], c[2], k) {
			t.Errorf("key accepted for %v", c)
		}
	}
	if checkDialbackKey([]byte("other"), "target.example", "sender.example", "D60000229F", k) {
		t.Error("key accepted with another secret")
	}
}
