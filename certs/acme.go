package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// LetsEncrypt is the directory of Let's Encrypt's production ACME service.
const LetsEncrypt = acme.LetsEncryptURL

// ACMEConfig configures certificates obtained with ACME (RFC 8555), for
// example from Let's Encrypt, answering HTTP-01 challenges.
type ACMEConfig struct {
	// Domains are the names certificates are obtained for; the first is
	// used for clients that send no server name (SNI).
	Domains []string
	// Email is the contact address of the ACME account (expiry notices).
	Email string
	// DirectoryURL is the ACME directory; empty means Let's Encrypt.
	DirectoryURL string
	// CacheDir keeps the account key and the certificates across restarts.
	CacheDir string
	// HTTPClient talks to the ACME server (nil: the default client); set
	// it to trust a private ACME server's certificate.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// ACME obtains and renews certificates for the configured domains on
// demand (the first TLS handshake for a name, or Prefetch) and serves the
// HTTP-01 challenges the ACME server checks.
type ACME struct {
	m       *autocert.Manager
	domains []string
	log     *slog.Logger
}

// NewACME returns an ACME certificate source for cfg.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	if len(cfg.Domains) == 0 {
		return nil, errors.New("acme: no domain to obtain a certificate for")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("acme: no cache directory for the account key and certificates")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var ascii []string
	for _, d := range cfg.Domains {
		ascii = append(ascii, asciiDomain(d))
	}
	dir := cfg.DirectoryURL
	if dir == "" {
		dir = LetsEncrypt
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(cfg.CacheDir),
		HostPolicy: autocert.HostWhitelist(ascii...),
		Email:      cfg.Email,
		Client:     &acme.Client{DirectoryURL: dir, HTTPClient: cfg.HTTPClient},
	}
	return &ACME{m: m, domains: ascii, log: logger}, nil
}

// GetCertificate is a tls.Config.GetCertificate callback. A handshake
// without a server name gets the first domain's certificate.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == "" {
		h := *hello
		h.ServerName = a.domains[0]
		hello = &h
	}
	return a.m.GetCertificate(hello)
}

// HTTPHandler answers the ACME server's HTTP-01 challenges; every other
// request gets 404. The port in the Host header is ignored, so that the
// challenge port may be forwarded from port 80.
func (a *ACME) HTTPHandler() http.Handler {
	h := a.m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "this port only answers ACME challenges", http.StatusNotFound)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r = r.Clone(r.Context())
			r.Host = host
		}
		h.ServeHTTP(w, r)
	})
}

// Prefetch obtains (or loads from the cache) the certificate of every
// domain now, so that the first client does not wait for the ACME
// exchange. It returns the errors of the domains that failed.
func (a *ACME) Prefetch(ctx context.Context) error {
	var errs []error
	for _, d := range a.domains {
		if err := ctx.Err(); err != nil {
			return err
		}
		cert, err := a.Certificate(d)
		if err != nil {
			a.log.Error("cannot obtain an ACME certificate yet; will try again when a client connects", "domain", d, "err", DescribeACMEError(err))
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			continue
		}
		if cert.Leaf != nil {
			a.log.Info("ACME certificate ready", "domain", d, "issuer", cert.Leaf.Issuer.CommonName, "expires", cert.Leaf.NotAfter)
		}
	}
	return errors.Join(errs...)
}

// Certificate returns the (ECDSA) certificate of domain, obtaining it if
// needed; federation presents it to other servers.
func (a *ACME) Certificate(domain string) (*tls.Certificate, error) {
	return a.m.GetCertificate(&tls.ClientHelloInfo{
		ServerName:        asciiDomain(domain),
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	})
}

// Domains returns the names certificates are obtained for.
func (a *ACME) Domains() []string { return append([]string(nil), a.domains...) }

// DescribeACMEError returns err with what an operator can do about the
// common ACME failures.
func DescribeACMEError(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"), strings.Contains(s, "no such host"):
		return s + " (is the ACME directory reachable from this machine?)"
	case strings.Contains(s, "urn:ietf:params:acme:error:unauthorized"), strings.Contains(s, "urn:ietf:params:acme:error:connection"):
		return s + " (the ACME server could not reach this machine's HTTP challenge port: check tls.acme.http_listen, port 80 forwarding and the domain's DNS)"
	}
	return s
}
