package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"wren.im/wren/push/provider"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

func TestPublishDelivered(t *testing.T) {
	h := newHarness(t, Config{})
	reg := h.registerFCM("fcm-token", "android-1")
	r := h.wait(h.publish(alice, reg.node, reg.secret, summary{count: "3", sender: "bob@example.org", body: "hello"}))
	wantResult(t, r)
	if r.El.Attr("from") != gateway || r.El.Attr("to") != alice {
		t.Fatalf("reply addresses: %s", r.El)
	}
	calls := h.fcm.seen()
	if len(calls) != 1 {
		t.Fatalf("%d sends", len(calls))
	}
	p := calls[0].push
	if p.Token != "fcm-token" || !p.Important || p.MessageCount != 3 || p.LastSender != "bob@example.org" || p.LastBody != "hello" ||
		len(p.ID) != 36 || p.Expiration.IsZero() {
		t.Fatalf("push %+v", p)
	}
	if o := h.outcome(); o != "fcm delivered" {
		t.Fatalf("metrics outcome %q", o)
	}
	recs := h.records(reg.node)
	if len(recs) != 1 {
		t.Fatalf("records %+v", recs)
	}
	rec := recs[0]
	if rec.Outcome != storage.PushDelivered || rec.Attempts != 1 || rec.ProviderID != "fcm-"+p.ID || !rec.Important ||
		rec.Owner != alice || rec.DeviceID != "android-1" || rec.Provider != provider.FCM || rec.Latency <= 0 {
		t.Fatalf("record %+v", rec)
	}

	// A summary without body is a silent push.
	wantResult(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{count: "4"})))
	if p := h.fcm.seen()[1].push; p.Important || p.MessageCount != 4 || p.LastBody != "" {
		t.Fatalf("silent push %+v", p)
	}
}

func TestPublishRefused(t *testing.T) {
	h := newHarness(t, Config{})
	reg := h.registerFCM("fcm-token", "android-1")
	wantError(t, h.wait(h.publish(alice, "no-such-node", reg.secret, summary{})).El, xmpp.ErrTypeCancel, xmpp.CondItemNotFound)
	wantError(t, h.wait(h.publish(alice, reg.node, "wrong", summary{})).El, xmpp.ErrTypeAuth, xmpp.CondForbidden)
	wantError(t, h.wait(h.publish(alice, reg.node, "", summary{})).El, xmpp.ErrTypeAuth, xmpp.CondForbidden)
	// The right secret from another domain.
	r := h.wait(h.publish("mallory@evil.example", reg.node, reg.secret, summary{}))
	wantError(t, r.El, xmpp.ErrTypeAuth, xmpp.CondForbidden)
	if strings.Contains(r.El.String(), reg.secret) {
		t.Fatalf("the error reply repeats the secret: %s", r.El)
	}
	// Any JID of the owner's domain may publish (servers publish from the
	// user's bare JID or from their own domain).
	wantResult(t, h.wait(h.publish(domain, reg.node, reg.secret, summary{})))
	if n := len(h.fcm.seen()); n != 1 {
		t.Fatalf("%d pushes sent, want 1", n)
	}
}

func TestPublishGroupChatRegistration(t *testing.T) {
	h := newHarness(t, Config{})
	reply := h.command(CmdRegisterFCM, "execute", "", map[string]string{
		"token": "tok", "android-id": "a1", "muc": "room@conference.example.org"})
	reg := h.resultForm(reply)
	wantError(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{})).El, xmpp.ErrTypeAuth, xmpp.CondForbidden)
	wantResult(t, h.wait(h.publish("room@conference.example.org", reg.node, reg.secret, summary{})))
}

func TestDeadToken(t *testing.T) {
	h := newHarness(t, Config{})
	reg := h.registerFCM("dead-token", "android-1")
	h.fcm.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		return "", &provider.Error{Kind: provider.DeadToken, Status: 404, Reason: "UNREGISTERED"}
	})
	text := wantError(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{body: "hi"})).El, xmpp.ErrTypeCancel, xmpp.CondItemNotFound)
	if !strings.Contains(text, "UNREGISTERED") {
		t.Fatalf("error text %q", text)
	}
	if _, err := h.store.PushDevice(context.Background(), reg.node); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("device not removed: %v", err)
	}
	recs := h.records(reg.node)
	if len(recs) != 1 || recs[0].Outcome != storage.PushDeadToken || recs[0].Reason != "UNREGISTERED (HTTP 404)" {
		t.Fatalf("records %+v", recs)
	}
	// Never retried: the node is gone.
	wantError(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{})).El, xmpp.ErrTypeCancel, xmpp.CondItemNotFound)
	if n := len(h.fcm.seen()); n != 1 {
		t.Fatalf("%d sends", n)
	}
}

