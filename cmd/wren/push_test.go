package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/push/apns/apnstest"
	"wren.im/wren/push/fcm/fcmtest"
	"wren.im/wren/xmpp"
)

const (
	testFCMToken  = "fcm-token-0123456789"
	testAPNsToken = "00aa11bb22cc33dd44ee55ff"
	testTopic     = "im.wren.test"
)

// startPushServe runs an in-process server whose push gateway sends to
// mock FCM and APNs services.
func startPushServe(t *testing.T) (*inProcessServer, *fcmtest.Server, *apnstest.Server) {
	t.Helper()
	fm := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	am := apnstest.New(t, apnstest.Options{Topics: []string{testTopic}})
	fcmCA := writeFile(t, "fcm-ca.pem", string(fm.CertPEM()))
	apnsCA := writeFile(t, "apns-ca.pem", string(am.CertPEM()))
	conf := fmt.Sprintf(`[push_gateway]
retry_base = "20ms"
retry_max = "100ms"

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
`, fm.WriteCredentials(t), fm.Endpoint(), fcmCA, am.WriteAuthKey(t), am.KeyID(), am.TeamID(), testTopic, am.URL, apnsCA)
	s := startServe(t, "--config", writeFile(t, "wren.toml", conf))
	t.Cleanup(func() {
		fm.CheckNoViolations(t)
		am.CheckNoViolations(t)
	})
	return s, fm, am
}

// iq sends an IQ and returns the answer with the same id.
func (c *xmppClient) iq(id, typ, to, payload string) *xmpp.Element {
	c.t.Helper()
	c.send(fmt.Sprintf(`<iq type='%s' id='%s' to='%s'>%s</iq>`, typ, id, to, payload))
	for {
		el := c.next()
		if el.Local == "iq" && el.Attr("id") == id {
			return el
		}
	}
}

// registerPush registers a device with the gateway by ad-hoc command and
// returns its secret.
func registerPush(t *testing.T, c *xmppClient, node string, fields map[string]string) string {
	t.Helper()
	x := `<x xmlns='jabber:x:data' type='submit'>`
	for k, v := range fields {
		x += fmt.Sprintf(`<field var='%s'><value>%s</value></field>`, k, v)
	}
	x += `</x>`
	r := c.iq("reg-"+node, "set", "push.localhost", `<command xmlns='http://jabber.org/protocol/commands' node='`+node+`' action='execute'>`+x+`</command>`)
	cmd := r.Child("http://jabber.org/protocol/commands", "command")
	if r.Attr("type") != "result" || cmd == nil || cmd.Attr("status") != "completed" {
		t.Fatalf("%s did not complete: %s", node, r)
	}
	for _, f := range cmd.Child(xmpp.NSDataForms, "x").Elements() {
		if f.Attr("var") == "secret" {
			return f.ChildText(xmpp.NSDataForms, "value")
		}
	}
	t.Fatalf("no secret in %s", r)
	return ""
}

