package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/auth"
	"wren.im/wren/certs"
	"wren.im/wren/config"
	"wren.im/wren/metrics/metricstest"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// adminClient connects to the test server's admin socket.
func (ts *testServer) adminClient(t *testing.T) *admin.Client {
	t.Helper()
	c, err := admin.Dial(context.Background(), ts.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (ts *testServer) status(t *testing.T, c *admin.Client) admin.Status {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// expectStreamErrorText reads until a stream error and checks its
// condition and text, and that the stream is then closed.
func expectStreamErrorText(t *testing.T, c *rawClient, cond, text string) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		el, err := c.r.Next()
		if err != nil {
			t.Fatalf("waiting for stream error %s: %v", cond, err)
		}
		if !el.Is(xmpp.NSStream, "error") {
			continue
		}
		if el.Child(xmpp.NSStreams, cond) == nil || !strings.Contains(el.ChildText(xmpp.NSStreams, "text"), text) {
			t.Fatalf("stream error %s, want %s with text %q", el, cond, text)
		}
		break
	}
	if _, err := c.r.Next(); err != xmpp.ErrStreamClosed && err != io.ErrUnexpectedEOF && err != io.EOF {
		t.Fatalf("after the stream error: %v, want the stream closed", err)
	}
}

func TestAdminSocketPermissions(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data") // created by the server
	ts := startTestServer(t, func(c *config.Config) { c.DataDir = data })
	path := ts.AdminSocket()
	if path != filepath.Join(ts.cfg.DataDir, admin.SocketName) {
		t.Errorf("admin socket at %s, want it in the data directory", path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode %s, want a socket with mode 0600", fi.Mode())
	}
	dir, err := os.Stat(ts.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %s, want 0700", dir.Mode())
	}
	ts.stop(t)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the admin socket outlives the server: %v", err)
	}
}

func TestAdminStatusCounts(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	ac := ts.adminClient(t)

	st := ts.status(t, ac)
	if st.Connections.C2S != 0 || st.Sessions != 0 || st.Version != Version || st.Domain != "localhost" || st.PID != os.Getpid() {
		t.Fatalf("idle status %+v", st)
	}
	if len(st.Listeners) != 3 {
		t.Errorf("listeners %+v, want c2s STARTTLS, c2s direct TLS and metrics", st.Listeners)
	}

	alice := dialRaw(t, ts.addr())
	alice.login("localhost", "alice", smPass, "desk")
	bob := smLogin(t, ts, "bob", "phone")
	st = ts.status(t, ac)
	if st.Connections.C2S != 2 || st.Sessions != 2 || st.Hibernated != 0 {
		t.Fatalf("with two clients: connections %d, sessions %d, hibernated %d; want 2, 2, 0", st.Connections.C2S, st.Sessions, st.Hibernated)
	}

	bob.cut()
	waitFor(t, "bob's session to hibernate", func() bool { return ts.status(t, ac).Hibernated == 1 })
	sendChat(alice, "bob@localhost/phone", "are you there?")
	waitFor(t, "the message to wait in bob's queue", func() bool { return ts.status(t, ac).Queued >= 1 })
	st = ts.status(t, ac)
	if st.Connections.C2S != 1 || st.Sessions != 2 || st.Hibernated != 1 || st.LargestQueue < 1 {
		t.Fatalf("after cutting bob: connections %d, sessions %d, hibernated %d, largest queue %d; want 1, 2, 1, >=1",
			st.Connections.C2S, st.Sessions, st.Hibernated, st.LargestQueue)
	}
	if st.UptimeSeconds <= 0 || st.Started.IsZero() {
		t.Errorf("uptime %v since %v", st.UptimeSeconds, st.Started)
	}
}

func TestAdminSessionListAndKick(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	ts.addUser(t, "bob", smPass)
	ac := ts.adminClient(t)
	ctx := context.Background()

	phone := smLogin(t, ts, "alice", "phone")
	desk := dialRaw(t, ts.addr())
	desk.login("localhost", "alice", smPass, "desk")
	bob := dialRaw(t, ts.addr())
	bob.login("localhost", "bob", smPass, "laptop")

	all, err := ac.Sessions(ctx, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("all sessions: %+v, %v", all, err)
	}
	list, err := ac.Sessions(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].JID != "alice@localhost/desk" || list[1].JID != "alice@localhost/phone" {
		t.Fatalf("alice's sessions: %+v", list)
	}
	if !list[1].Resumable || list[0].Resumable || !list[1].Available || list[1].State != "active" || !list[0].Secure {
		t.Errorf("session details: %+v", list)
	}
	if time.Since(list[0].Bound) > time.Minute || list[0].Remote == "" {
		t.Errorf("bound %v, remote %q", list[0].Bound, list[0].Remote)
	}

	// Kick one resource: the client is told why; the others stay.
	ended, err := ac.Kick(ctx, "alice@localhost/desk", "")
	if err != nil || len(ended) != 1 || ended[0] != "alice@localhost/desk" {
		t.Fatalf("Kick desk = %v, %v", ended, err)
	}
	expectStreamErrorText(t, desk, xmpp.StreamPolicyViolation, DefaultKickReason)
	waitFor(t, "desk to leave", func() bool { l, _ := ac.Sessions(ctx, "alice"); return len(l) == 1 })

	// A hibernated session is ended for good, with no resume possible.
	phone.cut()
	waitFor(t, "phone to hibernate", func() bool { l, _ := ac.Sessions(ctx, "alice"); return len(l) == 1 && l[0].State == "hibernated" })
	ended, err = ac.Kick(ctx, "alice@localhost", "maintenance")
	if err != nil || len(ended) != 1 || ended[0] != "alice@localhost/phone" {
		t.Fatalf("Kick alice = %v, %v", ended, err)
	}
	if l, _ := ac.Sessions(ctx, "alice"); len(l) != 0 {
		t.Fatalf("alice still has sessions after the kick: %+v", l)
	}
	if _, answer := resume(t, ts, "alice", phone.id, phone.h); !answer.Is(xmpp.NSSM, "failed") {
		t.Fatalf("resume after a kick: %s", answer)
	}

	// Bob was not disturbed.
	bob.send(`<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := bob.next(); r.Attr("id") != "p1" || r.Attr("type") != "result" {
		t.Fatalf("bob after the kicks: %s", r)
	}

	// Failures.
	if _, err := ac.Kick(ctx, "alice@localhost/desk", ""); !errors.Is(err, admin.ErrNotFound) {
		t.Errorf("kicking an ended session = %v, want ErrNotFound", err)
	}
	if _, err := ac.Kick(ctx, "alice@elsewhere.example", ""); !errors.Is(err, admin.ErrBadRequest) {
		t.Errorf("kicking a JID of another domain = %v, want ErrBadRequest", err)
	}
	if _, err := ac.Kick(ctx, "localhost", ""); !errors.Is(err, admin.ErrBadRequest) {
		t.Errorf("kicking the server = %v, want ErrBadRequest", err)
	}
}

func TestAdminKickReason(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", smPass)
	c := dialRaw(t, ts.addr())
	c.login("localhost", "alice", smPass, "r")
	if _, err := ts.adminClient(t).Kick(context.Background(), "alice@localhost/r", "server moving to new hardware"); err != nil {
		t.Fatal(err)
	}
	expectStreamErrorText(t, c, xmpp.StreamPolicyViolation, "server moving to new hardware")
}

func TestAdminUserDelEndsSessions(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	ac := ts.adminClient(t)
	ctx := context.Background()

	bob := ts.online(t, "bob", "desk")
	alice := ts.online(t, "alice", "desk")
	phone := smLogin(t, ts, "alice", "phone")
	phone.cut()
	waitFor(t, "alice's phone to hibernate", func() bool { return ts.c2s.Hibernated() == 1 })
	bob.drain()

	ended, err := ac.DeleteUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ended, " ") != "alice@localhost/desk alice@localhost/phone" {
		t.Errorf("ended %v, want alice's two sessions", ended)
	}
	expectStreamErrorText(t, alice.rawClient, xmpp.StreamNotAuthorized, "deleted by an administrator")
	waitFor(t, "alice's sessions to end", func() bool { return len(ts.router.Sessions("alice")) == 0 })
	if _, err := ts.store.Account(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("alice's account after deletion: %v", err)
	}
	// Her contact learns that she is gone.
	bob.expect("alice's unavailable presence", isPresenceFromUser("alice@localhost", "unavailable"))
	// She cannot come back.
	if dialRaw(t, ts.addr()).tryAuth("alice", password) {
		t.Error("a deleted user could log in")
	}
	if _, err := ac.DeleteUser(ctx, "alice"); !errors.Is(err, admin.ErrNotFound) {
		t.Errorf("deleting twice = %v, want ErrNotFound", err)
	}
	if _, err := ac.DeleteUser(ctx, "not a valid name"); !errors.Is(err, admin.ErrBadRequest) {
		t.Errorf("deleting an invalid name = %v, want ErrBadRequest", err)
	}
}

func TestAdminUserCommands(t *testing.T) {
	ts := startTestServer(t, nil)
	ac := ts.adminClient(t)
	ctx := context.Background()
	sha1, sha256, err := newTestCredentials("first password")
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.AddUser(ctx, "carol", sha1, sha256); err != nil {
		t.Fatal(err)
	}
	if err := ac.AddUser(ctx, "carol", sha1, sha256); !errors.Is(err, admin.ErrExists) {
		t.Errorf("adding twice = %v, want ErrExists", err)
	}
	if !dialRaw(t, ts.addr()).tryAuth("carol", "first password") {
		t.Fatal("carol cannot log in with the password set through the socket")
	}
	sha1, sha256, _ = newTestCredentials("second password")
	if err := ac.SetPassword(ctx, "carol", sha1, sha256); err != nil {
		t.Fatal(err)
	}
	if dialRaw(t, ts.addr()).tryAuth("carol", "first password") || !dialRaw(t, ts.addr()).tryAuth("carol", "second password") {
		t.Error("the password change did not take effect")
	}
	if err := ac.SetPassword(ctx, "dave", sha1, sha256); !errors.Is(err, admin.ErrNotFound) {
		t.Errorf("password of a missing user = %v", err)
	}
	users, err := ac.ListUsers(ctx)
	if err != nil || strings.Join(users, ",") != "carol" {
		t.Errorf("users %v, %v", users, err)
	}
	if ok, err := ac.UserExists(ctx, "Carol"); !ok || err != nil {
		t.Errorf("UserExists(Carol) = %v, %v; names are case-insensitive", ok, err)
	}
}

// writeCert writes a new certificate for localhost to the two paths and
// returns its serial number in hex.
func writeCert(t *testing.T, certPath, keyPath string) string {
	t.Helper()
	certPEM, keyPEM, err := certs.Generate([]string{"localhost"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.SerialNumber.Text(16)
}

// servedSerial returns the serial of the certificate a TLS client sees.
func servedSerial(t *testing.T, c *rawClient) string {
	t.Helper()
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		t.Fatal("not a TLS connection")
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

func TestReloadSwapsCertificate(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certPath, keyPath)
	ts := startTestServer(t, func(c *config.Config) { c.TLS.CertFile, c.TLS.KeyFile = certPath, keyPath })
	ts.addUser(t, "alice", password)

	old := dialRaw(t, ts.addr())
	old.login("localhost", "alice", password, "old")
	if got := servedSerial(t, old); got != first {
		t.Fatalf("served serial %s, want %s", got, first)
	}

	second := writeCert(t, certPath, keyPath)
	res, err := ts.adminClient(t).Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.CertificateChanged || res.Certificate.Serial != second || res.Certificate.Source != certPath {
		t.Errorf("reload result %+v, want the new certificate %s from %s", res, second, certPath)
	}

	// A new connection gets the new certificate and can log in.
	fresh := dialRaw(t, ts.addr())
	fresh.login("localhost", "alice", password, "new")
	if got := servedSerial(t, fresh); got != second {
		t.Errorf("new connection sees serial %s, want %s", got, second)
	}
	// Direct TLS too.
	tc, err := tls.Dial("tcp", ts.tlsAddr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); got != second {
		t.Errorf("direct TLS sees serial %s, want %s", got, second)
	}
	tc.Close()
	// The old connection is still up.
	old.send(`<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if r := old.next(); r.Attr("id") != "still" || r.Attr("type") != "result" {
		t.Fatalf("old connection after reload: %s", r)
	}

	// A broken certificate is refused and the current one kept.
	if err := os.WriteFile(certPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "keeps serving the previous one") {
		t.Fatalf("reload of a broken certificate = %v", err)
	}
	again := dialRaw(t, ts.addr())
	again.open("localhost")
	again.starttls()
	if got := servedSerial(t, again); got != second {
		t.Errorf("after a failed reload the server serves %s, want %s", got, second)
	}
}

func TestReloadConfiguration(t *testing.T) {
	ts := startTestServer(t, nil)
	level := new(slog.LevelVar)
	var mu sync.Mutex
	var next *config.Config
	var loadErr error
	ts.opts.logLevel = level
	ts.opts.configSource = "test.toml"
	ts.opts.loadConfig = func() (*config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		if loadErr != nil {
			return nil, loadErr
		}
		c := *next
		return &c, nil
	}
	changed := *ts.cfg
	changed.Log.Level = "debug"
	changed.C2S.Listen = "0.0.0.0:5222"
	changed.C2S.MaxStanzaBytes = 1000
	next = &changed

	res, err := ts.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Config != "test.toml" || res.CertificateChanged {
		t.Errorf("result %+v", res)
	}
	if len(res.Applied) != 1 || res.Applied[0].Option != "log.level" || res.Applied[0].New != `"debug"` {
		t.Errorf("applied %+v, want log.level", res.Applied)
	}
	var restart []string
	for _, c := range res.NeedRestart {
		restart = append(restart, c.Option)
	}
	if strings.Join(restart, " ") != "c2s.listen c2s.max_stanza_bytes" {
		t.Errorf("need restart %v, want c2s.listen c2s.max_stanza_bytes", restart)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level %s after reload, want DEBUG", level.Level())
	}
	// Still pending at the next reload; nothing new applied.
	res, err = ts.Reload(context.Background())
	if err != nil || len(res.Applied) != 0 || len(res.NeedRestart) != 2 {
		t.Errorf("second reload: %+v, %v", res, err)
	}

	mu.Lock()
	loadErr = errors.New("config test.toml: line 3: unknown option c2s.lisen")
	mu.Unlock()
	if _, err := ts.adminClient(t).Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "unknown option c2s.lisen") {
		t.Errorf("reload of a broken file = %v, want its problem", err)
	}
}

// metricsGet fetches a path of the metrics endpoint.
func metricsGet(t *testing.T, ts *testServer, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + ts.MetricsAddr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestMetricsEndpoint(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "alice", password)
	reg := ts.metrics.Registry()
	authCount := func(outcome string) float64 {
		return metricstest.Value(t, reg, "wren_c2s_auth_attempts_total", map[string]string{"mechanism": "PLAIN", "outcome": outcome})
	}
	if authCount("success") != 0 || authCount("failure") != 0 {
		t.Fatal("auth counters do not start at 0")
	}

	c := dialRaw(t, ts.addr())
	c.login("localhost", "alice", password, "r")
	if got := authCount("success"); got != 1 {
		t.Errorf("PLAIN successes after a login = %v, want 1", got)
	}
	if dialRaw(t, ts.addr()).tryAuth("alice", "wrong password") {
		t.Fatal("wrong password accepted")
	}
	if got := authCount("failure"); got != 1 {
		t.Errorf("PLAIN failures after a wrong password = %v, want 1", got)
	}
	c.send(`<iq type='get' id='m1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	c.next()
	c.send(`<message to='nobody@localhost' type='chat'><body>x</body></message>`)
	c.next() // the bounce

	code, body := metricsGet(t, ts, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`wren_c2s_auth_attempts_total{mechanism="PLAIN",outcome="success"} 1`,
		`wren_c2s_auth_attempts_total{mechanism="PLAIN",outcome="failure"} 1`,
		`wren_c2s_stanzas_in_total{kind="iq"} 1`,
		`wren_c2s_stanzas_in_total{kind="message"} 1`,
		`wren_c2s_stanzas_out_total{kind="iq"} 1`,
		`wren_c2s_stanzas_out_total{kind="message"} 1`,
		`wren_c2s_sessions 1`,
		`wren_c2s_connections_accepted_total{transport="starttls"} 2`,
		`wren_route_duration_seconds_count 2`,
		`wren_build_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Messages to an offline user are counted as they are stored.
	ts.addUser(t, "bob", password)
	c.send(`<message to='bob@localhost' type='chat'><body>later</body></message>`)
	waitFor(t, "the offline write to be counted", func() bool {
		return metricstest.Value(t, reg, "wren_offline_writes_total", map[string]string{"outcome": "stored"}) == 1
	})

	if code, body := metricsGet(t, ts, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}
	ts.store.Close()
	if code, body := metricsGet(t, ts, "/healthz"); code != 503 || !strings.Contains(body, "database") {
		t.Errorf("/healthz with the database closed = %d %q, want 503", code, body)
	}
}

func TestMetricsSMCounters(t *testing.T) {
	ts := startTestServer(t, func(c *config.Config) {
		c.StreamManagement.ResumeTimeout = config.Duration{Duration: 200 * time.Millisecond}
		c.StreamManagement.MaxResumeTimeout = config.Duration{Duration: 200 * time.Millisecond}
	})
	ts.addUser(t, "alice", smPass)
	reg := ts.metrics.Registry()
	sm := func(event string) float64 {
		return metricstest.Value(t, reg, "wren_sm_events_total", map[string]string{"event": event})
	}
	c := smLogin(t, ts, "alice", "phone")
	c.cut()
	waitFor(t, "hibernation", func() bool { return sm("hibernated") == 1 })
	r, answer := resume(t, ts, "alice", c.id, c.h)
	if !answer.Is(xmpp.NSSM, "resumed") {
		t.Fatalf("resume: %s", answer)
	}
	r.cut()
	waitFor(t, "the resumed session to time out", func() bool { return sm("timed_out") == 1 })
	if _, answer := resume(t, ts, "alice", c.id, c.h); !answer.Is(xmpp.NSSM, "failed") {
		t.Fatalf("late resume: %s", answer)
	}
	for event, want := range map[string]float64{"enabled": 1, "resumed": 1, "hibernated": 2, "timed_out": 1, "resume_failed": 1} {
		if got := sm(event); got != want {
			t.Errorf("sm %s = %v, want %v", event, got, want)
		}
	}
	if got := metricstest.Value(t, reg, "wren_c2s_sessions_hibernated", nil); got != 0 {
		t.Errorf("hibernated gauge %v after the timeout", got)
	}
}

// TestLogsHideSecrets drives logins (right and wrong passwords) and
// messages through a server logging JSON at info level, and checks that
// no password and no message body reaches the log.
func TestLogsHideSecrets(t *testing.T) {
	var buf lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ts := startTestServerWithLogger(t, logger, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	bob := ts.online(t, "bob", "desk")
	alice := ts.online(t, "alice", "desk")
	const wrong = "Wr0ng-Pa55word!"
	if dialRaw(t, ts.addr()).tryAuth("alice", wrong) {
		t.Fatal("wrong password accepted")
	}
	const body1, body2, body3 = "the eagle lands at dawn", "meet me by the old oak", "nobody reads this"
	alice.message("bob@localhost", body1)
	bob.expectMessage(alice.jid, body1)
	bob.message("alice@localhost/desk", body2)
	alice.expectMessage(bob.jid, body2)
	ts.addUser(t, "carol", password)
	alice.message("carol@localhost", body3) // stored offline
	alice.message("ghost@localhost", body3) // bounced
	alice.sync()
	bob.closeStream()
	ts.stop(t)

	out := buf.String()
	if !strings.Contains(out, `"msg":"client authenticated"`) || !strings.Contains(out, `"msg":"client authentication failed"`) {
		t.Fatalf("the log lacks the authentication events it should have:\n%s", out)
	}
	plain := func(user, pass string) string {
		return base64Std("\x00" + user + "\x00" + pass)
	}
	for _, secret := range []string{password, wrong, body1, body2, body3, plain("alice", password), plain("alice", wrong), plain("bob", password)} {
		if strings.Contains(out, secret) {
			t.Errorf("the info log contains %q", secret)
		}
	}
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("log line %d is not JSON: %s", i+1, line)
			break
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
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

// startTestServerWithLogger runs an in-process server on loopback ports
// with a temporary data directory, the metrics endpoint off, cheap SCRAM
// and short failure delays; mutate adjusts the configuration.
func startTestServerWithLogger(t *testing.T, logger *slog.Logger, mutate func(*config.Config)) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.C2S.Listen = "127.0.0.1:0"
	cfg.C2S.DirectTLS = "127.0.0.1:0"
	cfg.Metrics.Listen = ""
	cfg.Auth.ScramIterations = 4096
	cfg.Auth.FailureDelay = config.Duration{Duration: 10 * time.Millisecond}
	if mutate != nil {
		mutate(cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ts := &testServer{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(15 * time.Second):
			t.Error("server did not stop within 15s")
		}
	})
	return ts
}

func TestSecondServerOnSameDataDirRefused(t *testing.T) {
	ts := startTestServer(t, nil)
	cfg := *ts.cfg
	cfg.C2S.Listen, cfg.C2S.DirectTLS, cfg.Metrics.Listen = "127.0.0.1:0", "127.0.0.1:0", ""
	_, err := New(context.Background(), &cfg, slog.New(slog.DiscardHandler))
	if !errors.Is(err, admin.ErrRunning) {
		t.Fatalf("a second server on the same data directory: %v, want admin.ErrRunning", err)
	}
	// The first one still answers.
	if _, err := ts.adminClient(t).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsPortInUse(t *testing.T) {
	ts := startTestServer(t, nil)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.C2S.Listen, cfg.C2S.DirectTLS = "127.0.0.1:0", ""
	cfg.Metrics.Listen = ts.MetricsAddr().String()
	_, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "listen for metrics on "+cfg.Metrics.Listen) {
		t.Fatalf("New with the metrics port taken = %v", err)
	}
	// Nothing is left behind: the data directory has no socket.
	if _, err := os.Lstat(filepath.Join(cfg.DataDir, admin.SocketName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed start left the admin socket: %v", err)
	}
}

func newTestCredentials(pass string) (sha1, sha256 storage.ScramCredential, err error) {
	return auth.NewCredentials(pass, 4096)
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
