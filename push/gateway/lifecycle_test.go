package gateway

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"wren.im/wren/push/provider"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// gatewayGoroutines returns how many goroutines run the gateway's code.
func gatewayGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("push/gateway.(*Gateway).worker")) ||
			bytes.Contains(g, []byte("push/gateway.(*Gateway).retryLoop")) ||
			bytes.Contains(g, []byte("push/gateway.(*Gateway).cleanupLoop")) {
			n++
		}
	}
	return n
}

// waitGoroutines waits until want gateway goroutines run (a goroutine
// that signalled it is done may still be on its way out) and returns how
// many ran at the end.
func waitGoroutines(want int) int {
	deadline := time.Now().Add(waitFor)
	n := gatewayGoroutines()
	for n != want && time.Now().Before(deadline) {
		runtime.Gosched()
		n = gatewayGoroutines()
	}
	return n
}

func TestCloseStopsWorkers(t *testing.T) {
	h := newHarness(t, Config{Workers: 3, RetryBase: time.Hour, RetryMax: time.Hour})
	if n := waitGoroutines(5); n != 5 {
		t.Fatalf("%d gateway goroutines running, want 3 workers + retry + cleanup", n)
	}
	inflight := h.registerFCM("t1", "blocked")
	retrying := h.registerFCM("t2", "retrying")
	h.fcm.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		if p.Token == "t2" {
			return "", &provider.Error{Kind: provider.Retry, Status: 503, Reason: "UNAVAILABLE"}
		}
		<-ctx.Done() // blocks until Close cancels it
		return "", ctx.Err()
	})
	wantResult(t, h.wait(h.publish(alice, retrying.node, retrying.secret, summary{})))
	if o := h.outcome(); o != "fcm retrying" {
		t.Fatalf("outcome %q", o)
	}
	// A notification for a push waiting to be retried is accepted at once.
	wantResult(t, h.wait(h.publish(alice, retrying.node, retrying.secret, summary{count: "2"})))

	blocked := h.publish(alice, inflight.node, inflight.secret, summary{})
	h.started(h.fcm)
	h.started(h.fcm)

	h.g.Close()
	wantError(t, h.wait(blocked).El, xmpp.ErrTypeWait, xmpp.CondRecipientUnavailable)
	if n := waitGoroutines(0); n != 0 {
		t.Fatalf("%d gateway goroutines still running after Close", n)
	}
	recs := h.records(retrying.node)
	if len(recs) != 1 || recs[0].Outcome != storage.PushFailed || recs[0].Coalesced != 1 {
		t.Fatalf("retrying push after Close: %+v", recs)
	}
	// Later notifications get a wait error.
	wantError(t, h.wait(h.publish(alice, retrying.node, retrying.secret, summary{})).El, xmpp.ErrTypeWait, xmpp.CondRecipientUnavailable)
	h.g.Close() // idempotent
}

func TestRecordRetention(t *testing.T) {
	h := newHarness(t, Config{RecordRetention: time.Hour})
	h.g.Close() // no cleanup loop racing with the explicit Cleanup calls
	ctx := context.Background()
	now := time.Now()
	for _, at := range []time.Time{now.Add(-2 * time.Hour), now.Add(-90 * time.Minute), now.Add(-time.Minute)} {
		if _, err := h.store.AddPushDelivery(ctx, storage.PushDelivery{Time: at, Owner: alice, DeviceID: "d", Provider: provider.FCM,
			Node: "n", Outcome: storage.PushDelivered, Attempts: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.g.Cleanup(ctx); n != 2 {
		t.Fatalf("Cleanup removed %d records, want 2", n)
	}
	recs, err := h.g.Records(ctx, storage.PushDeliveryFilter{Owner: alice})
	if err != nil || len(recs) != 1 || !recs[0].Time.Equal(now.Add(-time.Minute)) {
		t.Fatalf("records left %+v, %v", recs, err)
	}
	if n := h.g.Cleanup(ctx); n != 0 {
		t.Fatalf("second Cleanup removed %d", n)
	}
}

func TestTestPush(t *testing.T) {
	h := newHarness(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if res, err := h.g.Test(ctx, alice); err != nil || len(res) != 0 {
		t.Fatalf("Test without devices = %+v, %v", res, err)
	}
	fcm := h.registerFCM("fcm-token", "android")
	apns := h.resultForm(h.command(CmdRegisterAPNs, "execute", "", map[string]string{"token": "aa", "device-id": "ios"}))
	h.apns.script(func(ctx context.Context, n int, p provider.Push) (string, error) {
		return "", &provider.Error{Kind: provider.Permanent, Status: 403, Reason: "InvalidProviderToken"}
	})

	res, err := h.g.Test(ctx, alice+"/laptop")
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("results %+v", res)
	}
	got := map[string]TestResult{}
	for _, r := range res {
		got[r.Device.Node] = r
	}
	if r := got[fcm.node]; r.Outcome != storage.PushDelivered || r.ProviderID == "" || r.Device.DeviceID != "android" {
		t.Fatalf("FCM result %+v", r)
	}
	if r := got[apns.node]; r.Outcome != storage.PushFailed || r.Reason != "InvalidProviderToken (HTTP 403)" {
		t.Fatalf("APNs result %+v", r)
	}
	p := h.fcm.seen()[0].push
	if !p.Important || p.MessageCount != 1 || p.LastBody != TestMessage {
		t.Fatalf("test push %+v", p)
	}
	if recs := h.records(fcm.node); len(recs) != 1 || recs[0].Outcome != storage.PushDelivered {
		t.Fatalf("records %+v", recs)
	}
	if recs := h.records(apns.node); len(recs) != 1 || recs[0].Outcome != storage.PushFailed {
		t.Fatalf("records %+v", recs)
	}
	if _, err := h.g.Test(ctx, "not a jid@@"); err == nil {
		t.Fatal("Test with a bad JID succeeded")
	}
}

func TestBackoff(t *testing.T) {
	g := &Gateway{cfg: withDefaults(Config{RetryBase: time.Second, RetryMax: 10 * time.Second}), jitter: func(d time.Duration) time.Duration { return d }}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		if got := g.backoff(n, 0); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
	if got := g.backoff(1, time.Minute); got != time.Minute {
		t.Errorf("Retry-After ignored: %v", got)
	}
	for range 100 {
		if d := equalJitter(10 * time.Second); d < 5*time.Second || d > 10*time.Second {
			t.Fatalf("jitter %v out of [5s, 10s]", d)
		}
	}
}

func TestNewRefusesBadSetup(t *testing.T) {
	h := newHarness(t, Config{})
	if _, err := New(Config{Domain: gateway}, h.r, h.store, nil, nil); err == nil {
		t.Error("a second gateway took the same domain")
	}
	if _, err := New(Config{Domain: "other.localhost"}, h.r, h.store, map[string]provider.Sender{"webpush": h.fcm}, nil); err == nil {
		t.Error("an unknown provider was accepted")
	}
	if _, err := New(Config{Domain: "bad domain"}, h.r, h.store, nil, nil); err == nil {
		t.Error("a bad domain was accepted")
	}
}
