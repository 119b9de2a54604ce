package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prosody is a Prosody server started by a test, with its own
// configuration, data and log in a temporary directory.
type prosody struct {
	t                *testing.T
	dir, cfg         string
	domain           string
	c2sPort, s2sPort string
	cmd              *exec.Cmd
	done             chan struct{}
}

// prosodyOptions configure a test Prosody.
type prosodyOptions struct {
	domain     string
	dns        string // address of the DNS server that knows the other domains
	cert, key  string
	ca         string // authorities trusted for other servers' certificates
	secureAuth bool   // s2s_secure_auth: only servers with valid certificates
	bidi       bool   // load mod_s2s_bidi: bidirectional streams (XEP-0288)
}

func startProsody(t *testing.T, o prosodyOptions) *prosody {
	t.Helper()
	requireTool(t, "/usr/bin/prosody", "prosody")
	p := &prosody{t: t, dir: t.TempDir(), domain: o.domain, c2sPort: freePort(t), s2sPort: freePort(t), done: make(chan struct{})}
	for _, d := range []string{"data", "certs"} {
		if err := os.Mkdir(filepath.Join(p.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	modules := `"roster", "saslauth", "tls", "dialback", "disco", "ping"`
	if o.bidi {
		modules += `, "s2s_bidi"`
	}
	cfg := fmt.Sprintf(`-- written by the Wren interop tests
run_as_root = true
pidfile = %s
data_path = %s
certificates = %s
log = { debug = %s }
interfaces = { "127.0.0.1" }
c2s_ports = { %s }
s2s_ports = { %s }
c2s_direct_tls_ports = {}
legacy_ssl_ports = {}
modules_enabled = { %s }
s2s_require_encryption = true
s2s_secure_auth = %t
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
ssl = { cafile = %s }
unbound = { resolvconf = false, hoststxt = false, forward = %s,
	options = { ["do-not-query-localhost:"] = "no" } }

VirtualHost %s
	ssl = { certificate = %s, key = %s, cafile = %s }
`, q(filepath.Join(p.dir, "prosody.pid")), q(filepath.Join(p.dir, "data")), q(filepath.Join(p.dir, "certs")),
		q(p.logPath()), p.c2sPort, p.s2sPort, modules, o.secureAuth, q(o.ca), q(strings.Replace(o.dns, ":", "@", 1)),
		q(o.domain), q(o.cert), q(o.key), q(o.ca))
	p.cfg = filepath.Join(p.dir, "prosody.cfg.lua")
	if err := os.WriteFile(p.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start()
	return p
}

func (p *prosody) logPath() string { return filepath.Join(p.dir, "prosody.log") }

func (p *prosody) log() string {
	b, _ := os.ReadFile(p.logPath())
	return string(b)
}

func (p *prosody) start() {
	t := p.t
	p.done = make(chan struct{})
	p.cmd = exec.Command("/usr/bin/prosody", "--config", p.cfg, "-F")
	p.cmd.Dir = p.dir
	out := &lockedBuffer{}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := p.done
	go func() { p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("prosody output:\n%s\nprosody log:\n%s", out.String(), p.log())
		}
	})
	waitPort(t, p.s2sPort, p.done, "prosody", func() string { return out.String() + p.log() })
	waitPort(t, p.c2sPort, p.done, "prosody", func() string { return out.String() + p.log() })
}

// stop ends Prosody (SIGTERM) and waits for it.
func (p *prosody) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// register creates user with password "secret-<user>".
func (p *prosody) register(user string) {
	p.t.Helper()
	out, err := exec.Command("/usr/bin/prosodyctl", "--config", p.cfg, "register", user, p.domain, "secret-"+user).CombinedOutput()
	if err != nil {
		p.t.Fatalf("prosodyctl register %s: %v\n%s", user, err, out)
	}
}

// TestProsodyDialback: Wren with its self-signed certificate and a
// Prosody whose certificate Wren does not trust can only authenticate
// each other with dialback. Subscriptions, presence and messages cross in
// both directions; then Prosody stops and Wren bounces a message to it.
func TestProsodyDialback(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	other := newCA(t, "prosody-only")
	pcert, pkey := issue(t, other, "prosody.example")
	p := startProsody(t, prosodyOptions{domain: "prosody.example", dns: dns.Addr(), cert: pcert, key: pkey, ca: other.CertFile})
	p.register("peter")
	w := startFedServer(t, "wren.example", wrenS2SConfig("",
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "prosody.example", p.s2sPort), ""))
	w.addUser("wendy")
	publish(dns, "wren.example", w.S2SPort)

	wendy := account("wendy", "wren.example", w.Port, w.CA)
	peter := account("peter", "prosody.example", p.c2sPort, other.CertFile)
	runS2SScenario(t, "federate", wendy, peter)
	logs := w.Logs()
	expectWrenAuth(t, logs, "prosody.example", "Prosody", "dialback")

	// A stopped peer: the message comes back at once.
	p.stop()
	runS2SScenario(t, "bounce", wendy, peter, "--condition", "remote-server-not-found")
}

// TestProsodyExternal: both servers have certificates from a CA the other
// trusts and require valid certificates, so both directions use SASL
// EXTERNAL (XEP-0178).
func TestProsodyExternal(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	ca := newCA(t, "federation")
	pcert, pkey := issue(t, ca, "prosody.example")
	wcert, wkey := issue(t, ca, "wren.example")
	p := startProsody(t, prosodyOptions{domain: "prosody.example", dns: dns.Addr(), cert: pcert, key: pkey, ca: ca.CertFile, secureAuth: true})
	p.register("peter")
	w := startFedServer(t, "wren.example", wrenS2SConfig(
		fmt.Sprintf("require_valid_certificates = true\nca_file = %q\n", ca.CertFile),
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "prosody.example", p.s2sPort),
		fmt.Sprintf("cert_file = %q\nkey_file = %q\n", wcert, wkey)))
	w.addUser("wendy")
	publish(dns, "wren.example", w.S2SPort)

	runS2SScenario(t, "federate", account("wendy", "wren.example", w.Port, ca.CertFile), account("peter", "prosody.example", p.c2sPort, ca.CertFile))
	logs := w.Logs()
	expectWrenAuth(t, logs, "prosody.example", "Prosody", "SASL EXTERNAL")
}