func TestDeadTokenKeepsReRegisteredDevice(t *testing.T) {
	h := newHarness(t, Config{})
	reg := h.registerFCM("old", "android-1")
	release := make(chan struct{})
	h.fcm.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		<-release
		return "", &provider.Error{Kind: provider.DeadToken, Reason: "UNREGISTERED"}
	})
	ch := h.publish(alice, reg.node, reg.secret, summary{})
	h.started(h.fcm)
	h.registerFCM("new", "android-1") // while the push with the old token is in flight
	close(release)
	wantError(t, h.wait(ch).El, xmpp.ErrTypeCancel, xmpp.CondItemNotFound)
	dev, err := h.store.PushDevice(context.Background(), reg.node)
	if err != nil || dev.Token != "new" {
		t.Fatalf("re-registered device removed by the old token's death: %+v, %v", dev, err)
	}
}

func TestRetryAfterThenDelivered(t *testing.T) {
	h := newHarness(t, Config{})
	reg := h.registerFCM("tok", "android-1")
	const retryAfter = 100 * time.Millisecond
	h.fcm.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		if n == 1 {
			return "", &provider.Error{Kind: provider.Retry, Status: 429, Reason: "QUOTA_EXCEEDED", RetryAfter: retryAfter}
		}
		return "msg-2", nil
	})
	// Accepted for retry: the publisher gets a result after the first attempt.
	wantResult(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{body: "hi"})))
	if o := h.outcome(); o != "fcm retrying" {
		t.Fatalf("first outcome %q", o)
	}
	if o := h.outcome(); o != "fcm delivered" {
		t.Fatalf("second outcome %q", o)
	}
	calls := h.fcm.seen()
	if len(calls) != 2 {
		t.Fatalf("%d sends", len(calls))
	}
	if gap := calls[1].at.Sub(calls[0].at); gap < retryAfter {
		t.Fatalf("retried after %v, before the provider's Retry-After %v", gap, retryAfter)
	}
	if calls[0].push.ID != calls[1].push.ID {
		t.Fatal("a retry is a new push id")
	}
	recs := h.records(reg.node)
	if len(recs) != 1 || recs[0].Outcome != storage.PushDelivered || recs[0].Attempts != 2 || recs[0].ProviderID != "msg-2" {
		t.Fatalf("records %+v", recs)
	}
}

func TestRetriesExhausted(t *testing.T) {
	h := newHarness(t, Config{MaxAttempts: 3})
	reg := h.registerFCM("tok", "android-1")
	h.fcm.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		return "", &provider.Error{Kind: provider.Retry, Status: 503, Reason: "UNAVAILABLE"}
	})
	wantResult(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{})))
	for i, want := range []string{"fcm retrying", "fcm retrying", "fcm failed"} {
		if o := h.outcome(); o != want {
			t.Fatalf("outcome %d = %q, want %q", i+1, o, want)
		}
	}
	recs := h.records(reg.node)
	if len(recs) != 1 || recs[0].Outcome != storage.PushFailed || recs[0].Attempts != 3 || !strings.Contains(recs[0].Reason, "gave up after 3 attempts") {
		t.Fatalf("records %+v", recs)
	}
	// With one attempt, the publisher hears of the failure: a wait error.
	h2 := newHarness(t, Config{MaxAttempts: 1})
	reg2 := h2.registerFCM("tok", "android-1")
	h2.fcm.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		return "", errors.New("connection reset")
	})
	wantError(t, h2.wait(h2.publish(alice, reg2.node, reg2.secret, summary{})).El, xmpp.ErrTypeWait, xmpp.CondRecipientUnavailable)
}

func TestPermanentFailure(t *testing.T) {
	h := newHarness(t, Config{})
	reply := h.command(CmdRegisterAPNs, "execute", "", map[string]string{"token": "abcd", "device-id": "ios"})
	reg := h.resultForm(reply)
	h.apns.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		return "", &provider.Error{Kind: provider.Permanent, Status: 400, Reason: "TopicDisallowed"}
	})
	text := wantError(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{})).El, xmpp.ErrTypeCancel, xmpp.CondInternalServerError)
	if !strings.Contains(text, "TopicDisallowed") {
		t.Fatalf("error text %q", text)
	}
	recs := h.records(reg.node)
	if len(recs) != 1 || recs[0].Outcome != storage.PushFailed || recs[0].Attempts != 1 || recs[0].Provider != provider.APNs {
		t.Fatalf("records %+v", recs)
	}
	if n := len(h.apns.seen()); n != 1 {
		t.Fatalf("permanent failure retried: %d sends", n)
	}
	// The device stays.
	if _, err := h.store.PushDevice(context.Background(), reg.node); err != nil {
		t.Fatal(err)
	}
}

