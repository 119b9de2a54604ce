package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"wren.im/wren/certs"
)

func certGenerateCommand() *command {
	return &command{
		name:    "cert generate",
		args:    "DOMAIN... [--out DIR] [--days N] [options]",
		summary: "create a self-signed certificate and key",
		help: `Creates a self-signed certificate (ECDSA P-256) naming every DOMAIN (a
*.example.org wildcard or an IP address works too), and its private key:
DIR/FIRST-DOMAIN.crt and DIR/FIRST-DOMAIN.key (readable by you only).
DIR defaults to the tls/ folder of the data directory, where the server
looks for its certificate when tls.cert_file is empty. Existing files are
kept unless --force is given.

Clients warn about self-signed certificates: use one for tests, or until
a certificate from a certificate authority is configured.`,
		run: runCertGenerate,
	}
}

func runCertGenerate(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	out := fs.String("out", "", "write the files to `DIR` (default: DATA_DIR/tls)")
	days := fs.Int("days", 365, "the certificate is valid for `N` days")
	force := fs.Bool("force", false, "replace existing files")
	domains, code, ok := parse(fs, args)
	if !ok {
		return code
	}
	if len(domains) == 0 {
		return usageError(c, cmd, "missing DOMAIN (for example: wren cert generate example.org '*.example.org')")
	}
	if *days <= 0 {
		return usageError(c, cmd, "--days must be at least 1, not %d", *days)
	}
	cfg, err := cf.loadUnchecked()
	if err != nil {
		return failure(c, cmd, err)
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join(cfg.DataDir, "tls")
	}
	base := strings.TrimPrefix(domains[0], "*.")
	certPath := filepath.Join(dir, base+".crt")
	keyPath := filepath.Join(dir, base+".key")
	if !*force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return failure(c, cmd, fmt.Errorf("%s already exists; give --force to replace it, or --out for another directory", p))
			}
		}
	}
	certPEM, keyPEM, err := certs.Generate(domains, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return failure(c, cmd, fmt.Errorf("generating the certificate: %w", err))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return failure(c, cmd, fmt.Errorf("creating %s: %w", dir, err))
	}
	// The key first, so that a certificate never exists without its key.
	if err := writeNew(keyPath, keyPEM, 0o600, *force); err != nil {
		return failure(c, cmd, err)
	}
	if err := writeNew(certPath, certPEM, 0o644, *force); err != nil {
		return failure(c, cmd, err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return failure(c, cmd, err)
	}
	fmt.Fprintf(c.stdout, "created a self-signed certificate for %s, valid until %s (serial %s)\n",
		strings.Join(domains, ", "), leaf.NotAfter.UTC().Format(time.DateOnly), leaf.SerialNumber.Text(16))
	fmt.Fprintf(c.stdout, "  certificate  %s\n  key          %s (readable by you only)\n", certPath, keyPath)
	defaultDir := filepath.Clean(filepath.Join(cfg.DataDir, "tls"))
	if filepath.Clean(dir) == defaultDir && base == cfg.Domain && cfg.TLS.CertFile == "" {
		fmt.Fprintln(c.stdout, "The server uses it because tls.cert_file is empty; run 'wren reload' to switch a running server to it.")
	} else {
		fmt.Fprintf(c.stdout, "To use it, set in the configuration:\n  [tls]\n  cert_file = %q\n  key_file = %q\nthen run 'wren reload'.\n", certPath, keyPath)
	}
	return exitOK
}

// writeNew writes data to path with perm, refusing to replace a file
// unless replace is set.
func writeNew(path string, data []byte, perm fs.FileMode, replace bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if replace {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; give --force to replace it", path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil { // an existing file keeps its mode otherwise
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
