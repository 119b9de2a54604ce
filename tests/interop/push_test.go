package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/push/apns/apnstest"
	"wren.im/wren/push/fcm/fcmtest"
)

// Known to slixmpp_push.py too.
const (
	pushFCMToken   = "fcm-token-bob-0123456789"
	pushFCMDevice  = "android-bob"
	pushAPNsToken  = "00aa11bb22cc33dd44ee55ff66778899"
	pushAPNsDevice = "ios-bob"
	pushTopic      = "im.wren.test"
)

// pushQuiet is how long a test waits to conclude that no (further) push
// comes. Pushes on loopback arrive within tens of milliseconds.
const pushQuiet = 700 * time.Millisecond

// pushGatewayServer starts wren with its push gateway sending to mock FCM
// and APNs services, and the accounts alice and bob.
func pushGatewayServer(t *testing.T) (*Server, *fcmtest.Server, *apnstest.Server) {
	t.Helper()
	fm := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	am := apnstest.New(t, apnstest.Options{Topics: []string{pushTopic}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// slixmpp cannot do SCRAM -PLUS over TLS 1.3, so channel binding is off.
	conf := fmt.Sprintf(`[auth]
channel_binding = false

[push_gateway]
retry_base = "50ms"
retry_max = "200ms"

[push_gateway.fcm]
credentials_file = %q
endpoint = %q
ca_file = %q

[push_gateway.apns]
key_file = %q
key_id = %q
team_id = %q
topic = %q
endpoint = %q
ca_file = %q
`, fm.WriteCredentials(t), fm.Endpoint(), write("fcm-ca.pem", fm.CertPEM()),
		am.WriteAuthKey(t), am.KeyID(), am.TeamID(), pushTopic, am.URL, write("apns-ca.pem", am.CertPEM()))
	s := startServer(t, "--config", writeConfig(t, conf))
	s.addUser("alice")
	s.addUser("bob")
	t.Cleanup(func() {
		fm.CheckNoViolations(t)
		am.CheckNoViolations(t)
	})
	return s, fm, am
}

// wrenJSON runs a wren command against s and decodes its standard output
// into v; it returns the exit code.
func (s *Server) wrenJSON(t *testing.T, v any, args ...string) int {
	t.Helper()
	cmd := exec.Command(s.bin, append(args, "--data", s.Dir, "--domain", s.Domain, "--json")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("wren %s: %v", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("wren %s --json (exit %d): %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, err, stdout.String(), stderr.String())
	}
	return code
}

// pushWait polls cond (which runs wren commands or reads logs) until it
// holds, for up to 10 s.
func pushWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSessions waits until the sessions of user are in the given states, as
// 'wren session list' shows them.
func waitSessions(t *testing.T, s *Server, user string, states ...string) {
	t.Helper()
	pushWait(t, fmt.Sprintf("the sessions of %s to be %v", user, states), func() bool {
		var list []admin.Session
		s.wrenJSON(t, &list, "session", "list", user)
		var got []string
		for _, sess := range list {
			got = append(got, sess.State)
		}
		return slices.Equal(got, states)
	})
}

// pushScenario is slixmpp_push.py running in turns with the test.
type pushScenario struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	out   *lockedBuffer
}

func startPushScenario(t *testing.T, s *Server, scenario string) *pushScenario {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "slixmpp_push.py", scenario,
		"--port", s.Port, "--tls-port", s.TLSPort, "--domain", s.Domain, "--ca", s.CA)
	sc := &pushScenario{t: t, cmd: cmd, lines: make(chan string, 100), out: &lockedBuffer{}}
	cmd.Stderr = sc.out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sc.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(sc.lines)
		r := bufio.NewScanner(stdout)
		for r.Scan() {
			fmt.Fprintln(sc.out, r.Text())
			sc.lines <- r.Text()
		}
	}()
	t.Cleanup(func() {
		// A scenario still waiting for its turn reads the end of input
		// and fails; one that hangs is killed at the context's deadline.
		stdin.Close()
		<-readDone
		cmd.Wait()
		cancel()
		if t.Failed() {
			t.Logf("slixmpp_push.py %s:\n%s", scenario, sc.out)
		}
	})
	return sc
}

// next returns the fields of the next line starting with word, skipping
// the script's progress lines.
func (sc *pushScenario) next(word string) []string {
	sc.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-sc.lines:
			if !ok {
				sc.t.Fatalf("slixmpp_push.py ended before %q:\n%s", word, sc.out)
			}
			if strings.HasPrefix(line, "FAIL") {
				sc.t.Fatalf("slixmpp_push.py: %s\n%s", line, sc.out)
			}
			if f := strings.Fields(line); len(f) > 0 && f[0] == word {
				return f[1:]
			}
		case <-timeout:
			sc.t.Fatalf("slixmpp_push.py did not print %q within 30s:\n%s", word, sc.out)
		}
	}
}