func TestQueueFull(t *testing.T) {
	h := newHarness(t, Config{QueueSize: 1, Workers: 1})
	a := h.registerFCM("ta", "a")
	b := h.registerFCM("tb", "b")
	release := make(chan struct{})
	h.fcm.script(blockUntil(release))
	chA := h.publish(alice, a.node, a.secret, summary{})
	h.started(h.fcm)
	// Device a's push is in flight and fills the queue: b is refused.
	wantError(t, h.wait(h.publish(alice, b.node, b.secret, summary{body: "x"})).El, xmpp.ErrTypeWait, xmpp.CondResourceConstraint)
	if o := h.outcome(); o != "fcm dropped-queue-full" {
		t.Fatalf("outcome %q", o)
	}
	recs := h.records(b.node)
	if len(recs) != 1 || recs[0].Outcome != storage.PushDroppedQueueFull || !recs[0].Important || recs[0].Attempts != 0 {
		t.Fatalf("records %+v", recs)
	}
	// A notification for the device in flight is merged, not refused.
	chA2 := h.publish(alice, a.node, a.secret, summary{count: "2"})
	h.noReply(chA2)
	close(release)
	wantResult(t, h.wait(chA))
	wantResult(t, h.wait(chA2))
}

func TestCoalescing(t *testing.T) {
	h := newHarness(t, Config{Workers: 1})
	a := h.registerFCM("ta", "a")
	b := h.registerFCM("tb", "b")
	release := make(chan struct{})
	h.fcm.script(blockUntil(release))

	a1 := h.publish(alice, a.node, a.secret, summary{count: "1", body: "first"})
	if p := h.started(h.fcm); p.Token != "ta" {
		t.Fatalf("first send to %q", p.Token)
	}
	// The only worker is busy: b's notifications wait in the queue and
	// merge; a's arrive while a's push is in flight and make its next push.
	b1 := h.publish(alice, b.node, b.secret, summary{count: "1", sender: "bob@localhost", body: "to b"})
	b2 := h.publish(alice, b.node, b.secret, summary{count: "2"})
	a2 := h.publish(alice, a.node, a.secret, summary{count: "2", body: "second"})
	a3 := h.publish(alice, a.node, a.secret, summary{count: "3"})
	for _, ch := range []chan *router.Stanza{b1, b2, a2, a3} {
		h.noReply(ch)
	}

	release <- struct{}{} // a's first push
	wantResult(t, h.wait(a1))
	h.noReply(a2)
	pb := h.started(h.fcm)
	if pb.Token != "tb" || pb.MessageCount != 2 || pb.LastBody != "to b" || pb.LastSender != "bob@localhost" || !pb.Important {
		t.Fatalf("merged push to b %+v", pb)
	}
	release <- struct{}{}
	wantResult(t, h.wait(b1))
	wantResult(t, h.wait(b2))
	pa := h.started(h.fcm)
	if pa.Token != "ta" || pa.MessageCount != 3 || pa.LastBody != "second" || !pa.Important {
		t.Fatalf("merged push to a %+v", pa)
	}
	release <- struct{}{}
	wantResult(t, h.wait(a2))
	wantResult(t, h.wait(a3))
	for range 3 {
		if o := h.outcome(); o != "fcm delivered" {
			t.Fatalf("outcome %q", o)
		}
	}
	if n := len(h.fcm.seen()); n != 3 {
		t.Fatalf("%d sends, want 3", n)
	}
	recsA, recsB := h.records(a.node), h.records(b.node)
	if len(recsA) != 2 || recsA[0].Coalesced != 0 || recsA[1].Coalesced != 1 || len(recsB) != 1 || recsB[0].Coalesced != 1 {
		t.Fatalf("records a %+v, b %+v", recsA, recsB)
	}
}

func TestRequestDeadline(t *testing.T) {
	const timeout = 50 * time.Millisecond
	h := newHarness(t, Config{RequestTimeout: timeout, MaxAttempts: 1})
	reg := h.registerFCM("tok", "a")
	var sendErr error
	h.fcm.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		<-ctx.Done()
		sendErr = ctx.Err()
		return "", ctx.Err()
	})
	text := wantError(t, h.wait(h.publish(alice, reg.node, reg.secret, summary{})).El, xmpp.ErrTypeWait, xmpp.CondRecipientUnavailable)
	if !errors.Is(sendErr, context.DeadlineExceeded) {
		t.Fatalf("the blocked send ended with %v", sendErr)
	}
	c := h.fcm.seen()[0]
	if c.deadline.IsZero() || c.deadline.Sub(c.at) > timeout {
		t.Fatalf("send deadline %v after the call, want at most %v", c.deadline.Sub(c.at), timeout)
	}
	if !strings.Contains(text, "deadline") {
		t.Fatalf("error text %q", text)
	}
}