// TestPushCommands: the devices a phone registered, test pushes that
// succeed and fail, and the delivery records they leave, through the CLI
// against a running server with mock providers.
func TestPushCommands(t *testing.T) {
	s, fm, am := startPushServe(t)
	s.wren(t, "bob's password\n", "user", "add", "bob", "--password-stdin").expect(t, exitOK, nil, nil)
	bob := login(t, s.c2sAddr(t), "bob", "bob's password", "phone")
	secrets := []string{
		registerPush(t, bob, "register-push-fcm", map[string]string{"token": testFCMToken, "android-id": "android-1"}),
		registerPush(t, bob, "register-push-apns", map[string]string{"token": testAPNsToken, "device-id": "ios-1"}),
	}
	// noSecrets checks that an output gives away neither the publish
	// secrets nor whole tokens.
	noSecrets := func(r result) {
		t.Helper()
		for _, secret := range append(secrets, testFCMToken, testAPNsToken) {
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("the output gives away %q:\n%s", secret, r)
			}
		}
	}

	r := s.wren(t, "", "push", "devices", "bob")
	r.expect(t, exitOK, []string{"PROVIDER", "DEVICE", "TOKEN", "REGISTERED (UTC)",
		"fcm", "android-1", "fcm-toke…", "apns", "ios-1", "00aa11bb…", "default topic, production"}, nil)
	noSecrets(r)
	r = s.wren(t, "", "push", "devices", "bob@localhost", "--json")
	noSecrets(r)
	var list admin.PushDeviceList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || list.Owner != "bob@localhost" || len(list.Devices) != 2 {
		t.Fatalf("push devices --json: %v\n%s", err, r)
	}
	if d := list.Devices[0]; d.Provider != "fcm" || d.DeviceID != "android-1" || d.Token != "fcm-toke…" || d.Created.IsZero() {
		t.Errorf("first device %+v", d)
	}
	r = s.wren(t, "", "push", "devices", "carol@elsewhere.example")
	r.expect(t, exitOK, nil, []string{"carol@elsewhere.example has no device registered with the push gateway"})

	// Both providers accept the test pushes.
	r = s.wren(t, "", "push", "test", "bob")
	r.expect(t, exitOK, []string{"DEVICE", "OUTCOME", "android-1", "ios-1", "delivered", "projects/wren-test/messages/", "2 of 2 test pushes delivered to bob@localhost"}, nil)
	noSecrets(r)
	if p := fm.WaitPushes(t, 1, 5*time.Second)[0]; p.Token != testFCMToken || p.Data["last-message-body"] != "Wren test push" || p.Data["important"] != "true" {
		t.Errorf("the FCM test push: token %s, data %v", p.Token, p.Data)
	}
	if p := am.WaitPushes(t, 1, 5*time.Second)[0]; p.Token != testAPNsToken || p.Header.Get("apns-push-type") != "alert" {
		t.Errorf("the APNs test push: token %s, headers %v", p.Token, p.Header)
	}

	// FCM is unavailable once: the first attempt fails, the command says
	// so and fails, and the gateway delivers the push at the retry.
	fm.Enqueue(fcmtest.Unavailable(0))
	r = s.wren(t, "", "push", "test", "bob")
	r.expect(t, exitFailure, []string{"retrying", "the gateway retries the push", "1 of 2 test pushes delivered to bob@localhost"},
		[]string{"wren push test: 1 of 2 test pushes to bob@localhost not delivered", "wren push log --account bob@localhost"})
	fm.WaitPushes(t, 3, 5*time.Second)
	var recs []admin.PushRecord
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = s.wren(t, "", "push", "log", "--account", "bob", "--device", "android-1", "--json")
		recs = nil
		if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
			t.Fatalf("push log --json: %v\n%s", err, r)
		}
		if len(recs) == 2 && recs[0].Outcome == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retried test push was not recorded as delivered:\n%s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rec := recs[0]; rec.Attempts != 2 || rec.Owner != "bob@localhost" || rec.Provider != "fcm" || !rec.Important || rec.Latency() <= 0 ||
		!strings.HasPrefix(rec.ProviderID, "projects/wren-test/messages/") {
		t.Errorf("the retried push's record %+v", rec)
	}
	if rec := recs[1]; rec.Attempts != 1 || rec.Outcome != "delivered" {
		t.Errorf("the first test push's record %+v", rec)
	}

	// A token the provider refuses for good.
	fm.ReplyTo(testFCMToken, fcmtest.InvalidArgument())
	r = s.wren(t, "", "push", "test", "bob", "--json")
	if r.code != exitFailure {
		t.Errorf("push test --json with a failed push: exit %d, want %d\n%s", r.code, exitFailure, r)
	}
	var report admin.PushTestReport
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || report.Owner != "bob@localhost" || len(report.Results) != 2 || report.Delivered() != 1 {
		t.Fatalf("push test --json: %v\n%s", err, r)
	}
	if res := report.Results[0]; res.Device.DeviceID != "android-1" || res.Outcome != "failed" || res.Reason == "" {
		t.Errorf("the refused push's result %+v", res)
	}
	noSecrets(r)

	// The table, and the filters.
	r = s.wren(t, "", "push", "log")
	r.expect(t, exitOK, []string{"TIME (UTC)", "ACCOUNT", "ATTEMPTS", "LATENCY", "PROVIDER ID / REASON", "bob@localhost", "android-1", "ios-1", "delivered", "failed"}, nil)
	if n := strings.Count(r.stdout, "\n"); n != 7 {
		t.Errorf("push log shows %d lines, want a header and 6 records:\n%s", n, r)
	}
	r = s.wren(t, "", "push", "log", "--device", "ios-1", "--since", "1h", "--json")
	recs = nil
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) != 3 {
		t.Fatalf("push log --device ios-1: %v\n%s", err, r)
	}
	for _, rec := range recs {
		if rec.DeviceID != "ios-1" || rec.Provider != "apns" || rec.Outcome != "delivered" {
			t.Errorf("push log --device ios-1 shows %+v", rec)
		}
	}
	r = s.wren(t, "", "push", "log", "--limit", "1")
	r.expect(t, exitOK, []string{"bob@localhost"}, []string{"showing the newest 1 record;"})
	if n := strings.Count(r.stdout, "\n"); n != 2 {
		t.Errorf("push log --limit 1 shows %d lines:\n%s", n, r)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r = s.wren(t, "", "push", "log", "--since", future)
	r.expect(t, exitOK, nil, []string{"no push delivery record matches"})
	r = s.wren(t, "", "push", "log", "--account", "carol@elsewhere.example", "--json")
	if r.code != exitOK || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("push log of an account without records:\n%s", r)
	}

	// Mistakes.
	for _, args := range [][]string{
		{"push", "log", "bob"},
		{"push", "log", "--limit", "0"},
		{"push", "log", "--limit", "10001"},
		{"push", "log", "--since", "yesterday"},
		{"push", "devices"},
		{"push", "test", "alice", "bob"},
	} {
		r = s.wren(t, "", args...)
		r.expect(t, exitUsage, nil, []string{"wren " + strings.Join(args[:2], " ") + ":", "Run 'wren help"})
	}
	r = s.wren(t, "", "push", "devices", "a@b@c")
	r.expect(t, exitFailure, nil, []string{"is not an account"})
	r = s.wren(t, "", "push", "test", "carol")
	r.expect(t, exitFailure, nil, []string{"carol@localhost has no device registered with the push gateway; nothing was sent"})

	s.stop(t)
	for _, args := range [][]string{{"push", "log"}, {"push", "devices", "bob"}, {"push", "test", "bob"}} {
		r = s.wren(t, "", args...)
		r.expect(t, exitNotRunning, nil, []string{"the Wren server is not running"})
	}
}

