package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// xmppServer is one XMPP server under test, started from a configuration in
// its own directory on a free loopback port. Start may be called again
// after Stop (with another archive setting) and keeps the data.
type xmppServer interface {
	Name() string
	Start(ctx context.Context, archive bool) error
	Stop() error
	PID() int
	Addr() string
	Log() string
}

// proc is a started server process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string // path of the file receiving stdout and stderr
}

func startProc(ctx context.Context, name, logPath, dir string, env []string, argv ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	defer lf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Its own process group, so that a Ctrl-C in the terminal reaches only
	// us and we stop the server cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM to the process (only it, by its id) and waits; after
// grace it sends SIGKILL.
func (p *proc) stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("pid %d did not stop within %v of SIGTERM; killed", p.cmd.Process.Pid, grace)
}

// waitListening polls addr until it accepts a connection, the process
// exits or ctx ends.
func (p *proc) waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before listening on %s: %s", addr, tail(p.log, 20))
		case <-ctx.Done():
			return fmt.Errorf("not listening on %s after %v: %s", addr, timeout, tail(p.log, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// certFiles is the one certificate every server under test presents, so
// that the TLS cost is the same for all.
type certFiles struct {
	Cert, Key, Both string // PEM: certificate, key, both in one file
}

// makeCert writes a self-signed ECDSA P-256 certificate for domain.
func makeCert(dir, domain string) (certFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return certFiles{}, fmt.Errorf("certificate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: domain},
		DNSNames:              []string{domain},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return certFiles{}, fmt.Errorf("certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return certFiles{}, fmt.Errorf("certificate key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	cf := certFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Both: filepath.Join(dir, "both.pem")}
	for path, data := range map[string][]byte{cf.Cert: certPEM, cf.Key: keyPEM, cf.Both: append(append([]byte{}, certPEM...), keyPEM...)} {
		// Readable by all: the peers may drop privileges to their own user.
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return certFiles{}, fmt.Errorf("writing certificate: %w", err)
		}
	}
	return cf, nil
}

// --- Wren ---

type wrenServer struct {
	bin, dir string
	cert     certFiles
	port     int
	p        *proc
}

func (s *wrenServer) Name() string { return "Wren" }
func (s *wrenServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }
func (s *wrenServer) Log() string  { return filepath.Join(s.dir, "wren.log") }
func (s *wrenServer) PID() int     { return pidOf(s.p) }

func pidOf(p *proc) int {
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (s *wrenServer) Start(ctx context.Context, archive bool) error {
	if s.port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.port = port
	}
	cfg := fmt.Sprintf(`# written by wren-bench compare
domain = "localhost"
data_dir = %q

[log]
level = "warn"

[tls]
cert_file = %q
key_file = %q
watch_interval = "0s"

[c2s]
listen = %q
direct_tls = ""
allow_plaintext_loopback = true
max_connections_per_ip = 0
stanza_rate = 0.0
byte_rate = 0
idle_timeout = "1h"

[auth]
failure_delay = "0s"

[registration]
enabled = true
max_per_ip = 0
min_password_length = 1

[archive]
enabled = %t
default_mode = "always"

[metrics]
listen = ""

[push_gateway]
enabled = false
`, filepath.Join(s.dir, "data"), s.cert.Cert, s.cert.Key, s.Addr(), archive)
	path := filepath.Join(s.dir, "wren.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("wren config: %w", err)
	}
	p, err := startProc(ctx, "wren", s.Log(), s.dir, nil, s.bin, "serve", "--config", path)
	if err != nil {
		return err
	}
	s.p = p
	if err := p.waitListening(ctx, s.Addr(), 60*time.Second); err != nil {
		p.stop(10 * time.Second)
		return fmt.Errorf("wren: %w", err)
	}
	return nil
}

func (s *wrenServer) Stop() error {
	err := s.p.stop(20 * time.Second)
	s.p = nil
	return err
}

// --- Prosody ---

type prosodyServer struct {
	dir  string
	cert certFiles
	port int
	p    *proc
}

func (s *prosodyServer) Name() string { return "Prosody" }
func (s *prosodyServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }
func (s *prosodyServer) Log() string  { return filepath.Join(s.dir, "prosody.log") }
func (s *prosodyServer) PID() int     { return pidOf(s.p) }

func (s *prosodyServer) Start(ctx context.Context, archive bool) error {
	if _, err := os.Stat("/usr/bin/prosody"); err != nil {
		return fmt.Errorf("prosody is not installed: %w", err)
	}
	if s.port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.port = port
		for _, d := range []string{"data", "certs"} {
			if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
				return fmt.Errorf("prosody: %w", err)
			}
		}
	}
	mam := ""
	if archive {
		mam = `, "mam"`
	}
	q := strconv.Quote
	cfg := fmt.Sprintf(`-- written by wren-bench compare
run_as_root = true
pidfile = %s
data_path = %s
certificates = %s
log = { warn = %s }
interfaces = { "127.0.0.1" }
c2s_ports = { %d }
s2s_ports = {}
c2s_direct_tls_ports = {}
legacy_ssl_ports = {}
http_ports = {}
https_ports = {}
component_ports = {}
network_backend = "epoll"
modules_enabled = { "roster", "saslauth", "tls", "disco", "register"%s }
modules_disabled = { "s2s" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
allow_registration = true
min_seconds_between_registrations = 0
registration_whitelist = { "127.0.0.1" }
default_archive_policy = true
archive_expires_after = "never"

VirtualHost "localhost"
	ssl = { certificate = %s, key = %s }
`, q(filepath.Join(s.dir, "prosody.pid")), q(filepath.Join(s.dir, "data")), q(filepath.Join(s.dir, "certs")),
		q(s.Log()), s.port, mam, q(s.cert.Cert), q(s.cert.Key))
	path := filepath.Join(s.dir, "prosody.cfg.lua")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("prosody config: %w", err)
	}
	p, err := startProc(ctx, "prosody", filepath.Join(s.dir, "prosody.out"), s.dir, nil, "/usr/bin/prosody", "--config", path, "-F")
	if err != nil {
		return err
	}
	s.p = p
	if err := p.waitListening(ctx, s.Addr(), 60*time.Second); err != nil {
		p.stop(10 * time.Second)
		return fmt.Errorf("prosody: %w (log: %s)", err, tail(s.Log(), 10))
	}
	return nil
}

