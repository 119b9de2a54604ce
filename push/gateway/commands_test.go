package gateway

import (
	"context"
	"slices"
	"strings"
	"testing"

	"wren.im/wren/adhoc"
	"wren.im/wren/push/provider"
	"wren.im/wren/xmpp"
)

func TestDisco(t *testing.T) {
	h := newHarness(t, Config{}, provider.FCM)
	info := h.iq("get", xmpp.NewElement(xmpp.NSDiscoInfo, "query")).Child(xmpp.NSDiscoInfo, "query")
	id := info.Child(xmpp.NSDiscoInfo, "identity")
	if id == nil || id.Attr("category") != "pubsub" || id.Attr("type") != "push" {
		t.Fatalf("identity: %s", info)
	}
	var features []string
	for _, f := range info.Elements() {
		if f.Local == "feature" {
			features = append(features, f.Attr("var"))
		}
	}
	for _, want := range []string{adhoc.NS, xmpp.NSDiscoInfo, xmpp.NSDiscoItems, NSPush} {
		if !slices.Contains(features, want) {
			t.Errorf("feature %s missing from %v", want, features)
		}
	}

	items := h.iq("get", xmpp.NewElement(xmpp.NSDiscoItems, "query", "node", adhoc.NS)).Child(xmpp.NSDiscoItems, "query")
	var nodes []string
	for _, it := range items.Elements() {
		if it.Attr("jid") != gateway {
			t.Errorf("item with jid %q", it.Attr("jid"))
		}
		nodes = append(nodes, it.Attr("node"))
	}
	// APNs is not configured: its command is not listed.
	if strings.Join(nodes, ",") != CmdRegisterFCM+","+CmdUnregister {
		t.Fatalf("commands listed: %v", nodes)
	}
	cmdInfo := h.iq("get", xmpp.NewElement(xmpp.NSDiscoInfo, "query", "node", CmdRegisterFCM))
	if cmdInfo.Attr("type") != "result" {
		t.Fatalf("command node info: %s", cmdInfo)
	}
	wantError(t, h.iq("get", xmpp.NewElement(xmpp.NSDiscoInfo, "query", "node", "nope")), xmpp.ErrTypeCancel, xmpp.CondItemNotFound)
	if r := h.iq("get", xmpp.NewElement(xmpp.NSPing, "ping")); r.Attr("type") != "result" {
		t.Fatalf("ping: %s", r)
	}
	wantError(t, h.iq("get", xmpp.NewElement("urn:example:nothing", "query")), xmpp.ErrTypeCancel, xmpp.CondServiceUnavailable)
}

func TestRegisterSingleStage(t *testing.T) {
	h := newHarness(t, Config{})
	reg := h.registerFCM("fcm-token-1", "android-1")
	dev, err := h.store.PushDevice(context.Background(), reg.node)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Owner != alice || dev.Provider != provider.FCM || dev.DeviceID != "android-1" || dev.Token != "fcm-token-1" || dev.Secret != reg.secret {
		t.Fatalf("stored device %+v", dev)
	}
	// APNs with device-id, topic and sandbox.
	reply := h.command(CmdRegisterAPNs, "", "", map[string]string{
		"token": "abcdef", "device-id": "ios-1", "topic": "im.example.app", "sandbox": "true"})
	apns := h.resultForm(reply)
	dev, err = h.store.PushDevice(context.Background(), apns.node)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Provider != provider.APNs || dev.Topic != "im.example.app" || !dev.Sandbox || dev.DeviceID != "ios-1" {
		t.Fatalf("stored APNs device %+v", dev)
	}
	if apns.node == reg.node || apns.secret == reg.secret {
		t.Fatal("two devices share a node or secret")
	}
	// Missing fields.
	wantError(t, h.command(CmdRegisterFCM, "execute", "", map[string]string{"token": "t"}), xmpp.ErrTypeModify, xmpp.CondBadRequest)
	wantError(t, h.command(CmdRegisterFCM, "execute", "", map[string]string{"android-id": "a"}), xmpp.ErrTypeModify, xmpp.CondBadRequest)
	wantError(t, h.command(CmdRegisterAPNs, "execute", "", map[string]string{"token": "t", "device-id": "d", "sandbox": "maybe"}), xmpp.ErrTypeModify, xmpp.CondBadRequest)
	wantError(t, h.command(CmdRegisterFCM, "execute", "", map[string]string{"token": "t", "device-id": "d", "muc": "room@conference.localhost/nick"}), xmpp.ErrTypeModify, xmpp.CondBadRequest)
}

