package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"
)

// Holder holds the certificate a server presents and lets a reload swap it
// while connections are being served: new TLS handshakes get the new
// certificate, established connections keep theirs. It is safe for
// concurrent use.
type Holder struct {
	cert atomic.Pointer[tls.Certificate]
}

// NewHolder returns a Holder presenting cert. cert.Leaf is parsed if unset.
func NewHolder(cert tls.Certificate) (*Holder, error) {
	h := &Holder{}
	if err := h.Set(cert); err != nil {
		return nil, err
	}
	return h, nil
}

// Set makes cert the certificate presented from now on. cert.Leaf is
// parsed if unset.
func (h *Holder) Set(cert tls.Certificate) error {
	if len(cert.Certificate) == 0 {
		return errors.New("certificate chain is empty")
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return err
		}
		cert.Leaf = leaf
	}
	h.cert.Store(&cert)
	return nil
}

// Certificate returns the certificate presented now.
func (h *Holder) Certificate() *tls.Certificate { return h.cert.Load() }

// Leaf returns the parsed leaf of the certificate presented now.
func (h *Holder) Leaf() *x509.Certificate { return h.cert.Load().Leaf }

// GetCertificate is a tls.Config.GetCertificate callback returning the
// current certificate.
func (h *Holder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.cert.Load(), nil
}
