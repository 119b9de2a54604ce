package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"

	"wren.im/wren/admin"
	"wren.im/wren/certs"
	"wren.im/wren/config"
)

// liveOption reports whether a changed option takes effect at a reload;
// every other option needs a restart.
func liveOption(option string) bool {
	switch option {
	case "tls.cert_file", "tls.key_file", "log.level":
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
	cert, err := certs.LoadOrGenerate(next.DataDir, next.Domain, next.TLS.CertFile, next.TLS.KeyFile, s.log)
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
