package interop

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"wren.im/wren/s2s/s2stest"
)

// This file holds what the federation tests share: a Wren server with
// federation on, a DNS server that tells the peers where Wren is, a test
// certificate authority, and the slixmpp scenario runner.

// fedListenRE finds the listener lines of a server with federation on.
var fedListenRE = regexp.MustCompile(`msg=listening service="?(c2s STARTTLS|c2s direct TLS|s2s STARTTLS|components)"? addr=(\S+)`)

// fedServer is a Wren process with federation on.
type fedServer struct {
	*Server
	S2SPort       string
	ComponentPort string
}

// startFedServer runs `wren serve` for domain with the configuration
// file contents cfg (its [s2s] section must set listen = "127.0.0.1:0").
func startFedServer(t *testing.T, domain, cfg string) *fedServer {
	t.Helper()
	s := &Server{t: t, bin: wrenBinary(t), Dir: t.TempDir(), Domain: domain, logs: &lockedBuffer{}, done: make(chan struct{})}
	args := []string{"serve", "--config", writeConfig(t, cfg), "--data", s.Dir, "--domain", domain,
		"--c2s", "127.0.0.1:0", "--c2s-tls", "127.0.0.1:0", "--metrics", "", "--log-level", "debug"}
	s.cmd = exec.Command(s.bin, args...)
	pr, pw := io.Pipe()
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = io.MultiWriter(s.logs, pw)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	fs := &fedServer{Server: s}
	want := 3
	if strings.Contains(cfg, "[component.") {
		want = 4
	}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		n := 0
		for sc.Scan() {
			if m := fedListenRE.FindStringSubmatch(sc.Text()); m != nil {
				_, port, _ := net.SplitHostPort(m[2])
				switch m[1] {
				case "c2s STARTTLS":
					s.Port = port
				case "c2s direct TLS":
					s.TLSPort = port
				case "s2s STARTTLS":
					fs.S2SPort = port
				case "components":
					fs.ComponentPort = port
				}
				if n++; n == want {
					close(found)
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-found:
	case <-s.done:
		t.Fatalf("wren exited before listening:\n%s", s.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("wren did not start listening in 30s:\n%s", s.logs.String())
	}
	s.CA = filepath.Join(s.Dir, "tls", domain+".crt")
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("wren log:\n%s", s.logs.String())
		}
	})
	return fs
}

// Logs returns what the server logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// waitLog waits until the server logged a line matching re.
func (s *Server) waitLog(t *testing.T, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for !rx.MatchString(s.logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("the server never logged %q", re)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newDNS starts a DNS server for the peers to find Wren by SRV records.
func newDNS(t *testing.T) *s2stest.DNS {
	t.Helper()
	d, err := s2stest.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// publish makes domain's server reachable at 127.0.0.1:port through d.
func publish(d *s2stest.DNS, domain, port string) {
	var p uint16
	fmt.Sscan(port, &p)
	d.SetA(domain, "127.0.0.1")
	d.SetSRV("_xmpp-server._tcp."+domain, s2stest.SRV{Priority: 0, Weight: 5, Port: p, Target: domain})
}

// newCA creates a test certificate authority in a temporary directory.
func newCA(t *testing.T, name string) *s2stest.CA {
	t.Helper()
	ca, err := s2stest.NewCA(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *s2stest.CA, domains ...string) (cert, key string) {
	t.Helper()
	cert, key, err := ca.Issue(domains...)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// for servers that cannot report the port they bound.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// waitPort waits until something accepts connections on 127.0.0.1:port.
func waitPort(t *testing.T, port string, exited <-chan struct{}, what string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before listening:\n%s", what, logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 30s:\n%s", what, port, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// account names a user for slixmpp_s2s.py: user@domain:port:cafile.
func account(user, domain, port, ca string) string {
	return fmt.Sprintf("%s@%s:%s:%s", user, domain, port, ca)
}

// runS2SScenario runs one scenario of slixmpp_s2s.py.
func runS2SScenario(t *testing.T, scenario, wren, peer string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	args := append([]string{"slixmpp_s2s.py", scenario, "--wren", wren, "--peer", peer}, extra...)
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS "+scenario) {
		t.Fatalf("slixmpp s2s scenario %s failed: %v\n%s", scenario, err, out)
	}
	t.Logf("slixmpp %s:\n%s", scenario, out)
	return string(out)
}

// wrenS2SConfig is the configuration of a Wren server federating with the
// peers of a test: extra goes into its [s2s] section, addresses into
// [s2s.addresses], tls into [tls].
func wrenS2SConfig(extra, addresses, tls string) string {
	return "[auth]\nchannel_binding = false\n\n[push_gateway]\nenabled = false\n\n[tls]\n" + tls +
		"\n[s2s]\nlisten = \"127.0.0.1:0\"\nconnect_timeout = \"2s\"\nnegotiate_timeout = \"10s\"\n" + extra +
		"\n[s2s.addresses]\n" + addresses + "\n"
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// expectWrenAuth checks in Wren's log that both streams with peer (a
// domain, named name in messages) were authenticated with auth ("dialback"
// or "SASL EXTERNAL").
func expectWrenAuth(t *testing.T, logs, peer, name, auth string) {
	t.Helper()
	logAuth := auth
	if strings.Contains(auth, " ") {
		logAuth = strconv.Quote(auth)
	}
	if !regexpMatch(`stream to remote server established.*remote=`+regexp.QuoteMeta(peer)+`.*auth=`+regexp.QuoteMeta(logAuth), logs) {
		t.Errorf("Wren's stream to %s was not authenticated with %s", name, auth)
	}
	if !regexpMatch(`remote server authenticated.*domain=`+regexp.QuoteMeta(peer)+` auth=`+regexp.QuoteMeta(logAuth), logs) {
		t.Errorf("%s's stream to Wren was not authenticated with %s", name, auth)
	}
}
