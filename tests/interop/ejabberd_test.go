package interop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"wren.im/wren/s2s/s2stest"
)

// ejabberd is an ejabberd node started by a test, with its own
// configuration, Mnesia spool and logs in a temporary directory.
//
// The node is started with erl directly, the way `ejabberdctl foreground`
// does, but without a node name: it does not take part in Erlang
// distribution, so it needs no epmd (port 4369 is shared with whatever
// else runs on the machine), no cookie and no ejabberd system user
// (ejabberdctl run as root switches to it, and it could not read the
// test's temporary directory). Users are registered by the node itself as
// it starts (-eval after -s ejabberd), which is what `ejabberdctl
// register` would do through distribution.
type ejabberd struct {
	t                *testing.T
	dir, cfg         string
	domain           string
	c2sPort, s2sPort string
	users            []string
	cmd              *exec.Cmd
	out              *lockedBuffer
	done             chan struct{}
}

// ejabberdOptions configure a test ejabberd.
type ejabberdOptions struct {
	domain    string
	dns       string // address (127.0.0.1:port) of the DNS server that knows the other domains
	cert, key string
	ca        string   // authorities trusted for other servers' (and its own) certificates
	users     []string // registered at start with password "secret-<user>"
}

const ejabberdBin = "/usr/bin/erl"

// ejabberdLibs returns where Debian installs ejabberd's Erlang
// applications: the ERL_LIBS that /usr/sbin/ejabberdctl sets
// (/usr/lib/<multiarch triplet>).
func ejabberdLibs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/usr/sbin/ejabberdctl")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^ERL_LIBS='?([^'\s]+)'?`).FindSubmatch(b); m != nil {
		return string(m[1])
	}
	m, _ := filepath.Glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app")
	if len(m) == 0 {
		t.Fatal("cannot find ejabberd's Erlang applications (no ERL_LIBS in /usr/sbin/ejabberdctl)")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(m[0])))
}

func startEjabberd(t *testing.T, o ejabberdOptions) *ejabberd {
	t.Helper()
	requireTool(t, "/usr/sbin/ejabberdctl", "ejabberd")
	requireTool(t, ejabberdBin, "erl (ejabberd's Erlang runtime)")
	e := &ejabberd{t: t, dir: t.TempDir(), domain: o.domain, users: o.users,
		c2sPort: freePort(t), s2sPort: freePort(t), done: make(chan struct{})}
	if err := os.Mkdir(filepath.Join(e.dir, "spool"), 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(o.dns)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		t.Fatalf("DNS server %s is not on IPv4", o.dns)
	}
	// Erlang's resolver (inet_res, used by ejabberd for SRV and A
	// lookups) asks only the test's DNS server: no /etc/resolv.conf, no
	// /etc/hosts.
	inetrc := fmt.Sprintf(`%% written by the Wren interop tests
{resolv_conf, ""}.
{hosts_file, ""}.
{nameserver, {%d,%d,%d,%d}, %s}.
{lookup, [dns]}.
`, ip[0], ip[1], ip[2], ip[3], port)
	if err := os.WriteFile(filepath.Join(e.dir, "inetrc"), []byte(inetrc), 0o600); err != nil {
		t.Fatal(err)
	}
	q := strconv.Quote
	cfg := fmt.Sprintf(`# written by the Wren interop tests
loglevel: debug
hide_sensitive_log_data: false
hosts:
  - %s
certfiles:
  - %s
  - %s
ca_file: %s
s2s_cafile: %s
acme:
  auto: false
listen:
  -
    port: %s
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
  -
    port: %s
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
s2s_use_starttls: required
outgoing_s2s_families:
  - ipv4
s2s_dns_timeout: 2
s2s_dns_retries: 1
auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  max_user_sessions: 10
modules:
  mod_roster: {}
  mod_s2s_dialback: {}
  mod_disco: {}
  mod_ping: {}
`, q(o.domain), q(o.cert), q(o.key), q(o.ca), q(o.ca), e.c2sPort, e.s2sPort)
	e.cfg = filepath.Join(e.dir, "ejabberd.yml")
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	return e
}

func (e *ejabberd) logPath() string { return filepath.Join(e.dir, "ejabberd.log") }

func (e *ejabberd) log() string {
	b, _ := os.ReadFile(e.logPath())
	return string(b)
}

// output is what ejabberd wrote: its log file, or, when it has none yet
// (it failed to boot), what the Erlang runtime printed.
func (e *ejabberd) output() string {
	if l := e.log(); l != "" {
		return l
	}
	return e.out.String()
}

var ejabberdRegisteredRE = regexp.MustCompile(`(?m)^WREN-REGISTER (\S+) (.*)$`)