// TestPushCommandsGatewayDisabled: the operator learns why there is
// nothing to show, and how to change it.
func TestPushCommandsGatewayDisabled(t *testing.T) {
	conf := writeFile(t, "wren.toml", "[push_gateway]\nenabled = false\n")
	s := startServe(t, "--config", conf)
	for _, args := range [][]string{{"push", "log"}, {"push", "devices", "bob"}, {"push", "test", "bob", "--json"}} {
		r := s.wren(t, "", args...)
		r.expect(t, exitFailure, nil, []string{"wren " + strings.Join(args[:2], " ") + ": the push gateway is disabled (push_gateway.enabled = false)", "restart the server"})
		if r.stdout != "" {
			t.Errorf("%v printed to stdout:\n%s", args, r)
		}
	}
}

func TestPushHelp(t *testing.T) {
	r := wren(t, "", "help", "push")
	r.expect(t, exitOK, []string{"push log", "push devices", "push test"}, nil)
	r = wren(t, "", "help", "push", "log")
	r.expect(t, exitOK, []string{"wren push log [--account ACCOUNT]", "-account", "-device", "-since", "-limit", "-json", "7d", "status 3"}, nil)
	r = wren(t, "", "help", "push", "test")
	r.expect(t, exitOK, []string{"wren push test ACCOUNT", "Wren test push", "status 0 when every device's push was delivered"}, nil)
	if _, err := os.Stat(filepath.Join("..", "..", "docs", "admin.md")); err == nil {
		doc, _ := os.ReadFile(filepath.Join("..", "..", "docs", "admin.md"))
		for _, cmd := range []string{"wren push log", "wren push devices", "wren push test"} {
			if !strings.Contains(string(doc), cmd) {
				t.Errorf("docs/admin.md does not describe %s", cmd)
			}
		}
	}
}
