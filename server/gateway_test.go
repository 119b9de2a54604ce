package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wren.im/wren/c2s"
	"wren.im/wren/config"
	"wren.im/wren/push/apns/apnstest"
	"wren.im/wren/push/fcm/fcmtest"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// gatewayServer starts a server whose push gateway sends to mock FCM and
// APNs services.
func gatewayServer(t *testing.T) (*testServer, *fcmtest.Server, *apnstest.Server) {
	t.Helper()
	fm := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	am := apnstest.New(t, apnstest.Options{Topics: []string{"im.wren.test"}})
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fcmCA, apnsCA := write("fcm-ca.pem", fm.CertPEM()), write("apns-ca.pem", am.CertPEM())
	ts := startTestServer(t, func(c *config.Config) {
		c.PushGateway.RetryBase = config.Duration{Duration: 20 * time.Millisecond}
		c.PushGateway.RetryMax = config.Duration{Duration: 100 * time.Millisecond}
		c.PushGateway.FCM = config.FCM{CredentialsFile: fm.WriteCredentials(t), Endpoint: fm.Endpoint(), CAFile: fcmCA}
		c.PushGateway.APNs = config.APNs{KeyFile: am.WriteAuthKey(t), KeyID: am.KeyID(), TeamID: am.TeamID(),
			Topic: "im.wren.test", Environment: "production", Endpoint: am.URL, CAFile: apnsCA}
	})
	t.Cleanup(func() {
		fm.CheckNoViolations(t)
		am.CheckNoViolations(t)
	})
	return ts, fm, am
}

// registerDevice runs a gateway registration command and returns the
// node and secret of the result form.
func registerDevice(t *testing.T, c *imClient, command string, fields map[string]string) (node, secret string) {
	t.Helper()
	x := `<x xmlns='jabber:x:data' type='submit'>`
	for k, v := range fields {
		x += fmt.Sprintf(`<field var='%s'><value>%s</value></field>`, k, v)
	}
	x += `</x>`
	r := c.result("set", "push.localhost", `<command xmlns='http://jabber.org/protocol/commands' node='`+command+`' action='execute'>`+x+`</command>`)
	cmd := r.Child("http://jabber.org/protocol/commands", "command")
	if cmd == nil || cmd.Attr("status") != "completed" {
		t.Fatalf("registration did not complete: %s", r)
	}
	values := map[string]string{}
	for _, f := range cmd.Child(xmpp.NSDataForms, "x").Elements() {
		values[f.Attr("var")] = f.ChildText(xmpp.NSDataForms, "value")
	}
	if values["jid"] != "push.localhost" || values["node"] == "" || values["secret"] == "" {
		t.Fatalf("registration result form %v", values)
	}
	return values["node"], values["secret"]
}

func enablePush(t *testing.T, c *imClient, node, secret string) {
	t.Helper()
	c.result("set", "", `<enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='`+node+`'>`+
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
		`<field var='secret'><value>`+secret+`</value></field></x></enable>`)
}