func (s *prosodyServer) Stop() error {
	err := s.p.stop(20 * time.Second)
	s.p = nil
	return err
}

// --- ejabberd ---

type ejabberdServer struct {
	dir  string
	cert certFiles
	port int
	p    *proc
}

func (s *ejabberdServer) Name() string { return "ejabberd" }
func (s *ejabberdServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }
func (s *ejabberdServer) Log() string  { return filepath.Join(s.dir, "logs", "ejabberd.log") }
func (s *ejabberdServer) PID() int     { return pidOf(s.p) }

// ejabberdErl finds the Erlang runtime ejabberd was packaged for.
const ejabberdErl = "/usr/bin/erl"

func (s *ejabberdServer) Start(ctx context.Context, archive bool) error {
	if _, err := os.Stat("/usr/sbin/ejabberdctl"); err != nil {
		return fmt.Errorf("ejabberd is not installed: %w", err)
	}
	if s.port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.port = port
		for _, d := range []string{"spool", "logs"} {
			if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
				return fmt.Errorf("ejabberd: %w", err)
			}
		}
	}
	mam := ""
	if archive {
		mam = `
  mod_mam:
    default: always
    db_type: mnesia
`
	}
	cfg := fmt.Sprintf(`# written by wren-bench compare
hosts: ["localhost"]
loglevel: warning
certfiles: [%q]
listen:
  - port: %d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 1024
    max_stanza_size: 262144
    shaper: none
    access: all
    starttls: true
    starttls_required: false
auth_method: internal
auth_password_format: scram
acl: {}
access_rules:
  register:
    allow: all
shaper: {}
shaper_rules: {}
registration_timeout: infinity
modules:
  mod_roster: {}
  mod_disco: {}
  mod_register:
    access: register
    ip_access: all
    password_strength: 0%s`, s.cert.Both, s.port, mam)
	path := filepath.Join(s.dir, "ejabberd.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("ejabberd config: %w", err)
	}
	// erl is started directly (not through ejabberdctl, which su's to the
	// ejabberd user and manages epmd, shared with other nodes on the
	// machine): no distribution, so no node name and no epmd. The erl
	// script execs beam.smp, so the process id is the VM's.
	env := []string{
		"EJABBERD_CONFIG_PATH=" + path,
		"EJABBERD_LOG_PATH=" + s.Log(),
		"ERL_MAX_PORTS=32000",
		"ERL_LIBS=/usr/lib/x86_64-linux-gnu",
		"ERL_CRASH_DUMP=" + filepath.Join(s.dir, "logs", "erl_crash.dump"),
		"HOME=" + s.dir,
	}
	p, err := startProc(ctx, "ejabberd", filepath.Join(s.dir, "ejabberd.out"), s.dir, env,
		ejabberdErl, "-noinput", "+K", "true", "+P", "250000",
		"-mnesia", "dir", strconv.Quote(filepath.Join(s.dir, "spool")), "-s", "ejabberd")
	if err != nil {
		return err
	}
	s.p = p
	if err := p.waitListening(ctx, s.Addr(), 90*time.Second); err != nil {
		p.stop(20 * time.Second)
		return fmt.Errorf("ejabberd: %w (log: %s)", err, tail(s.Log(), 10))
	}
	return nil
}

func (s *ejabberdServer) Stop() error {
	err := s.p.stop(30 * time.Second)
	s.p = nil
	return err
}
