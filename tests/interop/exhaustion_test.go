package interop

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wren.im/wren/xmpp"
)

// exhaustionConfig raises the per-address connection limit (every test
// connection comes from 127.0.0.1) and the login and idle timeouts so that
// thousands of slow or quiet connections are not closed by the server.
const exhaustionConfig = `
[c2s]
max_connections_per_ip = 20000
auth_timeout = "5m"
idle_timeout = "1h"
`

// exhaustionDialers is how many connections are opened at the same time.
const exhaustionDialers = 32

// serverUsage is a snapshot of the server process's resources.
type serverUsage struct {
	rssKiB     int64
	fds        int
	goroutines int
}

func (u serverUsage) String() string {
	return fmt.Sprintf("RSS %d KiB, %d fds, %d goroutines", u.rssKiB, u.fds, u.goroutines)
}

var metricsAddrRE = regexp.MustCompile(`service=metrics addr=(\S+)`)

// metricsAddr returns the address the server's metrics endpoint is bound
// to, as logged at startup.
func (s *Server) metricsAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := metricsAddrRE.FindStringSubmatch(s.logs.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not log its metrics address")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// usage reads the server's RSS and open descriptors from /proc and its
// goroutine count from the metrics endpoint.
func (s *Server) usage(t *testing.T, metrics string) serverUsage {
	t.Helper()
	pid := s.cmd.Process.Pid
	var u serverUsage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			u.rssKiB, err = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	u.fds = len(fds)
	u.goroutines, err = goroutines(metrics)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// goroutines scrapes go_goroutines from the metrics endpoint at addr.
func goroutines(addr string) (int, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no go_goroutines in the metrics")
}

// idleConn is a logged-in client connection that sends nothing more.
type idleConn struct {
	conn net.Conn
	r    *xmpp.Reader
	w    *bufio.Writer
}

// dialLogin connects to the STARTTLS port, authenticates with PLAIN as
// user and binds resource. Unlike rawLogin it returns errors instead of
// failing the test, so that it can run on many goroutines.
func dialLogin(addr, domain, user, resource string) (*idleConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &idleConn{conn: conn, w: bufio.NewWriter(conn)}
	c.r = xmpp.NewReader(conn, xmpp.Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxAttrs: 64})
	if err := c.login(domain, user, resource); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s/%s: %w", user, resource, err)
	}
	return c, nil
}

func (c *idleConn) login(domain, user, resource string) error {
	c.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.open(domain); err != nil {
		return err
	}
	if _, err := c.expect(xmpp.NSStream, "features"); err != nil {
		return err
	}
	if err := c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`); err != nil {
		return err
	}
	if _, err := c.expect(xmpp.NSTLS, "proceed"); err != nil {
		return err
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c.conn, c.w = tc, bufio.NewWriter(tc)
	c.r.Reset(tc)
	if err := c.open(domain); err != nil {
		return err
	}
	if _, err := c.expect(xmpp.NSStream, "features"); err != nil {
		return err
	}
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00secret-" + user))
	if err := c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + creds + `</auth>`); err != nil {
		return err
	}
	if _, err := c.expect(xmpp.NSSASL, "success"); err != nil {
		return err
	}
	if err := c.open(domain); err != nil {
		return err
	}
	if _, err := c.expect(xmpp.NSStream, "features"); err != nil {
		return err
	}
	if err := c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`); err != nil {
		return err
	}
	res, err := c.expect(xmpp.NSClient, "iq")
	if err != nil {
		return err
	}
	if res.Attr("type") != "result" {
		return fmt.Errorf("bind: %s", res)
	}
	return nil
}

func (c *idleConn) open(domain string) error {
	if err := c.send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + domain + `' version='1.0'>`); err != nil {
		return err
	}
	_, err := c.r.ReadHeader()
	return err
}

func (c *idleConn) send(s string) error {
	if _, err := c.w.WriteString(s); err != nil {
		return err
	}
	return c.w.Flush()
}

// expect reads the next element and checks its name.
func (c *idleConn) expect(space, local string) (*xmpp.Element, error) {
	el, err := c.r.Next()
	if err != nil {
		return nil, fmt.Errorf("waiting for %s: %w", local, err)
	}
	if !el.Is(space, local) {
		return nil, fmt.Errorf("got %s, want %s", el, local)
	}
	return el, nil
}

// ping sends an XEP-0199 ping to the server and waits for its answer.
func (c *idleConn) ping() error {
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.send(`<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`); err != nil {
		return err
	}
	for {
		el, err := c.r.Next()
		if err != nil {
			return err
		}
		if el.Is(xmpp.NSClient, "iq") && el.Attr("id") == "ping1" {
			if el.Attr("type") != "result" {
				return fmt.Errorf("ping answer %s", el)
			}
			return nil
		}
	}
}

// close ends the stream politely and closes the connection.
func (c *idleConn) close() {
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	c.send(`</stream:stream>`)
	c.conn.Close()
}

