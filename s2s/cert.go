package s2s

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// LoadRoots returns the certificate authorities trusted for other servers'
// certificates: the system's, plus those in the PEM file caFile when it is
// not empty.
func LoadRoots(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("s2s.ca_file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("s2s.ca_file %s: no PEM certificate found in it", caFile)
	}
	return pool, nil
}

// errNoCertificate is returned when a peer presented no certificate.
var errNoCertificate = errors.New("the server presented no certificate")

// verifyPeer checks that chain (leaf first, as presented in TLS) is valid
// for domain and issued by an authority in roots. Only DNS names are
// checked (RFC 6125 DNS-ID), as every deployed server certificate has them.
func verifyPeer(chain []*x509.Certificate, domain string, roots *x509.CertPool) error {
	if len(chain) == 0 {
		return errNoCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       domain,
		Roots:         roots,
		Intermediates: inter,
		// The same certificate serves both ends of s2s streams; servers
		// rarely carry the clientAuth usage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}
