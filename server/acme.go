package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"wren.im/wren/certs"
)

// acmeState is the automatic certificate support of a server (tls.acme).
type acmeState struct {
	acme *certs.ACME
	ln   net.Listener

	mu         sync.Mutex
	lastWarned time.Time
}

// buildACME sets up ACME when it is enabled; the HTTP-01 listener is
// bound by listenACME.
func (s *Server) buildACME() error {
	a := s.cfg.TLS.ACME
	if !a.Enabled {
		return nil
	}
	client := http.DefaultClient
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return fmt.Errorf("tls.acme.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls.acme.ca_file %s holds no PEM certificate", a.CAFile)
		}
		client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	domains := []string{s.cfg.Domain}
	if s.cfg.PushGateway.Enabled {
		domains = append(domains, s.cfg.PushGatewayDomain())
	}
	m, err := certs.NewACME(certs.ACMEConfig{
		Domains:      domains,
		Email:        a.Email,
		DirectoryURL: a.DirectoryURL,
		CacheDir:     filepath.Join(s.cfg.DataDir, "acme"),
		HTTPClient:   client,
		Logger:       s.log.With("feature", "acme"),
	})
	if err != nil {
		return err
	}
	s.acme = &acmeState{acme: m}
	return nil
}

// getCertificate serves the ACME certificate, or the configured or
// self-signed one while ACME has none (so clients can still connect).
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.acme == nil {
		return s.certs.GetCertificate(hello)
	}
	cert, err := s.acme.acme.GetCertificate(hello)
	if err == nil {
		return cert, nil
	}
	s.acme.mu.Lock()
	warn := time.Since(s.acme.lastWarned) > time.Minute
	if warn {
		s.acme.lastWarned = time.Now()
	}
	s.acme.mu.Unlock()
	if warn {
		s.log.Error("no ACME certificate yet; serving the self-signed one, which clients will warn about",
			"server_name", hello.ServerName, "err", certs.DescribeACMEError(err))
	}
	return s.certs.GetCertificate(hello)
}

// listenACME binds the HTTP-01 challenge listener.
func (s *Server) listenACME() error {
	if s.acme == nil {
		return nil
	}
	addr := s.cfg.TLS.ACME.HTTPListen
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for ACME challenges on %s: %w (binding port 80 needs root or CAP_NET_BIND_SERVICE; or forward port 80 to another port and set tls.acme.http_listen)", addr, err)
	}
	s.acme.ln = ln
	s.log.Info("listening", "service", "ACME HTTP-01 challenges", "addr", ln.Addr().String())
	return nil
}

// serveACME answers challenges and obtains the certificates until ctx
// ends; the returned function waits for both.
func (s *Server) serveACME(ctx context.Context) (wait func()) {
	if s.acme == nil {
		return func() {}
	}
	var wg sync.WaitGroup
	hs := &http.Server{
		Handler:           s.acme.acme.HTTPHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	wg.Go(func() {
		if err := hs.Serve(s.acme.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("the ACME challenge listener stopped", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
	})
	wg.Go(func() {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		s.acme.acme.Prefetch(pctx) // logs each domain's outcome
	})
	return wg.Wait
}

// federationCertificate is the certificate presented to other servers:
// the ACME one when ACME is on and has it, else the configured or
// self-signed one (which a reload swaps).
func (s *Server) federationCertificate() *tls.Certificate {
	if s.acme != nil {
		if cert, err := s.acme.acme.Certificate(s.cfg.Domain); err == nil {
			return cert
		}
	}
	return s.certs.Certificate()
}
