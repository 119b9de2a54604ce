package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/certs"
	"wren.im/wren/config"
)

// liveOption reports whether a changed option takes effect at a reload;
// every other option needs a restart.
func liveOption(option string) bool {
	switch option {
	case "tls.cert_file", "tls.key_file", "tls.cert_dir", "log.level":
		return true
	}
	return false
}

// Reload re-reads the configuration (when the server was given a loader)
// and the certificate, and applies what can change while running: the
// certificate (new TLS connections get it; established ones keep theirs)
// and the log level. Other changed options are reported in NeedRestart.
// On error nothing changes and the server keeps running as before.
// SIGHUP and 'wren reload' call it.
func (s *Server) Reload(ctx context.Context) (admin.ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	res := admin.ReloadResult{Applied: []admin.Change{}, NeedRestart: []admin.Change{}}
	next := *s.cfg
	if s.opts.loadConfig != nil {
		loaded, err := s.opts.loadConfig()
		if err != nil {
			return res, fmt.Errorf("the configuration was not reloaded; the server keeps running with the previous one:\n%w", err)
		}
		res.Config = s.opts.configSource
		for _, ch := range config.Diff(s.cfg, loaded) {
			c := admin.Change{Option: ch.Option, Old: ch.Old, New: ch.New}
			if liveOption(ch.Option) && (ch.Option != "log.level" || s.opts.logLevel != nil) {
				res.Applied = append(res.Applied, c)
			} else {
				res.NeedRestart = append(res.NeedRestart, c)
			}
		}
		next.TLS = loaded.TLS
		next.Log.Level = loaded.Log.Level
	}

	// Read the certificate again even when its paths did not change: it
	// may have been renewed in place.
	cert, err := loadCertificate(&next, s.log)
	if err != nil {
		return res, fmt.Errorf("the certificate was not reloaded; the server keeps serving the previous one: %w", err)
	}
	old := s.certs.Leaf()
	if err := s.certs.Set(cert); err != nil {
		return res, fmt.Errorf("the certificate was not reloaded; the server keeps serving the previous one: %w", err)
	}
	leaf := s.certs.Leaf()
	res.CertificateChanged = !bytes.Equal(old.Raw, leaf.Raw)
	res.Certificate = certInfo(leaf, certSource(&next))

	if s.opts.logLevel != nil && next.Log.Level != s.cfg.Log.Level {
		var level slog.Level
		if err := level.UnmarshalText([]byte(next.Log.Level)); err == nil {
			s.opts.logLevel.Set(level)
		}
	}
	s.cfg.TLS = next.TLS
	if s.opts.logLevel != nil {
		s.cfg.Log.Level = next.Log.Level
	}

	attrs := []any{"certificate_serial", res.Certificate.Serial, "certificate_changed", res.CertificateChanged,
		"expires", res.Certificate.NotAfter}
	for _, c := range res.Applied {
		attrs = append(attrs, "applied."+c.Option, c.New)
	}
	s.log.Info("reloaded", attrs...)
	for _, c := range res.NeedRestart {
		s.log.Warn("a changed option takes effect only after a restart", "option", c.Option, "running", c.Old, "configured", c.New)
	}
	return res, nil
}

// loadCertificate loads the certificate cfg names: its files, the files
// found in its directory, or the generated self-signed one.
func loadCertificate(cfg *config.Config, logger *slog.Logger) (tls.Certificate, error) {
	certFile, keyFile, err := certPaths(cfg)
	if err != nil {
		return tls.Certificate{}, err
	}
	return certs.LoadOrGenerate(cfg.DataDir, cfg.Domain, certFile, keyFile, logger)
}

// certPaths returns the certificate and key files of cfg: the configured
// ones, those found in tls.cert_dir, or empty for a self-signed one.
func certPaths(cfg *config.Config) (certFile, keyFile string, err error) {
	if cfg.TLS.CertFile != "" || cfg.TLS.CertDir == "" {
		return cfg.TLS.CertFile, cfg.TLS.KeyFile, nil
	}
	c, k, err := certs.FindInDir(cfg.TLS.CertDir, cfg.Domain)
	if err != nil {
		return "", "", fmt.Errorf("tls.cert_dir: %w", err)
	}
	return c, k, nil
}

// watchCertificate reloads the certificate when its files change (a
// renewal) until ctx ends. Only the certificate is reloaded; the
// configuration file waits for SIGHUP or 'wren reload'.
func (s *Server) watchCertificate(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := s.certStamp()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp := s.certStamp()
		if stamp == last {
			continue
		}
		last = stamp
		if err := s.reloadCertificate(); err != nil {
			s.log.Error("the certificate files changed but cannot be loaded; still serving the previous certificate", "err", err)
		}
	}
}

// certStamp fingerprints the certificate files by path, size and
// modification time; the self-signed certificate is not watched.
func (s *Server) certStamp() string {
	s.reloadMu.Lock()
	cfg := *s.cfg
	s.reloadMu.Unlock()
	c, k, err := certPaths(&cfg)
	if err != nil || c == "" {
		return ""
	}
	var b strings.Builder
	for _, p := range []string{c, k} {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", p)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// reloadCertificate loads the current configuration's certificate again
// and serves it to new connections.
func (s *Server) reloadCertificate() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cert, err := loadCertificate(s.cfg, s.log)
	if err != nil {
		return err
	}
	old := s.certs.Leaf()
	if err := s.certs.Set(cert); err != nil {
		return err
	}
	leaf := s.certs.Leaf()
	if !bytes.Equal(old.Raw, leaf.Raw) {
		s.log.Info("certificate files changed; new connections get the new certificate",
			"source", certSource(s.cfg), "serial", leaf.SerialNumber.Text(16), "expires", leaf.NotAfter)
	}
	return nil
}

// certInfo describes a certificate for the admin socket.
func certInfo(leaf *x509.Certificate, source string) admin.CertInfo {
	names := append([]string{}, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return admin.CertInfo{
		Subject:  leaf.Subject.CommonName,
		Names:    names,
		Serial:   leaf.SerialNumber.Text(16),
		NotAfter: leaf.NotAfter,
		Source:   source,
	}
}
