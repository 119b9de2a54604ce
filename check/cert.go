package check

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"wren.im/wren/config"
)

// ExpiryWarning is how close to its expiry a certificate draws a warning.
const ExpiryWarning = 14 * 24 * time.Hour

// Certificate checks the certificate the server would serve: that it and
// its key load, that it names the domain, how long it stays valid, and
// that its chain leads to a trusted root.
func Certificate(cfg *config.Config, opts Options) []Finding {
	opts = opts.withDefaults(cfg)
	certFile, keyFile := cfg.TLS.CertFile, cfg.TLS.KeyFile
	selfSignedDefault := certFile == "" && keyFile == ""
	if selfSignedDefault {
		certFile = filepath.Join(cfg.DataDir, "tls", cfg.Domain+".crt")
		keyFile = filepath.Join(cfg.DataDir, "tls", cfg.Domain+".key")
		if _, err := os.Stat(certFile); errors.Is(err, fs.ErrNotExist) {
			return []Finding{{Level: Warn, Check: "certificate",
				Message: fmt.Sprintf("no certificate configured and none generated yet: 'wren serve' will create a self-signed one in %s, which clients warn about", certFile),
				Fix:     "set tls.cert_file and tls.key_file to a certificate from a certificate authority (for example Let's Encrypt's fullchain.pem and privkey.pem)"}}
		}
	}
	if certFile == "" || keyFile == "" {
		return []Finding{{Level: Error, Check: "certificate",
			Message: "only one of tls.cert_file and tls.key_file is set",
			Fix:     "set both, or neither to use a generated self-signed certificate"}}
	}
	return checkCertFiles(cfg.Domain, certFile, keyFile, selfSignedDefault, opts)
}

func checkCertFiles(domain, certFile, keyFile string, generated bool, opts Options) []Finding {
	bad := func(msg, fix string) []Finding {
		return []Finding{{Level: Error, Check: "certificate", Message: msg, Fix: fix}}
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return bad(fmt.Sprintf("cannot read the certificate file: %v", err), "check tls.cert_file and the file's permissions (the server's user must be able to read it)")
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return bad(fmt.Sprintf("cannot read the key file: %v", err), "check tls.key_file and the file's permissions (the server's user must be able to read it)")
	}
	chain, err := parseChain(certPEM)
	if err != nil {
		return bad(fmt.Sprintf("%s: %v", certFile, err), "tls.cert_file must hold the PEM certificate chain, server certificate first")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return bad(fmt.Sprintf("%s with key %s cannot be used: %v", certFile, keyFile, err),
			"make sure tls.key_file is the private key of the certificate in tls.cert_file (not swapped, not from an older certificate)")
	}
	leaf := chain[0]
	var out []Finding
	add := func(level Level, msg, fix string) {
		out = append(out, Finding{Level: level, Check: "certificate", Message: msg, Fix: fix})
	}

	// Names.
	if err := leaf.VerifyHostname(asciiDomain(domain)); err != nil {
		add(Error, fmt.Sprintf("%s does not cover the domain %s (it names %s)", certFile, domain, describeNames(leaf)),
			fmt.Sprintf("get a certificate whose subject alternative names include %s", domain))
	} else {
		add(OK, fmt.Sprintf("%s covers the domain %s", certFile, domain), "")
	}

	// Validity.
	now := opts.Now()
	left := leaf.NotAfter.Sub(now)
	days := int(left.Hours() / 24)
	renew := "renew it (for example 'certbot renew'), then run 'wren reload'"
	if generated {
		renew = "delete it so that the next start generates a new one, or better, configure a certificate from a certificate authority"
	}
	switch {
	case now.Before(leaf.NotBefore):
		add(Error, fmt.Sprintf("%s is not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339)),
			"check the system clock, or wait until the certificate becomes valid")
	case left <= 0:
		add(Error, fmt.Sprintf("%s expired on %s (%d days ago): clients refuse to connect", certFile, leaf.NotAfter.UTC().Format(time.DateOnly), -days), renew)
	case left < ExpiryWarning:
		add(Warn, fmt.Sprintf("%s expires in %d days, on %s", certFile, days, leaf.NotAfter.UTC().Format(time.DateOnly)), renew)
	default:
		add(OK, fmt.Sprintf("%s is valid for %d more days, until %s", certFile, days, leaf.NotAfter.UTC().Format(time.DateOnly)), "")
	}

	// Chain of trust.
	if isSelfSigned(leaf) {
		add(Warn, fmt.Sprintf("%s is self-signed: clients warn about it or refuse it", certFile),
			"set tls.cert_file and tls.key_file to a certificate from a certificate authority (for example Let's Encrypt)")
		return out
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// Check the chain at a time the leaf is valid, so that an expired
	// certificate is reported once, above, and not again here.
	at := now
	if at.After(leaf.NotAfter) || at.Before(leaf.NotBefore) {
		at = leaf.NotAfter.Add(-time.Second)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         opts.Roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
		add(OK, fmt.Sprintf("%s chains to a trusted root (issued by %s)", certFile, leaf.Issuer.CommonName), "")
	case errors.As(err, &unknown) && len(chain) == 1:
		add(Error, fmt.Sprintf("%s holds only the server certificate; clients cannot verify it without the intermediate certificates (issued by %s)", certFile, leaf.Issuer.CommonName),
			"use the full chain file (for Let's Encrypt: fullchain.pem, not cert.pem) as tls.cert_file")
	case errors.As(err, &unknown):
		add(Error, fmt.Sprintf("%s does not chain to a root this system trusts (issued by %s): %v", certFile, leaf.Issuer.CommonName, err),
			"include every intermediate certificate in tls.cert_file, server certificate first; if it comes from a private CA, make sure your clients trust that CA")
	default:
		add(Error, fmt.Sprintf("%s does not verify: %v", certFile, err),
			"get a certificate for TLS server authentication from a certificate authority")
	}
	return out
}

// parseChain parses every CERTIFICATE block of a PEM file.
func parseChain(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the file cannot be parsed: %w", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no PEM certificate found (-----BEGIN CERTIFICATE-----)")
	}
	return chain, nil
}

// isSelfSigned reports whether the certificate signed itself.
func isSelfSigned(c *x509.Certificate) bool {
	// CheckSignatureFrom would insist on the CA flag, which self-signed
	// server certificates (Wren's own among them) usually lack.
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func describeNames(c *x509.Certificate) string {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		if c.Subject.CommonName != "" {
			return "only the common name " + c.Subject.CommonName + ", which clients ignore"
		}
		return "no names"
	}
	return strings.Join(names, ", ")
}

func asciiDomain(domain string) string {
	if net.ParseIP(domain) != nil {
		return domain
	}
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		return a
	}
	return domain
}
