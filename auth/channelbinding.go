package auth

import (
	"crypto"
	_ "crypto/sha256" // registers crypto.SHA256 for tls-server-end-point
	_ "crypto/sha512" // registers crypto.SHA384 and crypto.SHA512
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"mellium.im/sasl"
)

// tls-exporter parameters (RFC 9266 §2).
const (
	exporterLabel  = "EXPORTER-Channel-Binding"
	exporterLength = 32
)

// channelBindingData returns the channel binding data of the named type for
// this stream, or an error wrapping ErrMalformed if the type is not
// supported here.
func (e *Exchange) channelBindingData(n *sasl.Negotiator, name string) ([]byte, error) {
	if !slices.Contains(e.bindings, name) {
		return nil, fmt.Errorf("%w: unsupported channel binding type %q", ErrMalformed, name)
	}
	switch name {
	case TLSExporter:
		cs := n.TLSState()
		if cs == nil {
			return nil, errors.New("auth: tls-exporter: no TLS connection state")
		}
		data, err := cs.ExportKeyingMaterial(exporterLabel, nil, exporterLength)
		if err != nil {
			return nil, fmt.Errorf("auth: tls-exporter: %w", err)
		}
		return data, nil
	case TLSServerEndPoint:
		return serverEndPoint(e.cfg.ServerCert)
	}
	return nil, fmt.Errorf("%w: unsupported channel binding type %q", ErrMalformed, name)
}

// serverEndPoint computes the tls-server-end-point channel binding data: the
// hash of the DER-encoded server certificate (RFC 5929 §4.1).
func serverEndPoint(cert *x509.Certificate) ([]byte, error) {
	if cert == nil {
		return nil, errors.New("auth: tls-server-end-point: no server certificate")
	}
	h, ok := endPointHash(cert)
	if !ok {
		return nil, fmt.Errorf("auth: tls-server-end-point: undefined for signature algorithm %v", cert.SignatureAlgorithm)
	}
	d := h.New()
	d.Write(cert.Raw)
	return d.Sum(nil), nil
}

// endPointHash returns the hash function RFC 5929 §4.1 prescribes for
// tls-server-end-point with the certificate: that of its signature algorithm,
// except that MD5 and SHA-1 are replaced by SHA-256. ok is false when the
// signature algorithm uses no single hash function (Ed25519) or is unknown;
// the binding is undefined then.
func endPointHash(cert *x509.Certificate) (h crypto.Hash, ok bool) {
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.DSAWithSHA256, x509.ECDSAWithSHA256:
		return crypto.SHA256, true
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		return crypto.SHA384, true
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		return crypto.SHA512, true
	}
	return 0, false
}
