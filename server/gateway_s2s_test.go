package server

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wren.im/wren/config"
	"wren.im/wren/push/fcm/fcmtest"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// TestGatewayOverFederation: a user of a.example registers her phone with
// the push gateway of b.example over federation, enables push at her own
// server, and goes offline; a message for her makes a.example publish the
// notification to push.b.example over s2s, and the gateway pushes it to
// FCM.
func TestGatewayOverFederation(t *testing.T) {
	fm := fcmtest.New(t, fcmtest.Options{})
	caFile := filepath.Join(t.TempDir(), "fcm-ca.pem")
	if err := os.WriteFile(caFile, fm.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, b := startFederated(t, func(domain string, c *config.Config) {
		switch domain {
		case "a.example":
			c.S2S.Addresses["push.b.example"] = c.S2S.Addresses["b.example"]
		case "b.example":
			c.PushGateway.Enabled = true
			c.PushGateway.FCM = config.FCM{CredentialsFile: fm.WriteCredentials(t), Endpoint: fm.Endpoint(), CAFile: caFile}
		}
	})
	alice := a.online(t, "alice", "phone")
	form := `<x xmlns='jabber:x:data' type='submit'><field var='token'><value>remote-token</value></field><field var='android-id'><value>a1</value></field></x>`
	r := alice.result("set", "push.b.example", `<command xmlns='http://jabber.org/protocol/commands' node='register-push-fcm' action='execute'>`+form+`</command>`)
	values := map[string]string{}
	for _, f := range r.Child("http://jabber.org/protocol/commands", "command").Child(xmpp.NSDataForms, "x").Elements() {
		values[f.Attr("var")] = f.ChildText(xmpp.NSDataForms, "value")
	}
	if values["jid"] != "push.b.example" || values["node"] == "" || values["secret"] == "" {
		t.Fatalf("registration over federation: %s", r)
	}
	alice.result("set", "", fmt.Sprintf(`<enable xmlns='urn:xmpp:push:0' jid='push.b.example' node='%s'>`+
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
		`<field var='secret'><value>%s</value></field></x></enable>`, values["node"], values["secret"]))
	alice.closeStream()
	a.waitGone(t, "alice@a.example/phone")

	bob := a.online(t, "bob", "pc")
	bob.message("alice@a.example", "over there")
	p := fm.WaitPushes(t, 1, 10*time.Second)[0]
	if p.Message["token"] != "remote-token" {
		t.Fatalf("FCM message %v", p.Message)
	}
	// The gateway recorded the delivery for the remote account.
	waitFor(t, "the delivery record", func() bool {
		recs, err := b.gateway.Records(t.Context(), storage.PushDeliveryFilter{Owner: "alice@a.example"})
		return err == nil && len(recs) == 1 && recs[0].Outcome == storage.PushDelivered
	})
	fm.CheckNoViolations(t)
}