// await waits until the script reaches step and waits for its turn.
func (sc *pushScenario) await(step string) {
	sc.t.Helper()
	if f := sc.next("AWAIT"); len(f) != 1 || f[0] != step {
		sc.t.Fatalf("slixmpp_push.py is at step %v, want %s:\n%s", f, step, sc.out)
	}
}

// proceed lets the script go on.
func (sc *pushScenario) proceed() {
	sc.t.Helper()
	if _, err := io.WriteString(sc.stdin, "go\n"); err != nil {
		sc.t.Fatalf("slixmpp_push.py: %v\n%s", err, sc.out)
	}
}

// sent returns when alice sent the burst of step.
func (sc *pushScenario) sent(step string) time.Time {
	sc.t.Helper()
	f := sc.next("SENT")
	if len(f) != 2 || f[0] != step {
		sc.t.Fatalf("slixmpp_push.py sent %v, want the burst %s", f, step)
	}
	sec, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		sc.t.Fatalf("send time %q: %v", f[1], err)
	}
	return time.Unix(0, int64(sec*1e9))
}

// finish waits for the script to pass.
func (sc *pushScenario) finish() {
	sc.t.Helper()
	sc.stdin.Close()
	for range sc.lines {
	}
	if err := sc.cmd.Wait(); err != nil || !strings.Contains(sc.out.String(), "PASS gateway") {
		sc.t.Fatalf("slixmpp_push.py: %v\n%s", err, sc.out)
	}
	sc.t.Logf("slixmpp_push.py:\n%s", sc.out)
}

// expectBurstPush lets the script send the burst of step and checks that
// it wakes the phone with exactly one FCM push, within a second. It
// returns the latency from the first message to the push's arrival at the
// mock.
func expectBurstPush(t *testing.T, sc *pushScenario, fm *fcmtest.Server, step string) time.Duration {
	t.Helper()
	before := len(fm.Pushes())
	sc.proceed()
	sent := sc.sent(step)
	sc.await(step + "-pushed")
	p := fm.WaitPushes(t, before+1, 5*time.Second)[before]
	latency := p.Time.Sub(sent)
	if p.Token != pushFCMToken || p.Data["important"] != "true" || p.Status != 200 {
		t.Errorf("%s: push to %s with data %v answered %d", step, p.Token, p.Data, p.Status)
	}
	if latency > time.Second {
		t.Errorf("%s: the push arrived %s after the message, want under a second", step, latency)
	}
	time.Sleep(pushQuiet)
	if n := len(fm.Pushes()) - before; n != 1 {
		t.Errorf("%s: %d pushes for one burst of two messages, want 1", step, n)
	}
	return latency
}

// expectNoPush lets the script send the burst of step and checks that it
// reaches no provider and leaves no record.
func expectNoPush(t *testing.T, s *Server, sc *pushScenario, fm *fcmtest.Server, step string) {
	t.Helper()
	before := len(fm.Pushes())
	var recs []admin.PushRecord
	s.wrenJSON(t, &recs, "push", "log", "--account", "bob")
	sc.proceed()
	sc.sent(step)
	sc.await(step + "-quiet")
	time.Sleep(pushQuiet)
	if n := len(fm.Pushes()) - before; n != 0 {
		t.Errorf("%s: %d pushes, want none", step, n)
	}
	var after []admin.PushRecord
	s.wrenJSON(t, &after, "push", "log", "--account", "bob")
	if len(after) != len(recs) {
		t.Errorf("%s: %d new delivery records, want none", step, len(after)-len(recs))
	}
}

