// Package interop starts the real wren binary on loopback with a temporary
// data directory and drives it with real client software: slixmpp
// (Debian's python3-slixmpp), go-sendxmpp, and mellium's Go client.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// wrenBinary is built once per test binary run.
type binaryCache struct {
	once sync.Once
	path string
	err  error
}

var built binaryCache

func wrenBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "wren-interop-bin")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "wren")
		cmd := exec.Command("go", "build", "-o", built.path, "wren.im/wren/cmd/wren")
		out, err := cmd.CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// requireTool skips (or, in CI, fails) when a real client is missing.
func requireTool(t *testing.T, path string, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing at %s; CI must install it (see .ci/run)", what, path)
		}
		t.Skipf("%s not installed at %s", what, path)
	}
}

func requirePython(t *testing.T, module string) {
	t.Helper()
	requireTool(t, "/usr/bin/python3", "python3")
	if err := exec.Command("/usr/bin/python3", "-c", "import "+module).Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python module %s is missing; CI must install python3-%s", module, module)
		}
		t.Skipf("python module %s not installed", module)
	}
}

// Server is a running wren process.
type Server struct {
	t       *testing.T
	bin     string
	Dir     string
	Domain  string
	Port    string // STARTTLS
	TLSPort string // direct TLS
	CA      string // the server's self-signed certificate
	cmd     *exec.Cmd
	logs    *lockedBuffer
	done    chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listenRE = regexp.MustCompile(`service="c2s (STARTTLS|direct TLS)" addr=(\S+)`)

// startServer runs `wren serve` with extra flags on free loopback ports.
func startServer(t *testing.T, extra ...string) *Server {
	t.Helper()
	return startServerIn(t, t.TempDir(), extra...)
}

// startServerIn runs `wren serve` on an existing data directory (to
// restart a server on the same data).
func startServerIn(t *testing.T, dir string, extra ...string) *Server {
	t.Helper()
	s := &Server{t: t, bin: wrenBinary(t), Dir: dir, Domain: "localhost", logs: &lockedBuffer{}, done: make(chan struct{})}
	args := append([]string{"serve", "--data", s.Dir, "--domain", s.Domain, "--c2s", "127.0.0.1:0", "--c2s-tls", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-level", "debug"}, extra...)
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
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		n := 0
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				_, port, _ := strings.Cut(m[2], "127.0.0.1:")
				if m[1] == "STARTTLS" {
					s.Port = port
				} else {
					s.TLSPort = port
				}
				n++
				if n == 2 {
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
	s.CA = filepath.Join(s.Dir, "tls", s.Domain+".crt")
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	return s
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("wren did not stop within 15s of SIGINT")
	}
}

// wren runs an admin subcommand against the server's data dir.
func (s *Server) wren(stdin string, args ...string) (string, error) {
	args = append(args, "--data", s.Dir, "--domain", s.Domain)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// addUser creates name with password "secret-<name>".
func (s *Server) addUser(name string) {
	s.t.Helper()
	out, err := s.wren("secret-"+name+"\n", "user", "add", name, "--password-stdin")
	if err != nil {
		s.t.Fatalf("wren user add %s: %v\n%s", name, err, out)
	}
}

// writeConfig writes a wren config file for one test.
func writeConfig(t *testing.T, contents string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wren.toml")
	if err := os.WriteFile(p, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runScenario(t *testing.T, s *Server, scenario string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "slixmpp_scenarios.py", scenario,
		"--port", s.Port, "--tls-port", s.TLSPort, "--domain", s.Domain, "--ca", s.CA)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("slixmpp scenario %s failed: %v\n%s", scenario, err, out)
	}
	if !strings.Contains(string(out), "PASS "+scenario) {
		t.Fatalf("slixmpp scenario %s did not report PASS:\n%s", scenario, out)
	}
	t.Logf("slixmpp %s:\n%s", scenario, out)
	return string(out)
}