// runBounded calls fn(i) for i in [0, n) on at most workers goroutines and
// returns the errors, at most one per call. It stops handing out work once
// ctx is done.
func runBounded(ctx context.Context, n, workers int, fn func(i int) error) []error {
	var (
		next atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil && int(next.Load()) < n {
		errs = append(errs, fmt.Errorf("stopped after %d of %d: %w", next.Load(), n, err))
	}
	return errs
}

// idleConnCount is the number of idle connections: WREN_IDLE_CONNS, or
// 2000 so that make test stays fast (make soak-idle uses 10,000).
func idleConnCount(t *testing.T) int {
	t.Helper()
	v := os.Getenv("WREN_IDLE_CONNS")
	if v == "" {
		return 2000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("WREN_IDLE_CONNS=%q is not a positive number", v)
	}
	return n
}

// TestIdleConnectionsAndLoginFlood opens many idle, logged-in and bound
// connections to the real binary and measures the memory each costs, then
// closes them and checks that the server's descriptors and goroutines
// return to where they were. A flood of short logins follows, with the
// same checks afterwards.
func TestIdleConnectionsAndLoginFlood(t *testing.T) {
	const (
		floodLogins = 500
		fdSlack     = 10
		goSlack     = 20
	)
	n := idleConnCount(t)
	s := startServer(t, "--config", writeConfig(t, exhaustionConfig), "--log-level", "info")
	s.addUser("alice")
	metrics := s.metricsAddr(t)
	addr := "127.0.0.1:" + s.Port

	// One login first, so that the baseline includes what the first login
	// sets up once (database connections, caches).
	if c, err := dialLogin(addr, s.Domain, "alice", "warmup"); err != nil {
		t.Fatal(err)
	} else {
		c.close()
	}
	var base serverUsage
	settle(t, "the server to settle after the warm-up login", func() bool {
		base = s.usage(t, metrics)
		time.Sleep(200 * time.Millisecond)
		again := s.usage(t, metrics)
		return again.fds == base.fds && again.goroutines == base.goroutines
	})
	t.Logf("baseline: %s", base)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	conns := make([]*idleConn, n)
	start := time.Now()
	errs := runBounded(ctx, n, exhaustionDialers, func(i int) error {
		c, err := dialLogin(addr, s.Domain, "alice", fmt.Sprintf("idle%d", i))
		conns[i] = c
		return err
	})
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.conn.Close()
			}
		}
	}
	defer closeAll()
	if len(errs) > 0 {
		t.Fatalf("%d of %d connections failed; first: %v", len(errs), n, errs[0])
	}
	t.Logf("%d connections logged in and bound in %s (%.0f/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())

	// Let the server finish whatever each login started before measuring.
	time.Sleep(time.Second)
	with := s.usage(t, metrics)
	t.Logf("with %d idle connections: %s", n, with)
	perConn := float64(with.rssKiB-base.rssKiB) / float64(n)
	t.Logf("memory per idle connection: %.1f KiB (RSS %d -> %d KiB); %.2f goroutines and %.2f fds per connection",
		perConn, base.rssKiB, with.rssKiB,
		float64(with.goroutines-base.goroutines)/float64(n), float64(with.fds-base.fds)/float64(n))
	if with.fds < base.fds+n {
		t.Errorf("server holds %d fds with %d connections open, baseline %d: connections are missing", with.fds, n, base.fds)
	}

	// The server still answers while holding them all.
	probe, err := dialLogin(addr, s.Domain, "alice", "probe")
	if err != nil {
		t.Fatalf("login with %d idle connections open: %v", n, err)
	}
	if err := probe.ping(); err != nil {
		t.Fatalf("ping with %d idle connections open: %v", n, err)
	}
	probe.close()

	for _, c := range conns {
		c.close()
	}
	after, took := waitForBaseline(t, s, metrics, base, fdSlack, goSlack)
	t.Logf("%s after closing the idle connections: %s", took.Round(time.Millisecond), after)

	// A flood of short logins: log in, bind, close.
	start = time.Now()
	errs = runBounded(ctx, floodLogins, exhaustionDialers, func(i int) error {
		c, err := dialLogin(addr, s.Domain, "alice", fmt.Sprintf("flood%d", i))
		if err != nil {
			return err
		}
		c.close()
		return nil
	})
	elapsed := time.Since(start)
	if len(errs) > 0 {
		t.Fatalf("%d of %d flood logins failed; first: %v", len(errs), floodLogins, errs[0])
	}
	t.Logf("login flood: %d logins (STARTTLS, PLAIN, bind, close) with %d concurrent clients in %s: %.0f logins/s",
		floodLogins, exhaustionDialers, elapsed.Round(time.Millisecond), float64(floodLogins)/elapsed.Seconds())
	after, took = waitForBaseline(t, s, metrics, base, fdSlack, goSlack)
	t.Logf("%s after the login flood: %s", took.Round(time.Millisecond), after)

	last, err := dialLogin(addr, s.Domain, "alice", "last")
	if err != nil {
		t.Fatalf("login after the flood: %v", err)
	}
	defer last.close()
	if err := last.ping(); err != nil {
		t.Fatalf("ping after the flood: %v", err)
	}
}

// waitForBaseline polls for up to 10 s until the server's fds and
// goroutines are back within slack of base, and fails the test otherwise.
// It returns the usage then and how long the return took.
func waitForBaseline(t *testing.T, s *Server, metrics string, base serverUsage, fdSlack, goSlack int) (serverUsage, time.Duration) {
	t.Helper()
	var u serverUsage
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for {
		u = s.usage(t, metrics)
		if u.fds <= base.fds+fdSlack && u.goroutines <= base.goroutines+goSlack {
			return u, time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the connections closed: %s; baseline %s (slack %d fds, %d goroutines)\n%s",
				u, base, fdSlack, goSlack, goroutineDump(s, metrics))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle polls cond for up to 10 s.
func settle(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// goroutineDump returns the server's goroutine profile when its metrics
// endpoint serves one, or a note that it does not.
func goroutineDump(s *Server, metrics string) string {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + metrics + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return "(no goroutine dump: " + err.Error() + ")"
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("(no goroutine dump: the metrics endpoint answered %s)", resp.Status)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}
