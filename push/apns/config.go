package apns

import (
	"crypto"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"
)

// Environment selects APNs' production or development (sandbox) service.
type Environment string

// Environments.
const (
	// Auto sends to production, or to development for a push whose
	// Sandbox flag is set (a device running a development build). It is
	// the default.
	Auto Environment = ""
	// Production always sends to api.push.apple.com.
	Production Environment = "production"
	// Development always sends to api.sandbox.push.apple.com.
	Development Environment = "development"
)

// Config configures the APNs sender. Use token authentication (AuthKeyFile,
// KeyID, TeamID; recommended, one key serves every app of the team and
// both environments) or certificate authentication (CertFile), not both.
type Config struct {
	// AuthKeyFile is the path of the .p8 signing key downloaded from the
	// Apple developer account (Certificates, Identifiers & Profiles →
	// Keys), usually named AuthKey_<KeyID>.p8.
	AuthKeyFile string
	// KeyID is the 10-character id of that key.
	KeyID string
	// TeamID is the 10-character id of the Apple developer team.
	TeamID string

	// CertFile is the path of an APNs client certificate: a PKCS#12 file
	// (.p12, as exported from Keychain Access) or a PEM file holding the
	// certificate and, unless CertKeyFile is set, its private key.
	CertFile string
	// CertKeyFile is the path of the PEM private key when it is not in
	// CertFile.
	CertKeyFile string
	// CertPassword decrypts the PKCS#12 file or an encrypted PEM key.
	CertPassword string

	// Topic is the default apns-topic: the app's bundle id. Required with
	// token authentication; with a certificate it defaults to the
	// certificate's UID (the bundle id it was issued for).
	Topic string

	// Environment chooses production, development or, by default, per
	// push (see Auto).
	Environment Environment

	// Endpoint, for tests, replaces APNs' URL for both environments
	// (https://host:port).
	Endpoint string
	// RootCAs, for tests, are the roots that the server's certificate must
	// chain to; the system roots when nil.
	RootCAs *x509.CertPool
}

// credentials is what loading a Config yields.
type credentials struct {
	token *token.Token    // token auth
	cert  tls.Certificate // certificate auth
	topic string
}

// load validates c and reads its files. Every problem found is reported,
// joined.
func (c Config) load(now time.Time) (credentials, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("apns: "+format, args...))
	}
	useToken := c.AuthKeyFile != "" || c.KeyID != "" || c.TeamID != ""
	useCert := c.CertFile != "" || c.CertKeyFile != ""
	switch {
	case useToken && useCert:
		bad("both token authentication (AuthKeyFile, KeyID, TeamID) and certificate authentication (CertFile) are configured; keep one of them")
	case !useToken && !useCert:
		bad("no credentials: set AuthKeyFile, KeyID and TeamID (token authentication, recommended) or CertFile (certificate authentication)")
	}
	switch c.Environment {
	case Auto, Production, Development:
	default:
		bad("Environment %q is not %q, %q or empty (per push)", c.Environment, Production, Development)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			bad("Endpoint %q must be an https://host[:port] URL without a path", c.Endpoint)
		}
	}
	if c.Topic != "" && strings.ContainsAny(c.Topic, " \t\r\n/") {
		bad("Topic %q is not a bundle id (like im.example.chat)", c.Topic)
	}

	var cred credentials
	switch {
	case useToken && !useCert:
		if c.Topic == "" {
			bad("Topic is required with token authentication: set it to the app's bundle id (like im.example.chat)")
		}
		if tok, err := c.loadToken(); err != nil {
			errs = append(errs, err)
		} else {
			cred.token = tok
		}
	case useCert && !useToken:
		cert, err := c.loadCert(now)
		if err != nil {
			errs = append(errs, err)
			break
		}
		cred.cert = cert
		if c.Topic == "" {
			cred.topic = certUID(cert.Leaf)
			if cred.topic == "" {
				bad("Topic is required: the certificate in CertFile %q names no bundle id (UID); set Topic to the app's bundle id", c.CertFile)
			}
		}
	}
	if c.Topic != "" {
		cred.topic = c.Topic
	}
	if len(errs) > 0 {
		return credentials{}, errors.Join(errs...)
	}
	return cred, nil
}