func (e *ejabberd) start() {
	t := e.t
	e.done = make(chan struct{})
	// Register the users once ejabberd has started (-s ejabberd returns
	// when the application is up) and report each result on stdout.
	var eval strings.Builder
	eval.WriteString(`lists:foreach(fun(U) -> R = (catch ejabberd_auth:try_register(U, <<"` + e.domain +
		`">>, <<"secret-", U/binary>>)), io:format("WREN-REGISTER ~s ~p~n", [U, R]) end, [`)
	for i, u := range e.users {
		if i > 0 {
			eval.WriteString(", ")
		}
		eval.WriteString(`<<"` + u + `">>`)
	}
	eval.WriteString(`]), io:format("WREN-READY~n").`)
	e.cmd = exec.Command(ejabberdBin, "-noinput",
		"-mnesia", "dir", strconv.Quote(filepath.Join(e.dir, "spool")),
		"-s", "ejabberd", "-eval", eval.String())
	e.cmd.Dir = e.dir
	e.cmd.Env = append(os.Environ(),
		"HOME="+e.dir,
		"ERL_LIBS="+ejabberdLibs(t),
		"ERL_INETRC="+filepath.Join(e.dir, "inetrc"),
		"ERL_CRASH_DUMP="+filepath.Join(e.dir, "erl_crash.dump"),
		"ERL_CRASH_DUMP_BYTES=0",
		"EJABBERD_CONFIG_PATH="+e.cfg,
		"EJABBERD_LOG_PATH="+e.logPath(),
		"CONTRIB_MODULES_PATH="+filepath.Join(e.dir, "contrib"),
	)
	// Its own process group, so that the runtime's helpers (inet_gethost,
	// erl_child_setup, memsup) can be ended with it if it hangs.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	e.out = &lockedBuffer{}
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := e.done
	go func() { e.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("ejabberd log:\n%s", e.output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.out.String(), "WREN-READY") {
		select {
		case <-e.done:
			t.Fatalf("ejabberd exited while starting:\n%s", e.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ejabberd did not start within 30s:\n%s", e.out.String())
		}
	}
	for _, m := range ejabberdRegisteredRE.FindAllStringSubmatch(e.out.String(), -1) {
		if strings.TrimSpace(m[2]) != "ok" {
			t.Fatalf("ejabberd could not register %s: %s\n%s", m[1], m[2], e.output())
		}
	}
	waitPort(t, e.s2sPort, e.done, "ejabberd", e.output)
	waitPort(t, e.c2sPort, e.done, "ejabberd", e.output)
}

var ejabberdS2SLineRE = regexp.MustCompile(`\[(info|warning|error)\] <[0-9.]+>@(ejabberd_s2s|mod_s2s_dialback)`)

// s2sLog returns ejabberd's log lines (info and above) about s2s streams.
func (e *ejabberd) s2sLog() string {
	var b strings.Builder
	for _, l := range strings.Split(e.log(), "\n") {
		if ejabberdS2SLineRE.MatchString(l) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// stop ends ejabberd (SIGTERM: the runtime shuts down cleanly) and waits
// for it.
func (e *ejabberd) stop() {
	select {
	case <-e.done:
		return
	default:
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
	}
}

// bouncedIn returns how long the bounce scenario took to get its error.
func bouncedIn(t *testing.T, out string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`bounced after ([0-9.]+)s`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the bounce scenario did not say how long it took:\n%s", out)
	}
	d, err := time.ParseDuration(m[1] + "s")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestEjabberdDialback: Wren with its self-signed certificate and an
// ejabberd whose certificate Wren does not trust can only authenticate
// each other with dialback (ejabberd requires STARTTLS on s2s). The
// subscription handshake, presence and messages cross in both
// directions, ejabberd finding Wren by SRV record; then ejabberd stops
// and Wren bounces a message to it within its connect timeout.
func TestEjabberdDialback(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	other := newCA(t, "ejabberd-only")
	ecert, ekey := issue(t, other, "ejabberd.example")
	e := startEjabberd(t, ejabberdOptions{domain: "ejabberd.example", dns: dns.Addr(), cert: ecert, key: ekey, ca: other.CertFile, users: []string{"eve"}})
	w := startFedServer(t, "wren.example", wrenS2SConfig("",
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "ejabberd.example", e.s2sPort), ""))
	w.addUser("wendy")
	publishForEjabberd(dns, "wren.example", w.S2SPort)

	wendy := account("wendy", "wren.example", w.Port, w.CA)
	eve := account("eve", "ejabberd.example", e.c2sPort, other.CertFile)
	runS2SScenario(t, "federate", wendy, eve)
	logs := w.Logs()
	expectWrenAuth(t, logs, "ejabberd.example", "ejabberd", "dialback")
	// ejabberd's own view: it offers EXTERNAL to Wren and refuses Wren's
	// self-signed certificate, Wren then uses dialback; Wren offers it no
	// SASL mechanism, so ejabberd retries with dialback.
	elog := e.s2sLog()
	if !regexpMatch(`Accepted inbound s2s dialback authentication wren.example -> ejabberd.example`, elog) {
		t.Errorf("ejabberd did not accept Wren's stream with dialback")
	}
	if !regexpMatch(`Accepted outbound s2s dialback authentication ejabberd.example -> wren.example`, elog) {
		t.Errorf("ejabberd's stream to Wren was not accepted with dialback")
	}
	if !hasQuery(dns.Queries(), "SRV _xmpp-server._tcp.wren.example.") {
		t.Errorf("ejabberd did not look up Wren's SRV record; it asked %q", dns.Queries())
	}

	// A stopped peer: the message comes back at once (connection
	// refused), well within s2s.connect_timeout (2s).
	e.stop()
	out := runS2SScenario(t, "bounce", wendy, eve, "--condition", "remote-server-not-found")
	if d := bouncedIn(t, out); d > 2*time.Second {
		t.Errorf("the bounce took %v, more than the connect timeout (2s)", d)
	}
}

// TestEjabberdExternal: both servers have certificates from a CA the
// other trusts, and Wren requires valid certificates, so both directions
// use SASL EXTERNAL (XEP-0178).
func TestEjabberdExternal(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	ca := newCA(t, "federation")
	ecert, ekey := issue(t, ca, "ejabberd.example")
	wcert, wkey := issue(t, ca, "wren.example")
	e := startEjabberd(t, ejabberdOptions{domain: "ejabberd.example", dns: dns.Addr(), cert: ecert, key: ekey, ca: ca.CertFile, users: []string{"eve"}})
	w := startFedServer(t, "wren.example", wrenS2SConfig(
		fmt.Sprintf("require_valid_certificates = true\nca_file = %q\n", ca.CertFile),
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "ejabberd.example", e.s2sPort),
		fmt.Sprintf("cert_file = %q\nkey_file = %q\n", wcert, wkey)))
	w.addUser("wendy")
	publishForEjabberd(dns, "wren.example", w.S2SPort)

	runS2SScenario(t, "federate", account("wendy", "wren.example", w.Port, ca.CertFile), account("eve", "ejabberd.example", e.c2sPort, ca.CertFile))
	logs := w.Logs()
	expectWrenAuth(t, logs, "ejabberd.example", "ejabberd", "SASL EXTERNAL")
	elog := e.s2sLog()
	if !regexpMatch(`Accepted inbound s2s EXTERNAL authentication wren.example -> ejabberd.example`, elog) {
		t.Errorf("ejabberd did not accept Wren's stream with SASL EXTERNAL")
	}
	if !regexpMatch(`Accepted outbound s2s EXTERNAL authentication ejabberd.example -> wren.example`, elog) {
		t.Errorf("ejabberd's stream to Wren was not accepted with SASL EXTERNAL")
	}
	if regexpMatch(`dialback`, elog) {
		t.Errorf("ejabberd used dialback although both certificates are valid")
	}
}

// TestEjabberdUntrustedRefused: Wren requires valid certificates and
// ejabberd's is from an authority Wren does not trust: Wren refuses to
// federate and bounces its user's message.
func TestEjabberdUntrustedRefused(t *testing.T) {
	requirePython(t, "slixmpp")
	dns := newDNS(t)
	ca := newCA(t, "federation")
	untrusted := newCA(t, "untrusted")
	ecert, ekey := issue(t, untrusted, "ejabberd.example")
	wcert, wkey := issue(t, ca, "wren.example")
	e := startEjabberd(t, ejabberdOptions{domain: "ejabberd.example", dns: dns.Addr(), cert: ecert, key: ekey, ca: ca.CertFile, users: []string{"eve"}})
	w := startFedServer(t, "wren.example", wrenS2SConfig(
		fmt.Sprintf("require_valid_certificates = true\nca_file = %q\n", ca.CertFile),
		fmt.Sprintf("%q = \"127.0.0.1:%s\"", "ejabberd.example", e.s2sPort),
		fmt.Sprintf("cert_file = %q\nkey_file = %q\n", wcert, wkey)))
	w.addUser("wendy")
	publishForEjabberd(dns, "wren.example", w.S2SPort)
	runS2SScenario(t, "bounce", account("wendy", "wren.example", w.Port, ca.CertFile), account("eve", "ejabberd.example", e.c2sPort, untrusted.CertFile))
	if !regexpMatch(`refused remote server by policy.*certificate`, w.Logs()) {
		t.Errorf("Wren did not log why it refused ejabberd")
	}
}

// publishForEjabberd makes domain's server reachable at 127.0.0.1:port
// for ejabberd through d. ejabberd 23.01 (xmpp 1.6.1, xmpp_stream_out)
// looks up SRV records with Erlang's resolver, which ERL_INETRC points at
// d, but resolves the SRV targets (and, without SRV records, the domain)
// with net:getaddrinfo/2, that is the system's resolver (/etc/hosts,
// /etc/resolv.conf), which a test cannot change. So the SRV record names
// its target by address.
func publishForEjabberd(d *s2stest.DNS, domain, port string) {
	publish(d, domain, port)
	var p uint16
	fmt.Sscan(port, &p)
	d.SetSRV("_xmpp-server._tcp."+domain, s2stest.SRV{Priority: 0, Weight: 5, Port: p, Target: "127.0.0.1"})
}

func hasQuery(queries []string, q string) bool {
	for _, s := range queries {
		if strings.HasSuffix(s, q) || strings.TrimPrefix(s, "Type") == q {
			return true
		}
	}
	return false
}