// TestGatewayEndToEnd: a phone registers with the built-in gateway,
// enables push and goes offline; messages for it reach mock FCM once per
// burst; a 503 is retried; a dead token removes the device at the gateway
// and the registration on the server; every push has a delivery record.
func TestGatewayEndToEnd(t *testing.T) {
	ts, fm, _ := gatewayServer(t)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "pc")

	bob := ts.connect(t, "bob", "phone")
	node, secret := registerDevice(t, bob, "register-push-fcm", map[string]string{"token": "fcm-token-1", "android-id": "android-1"})
	enablePush(t, bob, node, secret)
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")

	sent := time.Now()
	alice.message("bob@localhost", "ping")
	p := fm.WaitPushes(t, 1, 5*time.Second)[0]
	t.Logf("push latency on loopback (message sent -> mock FCM received): %s", p.Time.Sub(sent))
	if p.Time.Sub(sent) > time.Second {
		t.Errorf("the push took %s, want under a second", p.Time.Sub(sent))
	}
	msg := p.Message
	data, _ := msg["data"].(map[string]any)
	if msg["token"] != "fcm-token-1" || data["important"] != "true" || data["last-message-body"] != "New message" {
		t.Fatalf("FCM message %v", msg)
	}
	alice.message("bob@localhost", "ping again")
	if got := fm.WaitPushes(t, 1, 300*time.Millisecond); len(got) != 1 {
		t.Fatalf("%d pushes for one burst, want 1", len(got))
	}

	// A 503 is retried by the gateway and then delivered.
	bob = ts.connect(t, "bob", "phone")
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	fm.Enqueue(fcmtest.Unavailable(0))
	alice.message("bob@localhost", "after 503")
	fm.WaitPushes(t, 3, 5*time.Second)

	ctx := context.Background()
	waitFor(t, "the retried push's record", func() bool {
		recs, err := ts.gateway.Records(ctx, storage.PushDeliveryFilter{Owner: "bob@localhost"})
		return err == nil && len(recs) == 2 && recs[0].Outcome == storage.PushDelivered && recs[0].Attempts == 2
	})

	// A dead token: the gateway forgets the device and answers the server
	// with item-not-found, which disables the registration at once.
	bob = ts.connect(t, "bob", "phone")
	bob.closeStream()
	ts.waitGone(t, "bob@localhost/phone")
	fm.ReplyTo("fcm-token-1", fcmtest.Unregistered())
	alice.message("bob@localhost", "to a dead phone")
	fm.WaitPushes(t, 4, 5*time.Second)
	waitFor(t, "the registration to be disabled", func() bool {
		regs, err := ts.store.PushRegistrations(ctx, "bob")
		return err == nil && len(regs) == 0
	})
	devs, err := ts.gateway.Devices(ctx, "bob@localhost")
	if err != nil || len(devs) != 0 {
		t.Fatalf("the dead device is still registered at the gateway: %v %v", devs, err)
	}
	recs, err := ts.gateway.Records(ctx, storage.PushDeliveryFilter{Owner: "bob@localhost"})
	if err != nil || len(recs) != 3 || recs[0].Outcome != storage.PushDeadToken {
		t.Fatalf("records %+v %v", recs, err)
	}
	// Nothing more reaches the provider.
	alice.message("bob@localhost", "nobody home")
	if got := fm.WaitPushes(t, 4, 300*time.Millisecond); len(got) != 4 {
		t.Fatalf("%d pushes after the registration was disabled, want 4", len(got))
	}
}

// TestGatewayAPNsHibernated: an iOS device whose connection dropped gets
// an alert push through APNs for a message queued in its hibernated
// session.
func TestGatewayAPNsHibernated(t *testing.T) {
	ts, _, am := gatewayServer(t)
	ts.users(t, "alice", "bob")
	alice := ts.online(t, "alice", "pc")
	bob := ts.online(t, "bob", "iphone")
	bob.send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	bob.expect("sm enabled", func(el *xmpp.Element) bool { return el.Is(xmpp.NSSM, "enabled") })
	node, secret := registerDevice(t, bob, "register-push-apns", map[string]string{"token": "00aa11bb22cc", "device-id": "ios-1"})
	enablePush(t, bob, node, secret)
	bob.conn.Close()
	waitFor(t, "the session to hibernate", func() bool {
		for _, s := range ts.c2s.Sessions("bob") {
			if s.State == c2s.StateHibernated {
				return true
			}
		}
		return false
	})
	alice.message("bob@localhost", "wake up")
	p := am.WaitPushes(t, 1, 5*time.Second)[0]
	if p.Token != "00aa11bb22cc" || p.Header.Get("apns-push-type") != "alert" || p.Header.Get("apns-topic") != "im.wren.test" {
		t.Fatalf("APNs push %s %v", p.Token, p.Header)
	}
}