// TestProsodyUntrustedRefused: Wren requires valid certificates and
// Prosody's is from an authority Wren does not trust: Wren refuses to
// federate and bounces its user's message.
func TestProsodyUntrustedRefused(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	ca := newCA(t, "federation")
	untrusted := newCA(t, "untrusted")
	pcert, pkey := issue(t, untrusted, "prosody.example")
	wcert, wkey := issue(t, ca, "wren.example")
	p := startProsody(t, prosodyOptions{domain: "prosody.example", dns: dns.Addr(), cert: pcert, key: pkey, ca: ca.CertFile})
	p.register("peter")
	w := startFedServer(t, "wren.example", wrenS2SConfig(
		fmt.Sprintf("require_valid_certificates = true\nca_file = %q\n", ca.CertFile),
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "prosody.example", p.s2sPort),
		fmt.Sprintf("cert_file = %q\nkey_file = %q\n", wcert, wkey)))
	w.addUser("wendy")
	publish(dns, "wren.example", w.S2SPort)
	runS2SScenario(t, "bounce", account("wendy", "wren.example", w.Port, ca.CertFile), account("peter", "prosody.example", p.c2sPort, untrusted.CertFile))
	if !regexpMatch(`refused remote server by policy.*certificate`, w.Logs()) {
		t.Errorf("Wren did not log why it refused Prosody")
	}
}

// TestProsodyBidiExternal: Prosody with mod_s2s_bidi and certificates both
// sides trust. Wren opens the stream and asks for it to be bidirectional
// (XEP-0288): Prosody answers over it and never connects to Wren.
func TestProsodyBidiExternal(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	ca := newCA(t, "federation")
	pcert, pkey := issue(t, ca, "prosody.example")
	wcert, wkey := issue(t, ca, "wren.example")
	p := startProsody(t, prosodyOptions{domain: "prosody.example", dns: dns.Addr(), cert: pcert, key: pkey, ca: ca.CertFile, secureAuth: true, bidi: true})
	p.register("peter")
	w := startFedServer(t, "wren.example", wrenS2SConfig(
		fmt.Sprintf("require_valid_certificates = true\nca_file = %q\n", ca.CertFile),
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "prosody.example", p.s2sPort),
		fmt.Sprintf("cert_file = %q\nkey_file = %q\n", wcert, wkey)))
	w.addUser("wendy")
	publish(dns, "wren.example", w.S2SPort)

	runS2SScenario(t, "federate", account("wendy", "wren.example", w.Port, ca.CertFile), account("peter", "prosody.example", p.c2sPort, ca.CertFile))
	logs := w.Logs()
	if !regexpMatch(`stream to remote server established.*remote=prosody.example.*auth="SASL EXTERNAL" bidi=true`, logs) {
		t.Errorf("Wren's stream to Prosody is not bidirectional")
	}
	if regexpMatch(`remote server authenticated.*domain=prosody.example`, logs) {
		t.Errorf("Prosody opened a stream of its own to Wren instead of answering over Wren's bidirectional stream")
	}
	if !strings.Contains(p.log(), "Requested bidirectional stream") {
		t.Errorf("Prosody did not log Wren's request for a bidirectional stream")
	}
}

// TestProsodyBidiDialback: Prosody with mod_s2s_bidi and certificates
// neither side trusts: dialback. Wren's stream to Prosody is
// bidirectional; Prosody's stream to Wren (opened to verify Wren's key)
// asks for bidirectional traffic too, and Wren accepts it once Prosody's
// domain is verified.
func TestProsodyBidiDialback(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	other := newCA(t, "prosody-only")
	pcert, pkey := issue(t, other, "prosody.example")
	p := startProsody(t, prosodyOptions{domain: "prosody.example", dns: dns.Addr(), cert: pcert, key: pkey, ca: other.CertFile, bidi: true})
	p.register("peter")
	w := startFedServer(t, "wren.example", wrenS2SConfig("",
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "prosody.example", p.s2sPort), ""))
	w.addUser("wendy")
	publish(dns, "wren.example", w.S2SPort)

	runS2SScenario(t, "federate", account("wendy", "wren.example", w.Port, w.CA), account("peter", "prosody.example", p.c2sPort, other.CertFile))
	logs := w.Logs()
	if !regexpMatch(`stream to remote server established.*remote=prosody.example.*auth=dialback bidi=true`, logs) {
		t.Errorf("Wren's stream to Prosody is not bidirectional")
	}
	if !regexpMatch(`remote server's stream is bidirectional.*local=wren.example remote=prosody.example`, logs) {
		t.Errorf("Wren did not accept Prosody's stream as bidirectional")
	}
}
