// Package certs provides the TLS certificate of the server: the one the
// operator configured, or a self-signed one generated in the data directory
// so that a new installation works out of the box.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// SelfSignedValidity is how long a generated self-signed certificate is valid.
const SelfSignedValidity = 365 * 24 * time.Hour

// LoadOrGenerate returns the certificate for domain, with Leaf set.
//
// When certFile or keyFile is set, both must be set and name PEM files;
// the error says which file is wrong and how. Otherwise the self-signed
// certificate dataDir/tls/<domain>.crt (key in <domain>.key) is used,
// generated on first start and generated anew when it has expired or
// cannot be loaded.
func LoadOrGenerate(dataDir, domain string, certFile, keyFile string, logger *slog.Logger) (tls.Certificate, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if certFile != "" || keyFile != "" {
		return loadConfigured(domain, certFile, keyFile, logger)
	}
	return loadOrGenerateSelfSigned(dataDir, domain, logger)
}

// loadConfigured loads the operator's certificate and key.
func loadConfigured(domain, certFile, keyFile string, logger *slog.Logger) (tls.Certificate, error) {
	switch {
	case certFile == "":
		return tls.Certificate{}, errors.New("tls: key_file is set but cert_file is not: set both, or neither to use a self-signed certificate")
	case keyFile == "":
		return tls.Certificate{}, errors.New("tls: cert_file is set but key_file is not: set both, or neither to use a self-signed certificate")
	}
	certPEM, err := readFile("certificate file", certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readFile("key file", keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := checkPEM(certPEM, "CERTIFICATE"); err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate file %s: %w", certFile, err)
	}
	if err := checkPEM(keyPEM, "PRIVATE KEY"); err != nil {
		return tls.Certificate{}, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate file %s with key file %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter):
		logger.Error("the TLS certificate has expired; clients will refuse to connect until you renew it",
			"cert_file", certFile, "expired", leaf.NotAfter)
	case now.Before(leaf.NotBefore):
		logger.Warn("the TLS certificate is not valid yet; check the system clock",
			"cert_file", certFile, "valid_from", leaf.NotBefore)
	}
	if err := leaf.VerifyHostname(asciiDomain(domain)); err != nil {
		logger.Warn("the TLS certificate does not name the configured domain; clients will refuse it",
			"cert_file", certFile, "domain", domain, "names", leaf.DNSNames)
	}
	return cert, nil
}

// loadOrGenerateSelfSigned uses or creates dataDir/tls/<domain>.crt/.key.
func loadOrGenerateSelfSigned(dataDir, domain string, logger *slog.Logger) (tls.Certificate, error) {
	if domain == "" {
		return tls.Certificate{}, errors.New("tls: cannot generate a certificate without a domain")
	}
	dir := filepath.Join(dataDir, "tls")
	certPath := filepath.Join(dir, domain+".crt")
	keyPath := filepath.Join(dir, domain+".key")

	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	for _, err := range []error{certErr, keyErr} {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
		}
	}
	reason := "no certificate configured in tls.cert_file and tls.key_file"
	if certErr == nil && keyErr == nil {
		cert, err := keyPair(certPEM, keyPEM)
		switch {
		case err != nil:
			logger.Warn("cannot load the self-signed certificate; generating a new one",
				"path", certPath, "err", err)
			reason = "the previous one could not be loaded"
		case time.Now().After(cert.Leaf.NotAfter):
			reason = "the previous one expired on " + cert.Leaf.NotAfter.UTC().Format(time.DateOnly)
		default:
			logger.Debug("using the self-signed TLS certificate", "path", certPath, "expires", cert.Leaf.NotAfter)
			return cert, nil
		}
	}

	names := []string{domain}
	if net.ParseIP(strings.Trim(domain, "[]")) == nil {
		names = append(names, "*."+domain)
	}
	if domain == "localhost" {
		names = append(names, "127.0.0.1", "::1")
	}
	certPEM, keyPEM, err := Generate(names, SelfSignedValidity)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate for %s: %w", domain, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	// The key is written first: a crash in between leaves a key without a
	// certificate, which the next start replaces.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	logger.Info("generated a self-signed TLS certificate; clients will warn about it until you set tls.cert_file and tls.key_file to a certificate from a certificate authority",
		"domain", domain, "path", certPath, "reason", reason, "expires", cert.Leaf.NotAfter)
	return cert, nil
}

// Generate creates a self-signed ECDSA P-256 certificate valid from now
// for validFor, naming domains in its subject alternative names (IP
// addresses as IP SANs, everything else as DNS names; the first entry is
// also the subject common name). It returns the certificate and its PKCS #8
// private key, both PEM encoded.
func Generate(domains []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("certificate validity %s must be positive", validFor)
	}
	now := time.Now()
	return generate(domains, now.Add(-time.Hour), now.Add(validFor))
}

// generate is Generate with an explicit validity period.
func generate(domains []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if len(domains) == 0 {
		return nil, nil, errors.New("a certificate needs at least one domain")
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: domains[0]},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, d := range domains {
		if ip := net.ParseIP(strings.Trim(d, "[]")); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		name, err := idna.Lookup.ToASCII(strings.TrimPrefix(d, "*."))
		if err != nil {
			return nil, nil, fmt.Errorf("domain %q: %w", d, err)
		}
		if strings.HasPrefix(d, "*.") {
			name = "*." + name
		}
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial number: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// keyPair parses a PEM certificate chain and key and sets Leaf.
func keyPair(certPEM, keyPEM []byte) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if cert.Leaf == nil {
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return tls.Certificate{}, err
		}
	}
	return cert, nil
}

// readFile reads a file the operator configured; what names it in errors.
func readFile(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return b, nil
}

// checkPEM explains what is wrong when data holds no PEM block whose type
// ends with want (so "PRIVATE KEY" accepts "EC PRIVATE KEY" and "RSA
// PRIVATE KEY").
func checkPEM(data []byte, want string) error {
	var found []string
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if strings.HasSuffix(block.Type, want) {
			return nil
		}
		found = append(found, block.Type)
	}
	if len(found) == 0 {
		return fmt.Errorf("no PEM data found; expected a %q block (-----BEGIN %s-----)", want, want)
	}
	return fmt.Errorf("expected a %q PEM block but found %s; are the certificate and key files swapped?", want, strings.Join(found, ", "))
}

// asciiDomain returns the A-label form of domain for hostname checks.
func asciiDomain(domain string) string {
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		return a
	}
	return domain
}

// writeFileAtomic writes data to a temporary file in the same directory and
// renames it over path, so that readers never see a partial file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// FindInDir looks in dir for the certificate of domain, in the layouts
// operators have: dir/<domain>/fullchain.pem with privkey.pem (certbot's
// live/ directory), or dir/<domain>.crt with dir/<domain>.key. The error
// lists the places it looked.
func FindInDir(dir, domain string) (certFile, keyFile string, err error) {
	d := asciiDomain(domain)
	candidates := [][2]string{
		{filepath.Join(dir, d, "fullchain.pem"), filepath.Join(dir, d, "privkey.pem")},
		{filepath.Join(dir, d+".crt"), filepath.Join(dir, d+".key")},
	}
	var tried []string
	for _, c := range candidates {
		_, errC := os.Stat(c[0])
		_, errK := os.Stat(c[1])
		if errC == nil && errK == nil {
			return c[0], c[1], nil
		}
		tried = append(tried, c[0]+" + "+c[1])
	}
	return "", "", fmt.Errorf("no certificate for %s in %s: looked for %s", domain, dir, strings.Join(tried, ", "))
}