// TestSlixmppPushGateway: a phone (slixmpp) registers with Wren's own push
// gateway by ad-hoc command and enables push; while it is offline, and
// while its session is hibernated after its connection dropped, a burst
// of messages wakes it with exactly one FCM push within a second. A 503
// is retried, <disable/> stops the pushes, and a dead token removes the
// device at the gateway and the registration on the server. The wren
// push commands show the devices, send test pushes and show the records.
func TestSlixmppPushGateway(t *testing.T) {
	requirePython(t, "slixmpp")
	s, fm, am := pushGatewayServer(t)
	sc := startPushScenario(t, s, "gateway")

	sc.await("registered")
	var devs admin.PushDeviceList
	if code := s.wrenJSON(t, &devs, "push", "devices", "bob"); code != 0 || devs.Owner != "bob@localhost" || len(devs.Devices) != 2 {
		t.Fatalf("wren push devices bob (exit %d): %+v", code, devs)
	}
	if d := devs.Devices[0]; d.Provider != "fcm" || d.DeviceID != pushFCMDevice || d.Token != pushFCMToken[:8]+"…" {
		t.Errorf("the Android device: %+v", d)
	}
	if d := devs.Devices[1]; d.Provider != "apns" || d.DeviceID != pushAPNsDevice || d.Sandbox {
		t.Errorf("the iOS device: %+v", d)
	}
	var report admin.PushTestReport
	if code := s.wrenJSON(t, &report, "push", "test", "bob"); code != 0 || report.Delivered() != 2 {
		t.Fatalf("wren push test bob (exit %d): %+v", code, report)
	}
	if p := fm.WaitPushes(t, 1, 5*time.Second)[0]; p.Token != pushFCMToken || p.Data["last-message-body"] != "Wren test push" {
		t.Errorf("the FCM test push: %s %v", p.Token, p.Data)
	}
	if p := am.WaitPushes(t, 1, 5*time.Second)[0]; p.Token != pushAPNsToken || p.Header.Get("apns-topic") != pushTopic {
		t.Errorf("the APNs test push: %s %v", p.Token, p.Header)
	}
	sc.proceed()

	// Case 1: offline.
	sc.await("offline")
	waitSessions(t, s, "bob")
	offline := expectBurstPush(t, sc, fm, "offline")
	sc.proceed()

	// Case 2: hibernated by stream management.
	sc.await("hibernated")
	waitSessions(t, s, "bob", "hibernated")
	hibernated := expectBurstPush(t, sc, fm, "hibernated")
	sc.proceed()
	t.Logf("push latency, message sent -> mock FCM received: offline %s, hibernated %s", offline, hibernated)

	// A 503 is retried, then delivered.
	sc.await("retry")
	waitSessions(t, s, "bob")
	fm.Enqueue(fcmtest.Unavailable(0))
	before := len(fm.Pushes())
	sc.proceed()
	sc.sent("retry")
	sc.await("retry-pushed")
	pushes := fm.WaitPushes(t, before+2, 5*time.Second)[before:]
	if pushes[0].Status != 503 || pushes[1].Status != 200 || pushes[1].Token != pushFCMToken {
		t.Errorf("after a 503: answers %d then %d", pushes[0].Status, pushes[1].Status)
	}
	var recs []admin.PushRecord
	pushWait(t, "the retried push's record", func() bool {
		s.wrenJSON(t, &recs, "push", "log", "--account", "bob", "--device", pushFCMDevice, "--limit", "1")
		return len(recs) == 1 && recs[0].Outcome == "delivered" && recs[0].Attempts == 2
	})
	time.Sleep(pushQuiet)
	if n := len(fm.Pushes()) - before; n != 2 {
		t.Errorf("%d requests for a push retried once, want 2", n)
	}
	sc.proceed()

	// <disable/> stops the pushes.
	sc.await("disabled")
	waitSessions(t, s, "bob")
	expectNoPush(t, s, sc, fm, "disabled")
	sc.proceed()

	// A dead token: the gateway removes the device and the server the
	// registration; nothing is pushed any more.
	sc.await("dead")
	waitSessions(t, s, "bob")
	if s.wrenJSON(t, &devs, "push", "devices", "bob"); len(devs.Devices) != 1 || devs.Devices[0].DeviceID != pushFCMDevice {
		t.Fatalf("after unregister-push of the iOS device: %+v", devs)
	}
	fm.ReplyTo(pushFCMToken, fcmtest.Unregistered())
	before = len(fm.Pushes())
	sc.proceed()
	sc.sent("dead")
	sc.await("dead-pushed")
	if p := fm.WaitPushes(t, before+1, 5*time.Second)[before]; p.Status != 404 || p.ErrorCode != "UNREGISTERED" {
		t.Errorf("the push to the dead token was answered %d %s", p.Status, p.ErrorCode)
	}
	pushWait(t, "the dead device to be removed", func() bool {
		s.wrenJSON(t, &devs, "push", "devices", "bob")
		return len(devs.Devices) == 0
	})
	pushWait(t, "the server to disable the registration", func() bool {
		return strings.Contains(s.logs.String(), "push registration disabled")
	})
	s.wrenJSON(t, &recs, "push", "log", "--account", "bob", "--limit", "1")
	if len(recs) != 1 || recs[0].Outcome != "dead-token" || recs[0].DeviceID != pushFCMDevice || recs[0].Reason == "" {
		t.Errorf("the dead token's record: %+v", recs)
	}
	expectNoPush(t, s, sc, fm, "after-dead")
	sc.proceed()
	sc.finish()

	// Every push left a record: 2 test pushes, 3 bursts, the dead token.
	s.wrenJSON(t, &recs, "push", "log", "--account", "bob@localhost")
	var outcomes []string
	for _, r := range recs {
		outcomes = append(outcomes, r.DeviceID+":"+r.Outcome)
	}
	want := []string{pushFCMDevice + ":dead-token", pushFCMDevice + ":delivered", pushFCMDevice + ":delivered", pushFCMDevice + ":delivered",
		pushAPNsDevice + ":delivered", pushFCMDevice + ":delivered"}
	slices.Sort(outcomes)
	slices.Sort(want)
	if !slices.Equal(outcomes, want) {
		t.Errorf("wren push log --account bob: %v, want %v", outcomes, want)
	}
	if out, err := s.wren("", "push", "log", "--account", "bob"); err != nil || !strings.Contains(out, "dead-token") || !strings.Contains(out, "ATTEMPTS") {
		t.Errorf("wren push log: %v\n%s", err, out)
	}
}