// isAppleID reports whether s looks like a key or team id: 10 characters,
// uppercase letters and digits.
func isAppleID(s string) bool {
	if len(s) != 10 {
		return false
	}
	for _, r := range s {
		if !('A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// loadToken checks the token authentication fields and reads the key.
func (c Config) loadToken() (*token.Token, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("apns: "+format, args...))
	}
	switch {
	case c.KeyID == "":
		bad("KeyID is required with AuthKeyFile: the 10-character id shown next to the key in the Apple developer account (it is also in the file name AuthKey_<KeyID>.p8)")
	case !isAppleID(c.KeyID):
		bad("KeyID %q is not a key id: 10 uppercase letters and digits, as shown next to the key in the Apple developer account", c.KeyID)
	}
	switch {
	case c.TeamID == "":
		bad("TeamID is required with AuthKeyFile: the 10-character team id shown under Membership in the Apple developer account")
	case !isAppleID(c.TeamID):
		bad("TeamID %q is not a team id: 10 uppercase letters and digits, shown under Membership in the Apple developer account", c.TeamID)
	}
	if c.AuthKeyFile == "" {
		bad("AuthKeyFile is required with KeyID and TeamID: the path of the .p8 key downloaded from the Apple developer account (Keys)")
		return nil, errors.Join(errs...)
	}
	base := filepath.Base(c.AuthKeyFile)
	if id, ok := strings.CutPrefix(strings.TrimSuffix(base, ".p8"), "AuthKey_"); ok && isAppleID(id) && isAppleID(c.KeyID) && id != c.KeyID {
		bad("KeyID %q does not match AuthKeyFile %q, which is the key %s: use that key's id or the right file", c.KeyID, c.AuthKeyFile, id)
	}
	pemBytes, err := os.ReadFile(c.AuthKeyFile)
	if err != nil {
		bad("AuthKeyFile: cannot read the .p8 key: %w", err)
		return nil, errors.Join(errs...)
	}
	key, err := token.AuthKeyFromBytes(pemBytes)
	switch {
	case errors.Is(err, token.ErrAuthKeyNotPem):
		bad("AuthKeyFile %q is not a .p8 key (no PEM block): use the file downloaded from the Apple developer account, unmodified", c.AuthKeyFile)
	case errors.Is(err, token.ErrAuthKeyNotECDSA):
		bad("AuthKeyFile %q holds a key that is not an APNs key (not ECDSA): use the .p8 file from the Apple developer account (Keys)", c.AuthKeyFile)
	case err != nil:
		bad("AuthKeyFile %q is not a PKCS#8 private key: %w", c.AuthKeyFile, err)
	case key.Curve != elliptic.P256():
		bad("AuthKeyFile %q holds an ECDSA key on %s; APNs keys are P-256", c.AuthKeyFile, key.Curve.Params().Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	tok := &token.Token{AuthKey: key, KeyID: c.KeyID, TeamID: c.TeamID}
	if _, err := tok.Generate(); err != nil {
		return nil, fmt.Errorf("apns: AuthKeyFile %q: cannot sign a provider token: %w", c.AuthKeyFile, err)
	}
	return tok, nil
}

// loadCert reads the client certificate and checks it is usable at now.
func (c Config) loadCert(now time.Time) (tls.Certificate, error) {
	if c.CertFile == "" {
		return tls.Certificate{}, fmt.Errorf("apns: CertKeyFile %q is set but CertFile is not: set CertFile to the PEM certificate", c.CertKeyFile)
	}
	data, err := os.ReadFile(c.CertFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("apns: CertFile: cannot read the certificate: %w", err)
	}
	var cert tls.Certificate
	if isPEM(data) {
		if c.CertKeyFile != "" {
			key, err := os.ReadFile(c.CertKeyFile)
			if err != nil {
				return tls.Certificate{}, fmt.Errorf("apns: CertKeyFile: cannot read the private key: %w", err)
			}
			data = append(append(append([]byte{}, data...), '\n'), key...)
		}
		cert, err = certificate.FromPemBytes(data, c.CertPassword)
		switch {
		case errors.Is(err, certificate.ErrNoPrivateKey):
			return tls.Certificate{}, fmt.Errorf("apns: CertFile %q holds no private key: append the key to it or set CertKeyFile", c.CertFile)
		case errors.Is(err, certificate.ErrNoCertificate):
			return tls.Certificate{}, fmt.Errorf("apns: CertFile %q holds no CERTIFICATE block", c.CertFile)
		case errors.Is(err, certificate.ErrFailedToDecryptKey):
			return tls.Certificate{}, fmt.Errorf("apns: the private key of CertFile %q is encrypted and CertPassword does not decrypt it", c.CertFile)
		case err != nil:
			return tls.Certificate{}, fmt.Errorf("apns: CertFile %q: %w", c.CertFile, err)
		}
		if cert.Leaf == nil {
			return tls.Certificate{}, fmt.Errorf("apns: CertFile %q: the first certificate cannot be parsed", c.CertFile)
		}
	} else {
		if c.CertKeyFile != "" {
			return tls.Certificate{}, fmt.Errorf("apns: CertKeyFile is only for PEM certificates; CertFile %q is PKCS#12 and holds its key", c.CertFile)
		}
		cert, err = certificate.FromP12Bytes(data, c.CertPassword)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("apns: CertFile %q is not a PKCS#12 file that CertPassword opens (export the certificate with its key from Keychain Access as .p12): %w", c.CertFile, err)
		}
	}
	leaf := cert.Leaf
	if signer, ok := cert.PrivateKey.(crypto.Signer); !ok || !publicKeysEqual(signer.Public(), leaf.PublicKey) {
		return tls.Certificate{}, fmt.Errorf("apns: the private key in CertFile %q does not belong to its certificate %q", c.CertFile, leaf.Subject)
	}
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("apns: the certificate in CertFile %q (%s) expired on %s: create a new APNs certificate in the Apple developer account, or switch to token authentication",
			c.CertFile, leaf.Subject, leaf.NotAfter.Format(time.DateOnly))
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("apns: the certificate in CertFile %q (%s) is not valid before %s: check the system clock",
			c.CertFile, leaf.Subject, leaf.NotBefore.Format(time.RFC3339))
	}
	return cert, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

func isPEM(b []byte) bool {
	return strings.Contains(string(b[:min(len(b), 4096)]), "-----BEGIN ")
}

// oidUID is the userid attribute in which Apple's push certificates name
// their bundle id.
const oidUID = "0.9.2342.19200300.100.1.1"

// certUID returns the UID attribute of cert's subject, or "".
func certUID(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	for _, n := range cert.Subject.Names {
		if n.Type.String() == oidUID {
			if s, ok := n.Value.(string); ok {
				return s
			}
		}
	}
	return ""
}
