package certs

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestHolderSwaps(t *testing.T) {
	pair := func() tls.Certificate {
		t.Helper()
		certPEM, keyPEM, err := Generate([]string{"example.org"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		c.Leaf = nil // NewHolder and Set parse it
		return c
	}
	first, second := pair(), pair()
	h, err := NewHolder(first)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := h.GetCertificate(nil)
	if got.Leaf == nil || h.Leaf() != got.Leaf || string(got.Certificate[0]) != string(first.Certificate[0]) {
		t.Fatal("the holder does not serve the first certificate with its leaf")
	}
	if err := h.Set(second); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.GetCertificate(nil); string(got.Certificate[0]) != string(second.Certificate[0]) || h.Leaf().SerialNumber.Cmp(got.Leaf.SerialNumber) != 0 {
		t.Error("Set did not swap the certificate")
	}
	if err := h.Set(tls.Certificate{}); err == nil {
		t.Error("an empty certificate was accepted")
	}
	if got, _ := h.GetCertificate(nil); string(got.Certificate[0]) != string(second.Certificate[0]) {
		t.Error("a refused certificate replaced the current one")
	}
}