func TestRegisterMultiStage(t *testing.T) {
	h := newHarness(t, Config{APNsSandbox: true})
	reply := h.command(CmdRegisterAPNs, "execute", "", nil)
	cmd := reply.Child(adhoc.NS, "command")
	if reply.Attr("type") != "result" || cmd.Attr("status") != adhoc.StatusExecuting || cmd.Attr("sessionid") == "" {
		t.Fatalf("first stage: %s", reply)
	}
	blank := adhoc.FindForm(cmd)
	for _, f := range []string{"token", "device-id", "topic", "sandbox"} {
		if blank.Field(f) == nil {
			t.Errorf("blank form has no %s field: %s", f, reply)
		}
	}
	if blank.Value("sandbox") != "1" {
		t.Errorf("sandbox default %q, want 1 (development environment)", blank.Value("sandbox"))
	}
	reg := h.resultForm(h.command(CmdRegisterAPNs, "complete", cmd.Attr("sessionid"),
		map[string]string{"token": "00ff", "device-id": "ios-2"}))
	dev, err := h.store.PushDevice(context.Background(), reg.node)
	if err != nil {
		t.Fatal(err)
	}
	if !dev.Sandbox || dev.Token != "00ff" {
		t.Fatalf("device %+v", dev)
	}

	// Cancel.
	cmd = h.command(CmdRegisterFCM, "", "", nil).Child(adhoc.NS, "command")
	reply = h.command(CmdRegisterFCM, "cancel", cmd.Attr("sessionid"), nil)
	if c := reply.Child(adhoc.NS, "command"); c == nil || c.Attr("status") != adhoc.StatusCanceled {
		t.Fatalf("cancel: %s", reply)
	}
}

func TestReRegisterKeepsNodeAndSecret(t *testing.T) {
	h := newHarness(t, Config{})
	first := h.registerFCM("old-token", "android-1")
	again := h.registerFCM("new-token", "android-1")
	if first != again {
		t.Fatalf("re-registration changed the registration: %+v then %+v", first, again)
	}
	devs, err := h.g.Devices(context.Background(), alice+"/whatever")
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Token != "new-token" {
		t.Fatalf("devices after re-registration: %+v", devs)
	}
	// Another device id is another device.
	if other := h.registerFCM("t2", "android-2"); other.node == first.node {
		t.Fatal("second device got the first's node")
	}
}

func TestDeviceCap(t *testing.T) {
	h := newHarness(t, Config{MaxDevices: 1})
	h.registerFCM("t1", "a1")
	h.registerFCM("t1b", "a1") // the same device again is fine
	wantError(t, h.command(CmdRegisterFCM, "execute", "", map[string]string{"token": "t2", "android-id": "a2"}), xmpp.ErrTypeCancel, xmpp.CondNotAllowed)
}

func TestUnregister(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	reg := h.registerFCM("tok", "android-1")
	muc := h.resultForm(h.command(CmdRegisterFCM, "execute", "", map[string]string{
		"token": "tok", "android-id": "android-1", "muc": "room@conference.localhost"}))

	// p2's channel unregistration of a channel Wren does not know leaves
	// the account's registration alone.
	wantError(t, h.command(CmdUnregisterFCM, "execute", "", map[string]string{"android-id": "android-1", "channel": "c0ffee"}),
		xmpp.ErrTypeCancel, xmpp.CondItemNotFound)
	// Only the group chat registration.
	reply := h.command(CmdUnregisterFCM, "execute", "", map[string]string{"android-id": "android-1", "muc": "room@conference.localhost"})
	if reply.Attr("type") != "result" {
		t.Fatalf("unregister: %s", reply)
	}
	if _, err := h.store.PushDevice(ctx, muc.node); err == nil {
		t.Fatal("group chat registration still there")
	}
	if _, err := h.store.PushDevice(ctx, reg.node); err != nil {
		t.Fatalf("account registration removed: %v", err)
	}
	// Another provider's unregistration does not touch FCM devices.
	wantError(t, h.command(CmdUnregisterAPNs, "execute", "", map[string]string{"device-id": "android-1"}), xmpp.ErrTypeCancel, xmpp.CondItemNotFound)

	// Multi-stage unregister-push.
	cmd := h.command(CmdUnregister, "execute", "", nil).Child(adhoc.NS, "command")
	reply = h.command(CmdUnregister, "complete", cmd.Attr("sessionid"), map[string]string{"device-id": "android-1"})
	c := reply.Child(adhoc.NS, "command")
	if reply.Attr("type") != "result" || c.Attr("status") != adhoc.StatusCompleted || c.Child(adhoc.NS, "note") == nil {
		t.Fatalf("unregister-push: %s", reply)
	}
	if devs, _ := h.g.Devices(ctx, alice); len(devs) != 0 {
		t.Fatalf("devices left: %+v", devs)
	}
	wantError(t, h.command(CmdUnregister, "execute", "", map[string]string{"device-id": "android-1"}), xmpp.ErrTypeCancel, xmpp.CondItemNotFound)
}

func TestUnconfiguredProvider(t *testing.T) {
	h := newHarness(t, Config{}, provider.FCM)
	reply := h.command(CmdRegisterAPNs, "execute", "", map[string]string{"token": "t", "device-id": "d"})
	text := wantError(t, reply, xmpp.ErrTypeCancel, xmpp.CondFeatureNotImplemented)
	if !strings.Contains(text, "APNs") || !strings.Contains(text, "not configured") {
		t.Fatalf("error text %q", text)
	}
	note := reply.Child(adhoc.NS, "command").Child(adhoc.NS, "note")
	if note == nil || note.Attr("type") != adhoc.NoteError {
		t.Fatalf("no error note: %s", reply)
	}
	// Even the multi-stage execution says so at once.
	wantError(t, h.command(CmdRegisterAPNs, "execute", "", nil), xmpp.ErrTypeCancel, xmpp.CondFeatureNotImplemented)
	if devs, _ := h.g.Devices(context.Background(), alice); len(devs) != 0 {
		t.Fatalf("devices registered: %+v", devs)
	}
}
