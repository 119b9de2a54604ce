package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The push gateway methods of fakeBackend (admin_test.go). The account
// "disabled" stands for a server without a push gateway, "nobody" for an
// account without devices.

var fakeQueued = time.Date(2026, 11, 27, 10, 41, 7, 0, time.UTC)

func (f *fakeBackend) PushLog(ctx context.Context, flt PushLogFilter) ([]PushRecord, error) {
	f.record(fmt.Sprintf("pushlog owner=%s device=%s since=%s limit=%d", flt.Owner, flt.DeviceID, flt.Since.UTC().Format(time.RFC3339), flt.Limit))
	switch flt.Owner {
	case "disabled":
		return nil, ErrPushGatewayDisabled
	case "nobody":
		return nil, nil
	}
	return []PushRecord{
		{ID: 2, Time: fakeQueued, Owner: "bob@example.org", DeviceID: "android-1", Provider: "fcm", Outcome: "delivered",
			ProviderID: "projects/p/messages/2", Attempts: 2, LatencySeconds: 1.25, Important: true},
		{ID: 1, Time: fakeQueued.Add(-time.Hour), Owner: "bob@example.org", DeviceID: "android-1", Provider: "fcm", Outcome: "dead-token",
			Reason: "UNREGISTERED", Attempts: 1, LatencySeconds: 0.08, Coalesced: 3},
	}, nil
}

func (f *fakeBackend) PushDevices(ctx context.Context, owner string) (PushDeviceList, error) {
	f.record("pushdevices " + owner)
	switch owner {
	case "disabled":
		return PushDeviceList{}, ErrPushGatewayDisabled
	case "nobody":
		return PushDeviceList{Owner: "nobody@example.org"}, nil
	}
	return PushDeviceList{Owner: owner + "@example.org", Devices: []PushDevice{
		{Provider: "apns", DeviceID: "ios-1", Topic: "im.wren.app", Sandbox: true, Token: ShortToken("00aa11bb22cc33dd44ee"), Created: fakeQueued, Updated: fakeQueued},
	}}, nil
}

func (f *fakeBackend) PushTest(ctx context.Context, owner string) (PushTestReport, error) {
	f.record("pushtest " + owner)
	if owner == "disabled" {
		return PushTestReport{}, ErrPushGatewayDisabled
	}
	return PushTestReport{Owner: owner + "@example.org", Results: []PushTestResult{
		{Device: PushDevice{Provider: "fcm", DeviceID: "android-1"}, Outcome: "delivered", ProviderID: "projects/p/messages/3", LatencySeconds: 0.085},
		{Device: PushDevice{Provider: "apns", DeviceID: "ios-1"}, Outcome: "failed", Reason: "BadTopic"},
		{Device: PushDevice{Provider: "apns", DeviceID: "ios-2"}, Outcome: PushTimeout, Reason: "context deadline exceeded"},
	}}, nil
}

func (f *fakeBackend) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func TestPushLogRoundTrip(t *testing.T) {
	fb := newFake()
	path, _ := serve(t, fb)
	c := dial(t, path)
	ctx := context.Background()

	recs, err := c.PushLog(ctx, PushLogQuery{Owner: "bob", DeviceID: "android-1"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("PushLog = %+v, %v", recs, err)
	}
	if got, want := fb.lastCall(), "pushlog owner=bob device=android-1 since=0001-01-01T00:00:00Z limit=50"; got != want {
		t.Errorf("the backend got %q, want %q (the default limit, no time filter)", got, want)
	}
	r := recs[0]
	if !r.Time.Equal(fakeQueued) || r.Outcome != "delivered" || r.Attempts != 2 || r.Latency() != 1250*time.Millisecond || !r.Important || r.ProviderID == "" {
		t.Errorf("record %+v did not survive the round trip", r)
	}
	if recs[1].Reason != "UNREGISTERED" || recs[1].Coalesced != 3 {
		t.Errorf("record %+v did not survive the round trip", recs[1])
	}

	// A relative start is resolved by the server, an absolute one kept.
	before := time.Now()
	if _, err := c.PushLog(ctx, PushLogQuery{Since: "2h", Limit: 5}); err != nil {
		t.Fatal(err)
	}
	var since string
	var limit int
	if _, err := fmt.Sscanf(fb.lastCall(), "pushlog owner= device= since=%s limit=%d", &since, &limit); err != nil {
		t.Fatalf("backend call %q: %v", fb.lastCall(), err)
	}
	st, _ := time.Parse(time.RFC3339, since)
	if d := before.Add(-2 * time.Hour).Sub(st); d < -time.Minute || d > time.Minute || limit != 5 {
		t.Errorf("since 2h limit 5 reached the backend as since=%s limit=%d", since, limit)
	}
	if _, err := c.PushLog(ctx, PushLogQuery{Since: "2026-11-27T10:00:00+01:00"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fb.lastCall(), "since=2026-11-27T09:00:00Z") {
		t.Errorf("an RFC 3339 start reached the backend as %q", fb.lastCall())
	}

	if recs, err := c.PushLog(ctx, PushLogQuery{Owner: "nobody"}); err != nil || recs == nil || len(recs) != 0 {
		t.Errorf("PushLog without records = %#v, %v; want an empty list", recs, err)
	}

	for _, q := range []PushLogQuery{{Limit: -1}, {Limit: MaxPushLogLimit + 1}, {Since: "yesterday"}, {Since: "-1h"}} {
		if _, err := c.PushLog(ctx, q); !errors.Is(err, ErrBadRequest) {
			t.Errorf("PushLog(%+v) = %v, want ErrBadRequest", q, err)
		}
	}
	if _, err := c.PushLog(ctx, PushLogQuery{Since: "yesterday"}); err == nil || !strings.Contains(err.Error(), "neither a duration") {
		t.Errorf("a bad since is explained as %v", err)
	}
	// The connection survives the failures.
	if _, err := c.PushLog(ctx, PushLogQuery{Limit: MaxPushLogLimit}); err != nil {
		t.Errorf("PushLog at the largest limit: %v", err)
	}
}

func TestPushDevicesAndTestRoundTrip(t *testing.T) {
	fb := newFake()
	path, _ := serve(t, fb)
	c := dial(t, path)
	ctx := context.Background()

	list, err := c.PushDevices(ctx, "bob")
	if err != nil || list.Owner != "bob@example.org" || len(list.Devices) != 1 {
		t.Fatalf("PushDevices = %+v, %v", list, err)
	}
	if d := list.Devices[0]; d.Token != "00aa11bb…" || !d.Sandbox || d.Topic != "im.wren.app" || !d.Created.Equal(fakeQueued) {
		t.Errorf("device %+v did not survive the round trip", d)
	}
	list, err = c.PushDevices(ctx, "nobody")
	if err != nil || list.Devices == nil || len(list.Devices) != 0 {
		t.Errorf("PushDevices without devices = %#v, %v; want an empty list", list, err)
	}
	if _, err := c.PushDevices(ctx, ""); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "needs the account") {
		t.Errorf("PushDevices without an account = %v, want ErrBadRequest", err)
	}

	report, err := c.PushTest(ctx, "bob")
	if err != nil || report.Owner != "bob@example.org" || len(report.Results) != 3 {
		t.Fatalf("PushTest = %+v, %v", report, err)
	}
	if report.Delivered() != 1 || !report.Results[0].Delivered() || report.Results[0].Latency() != 85*time.Millisecond {
		t.Errorf("PushTest results %+v", report.Results)
	}
	if r := report.Results[2]; r.Outcome != PushTimeout || r.Delivered() {
		t.Errorf("a test push that timed out: %+v", r)
	}
	if _, err := c.PushTest(ctx, ""); !errors.Is(err, ErrBadRequest) {
		t.Errorf("PushTest without an account = %v, want ErrBadRequest", err)
	}
}

// TestPushGatewayDisabled: the operator reads why the commands cannot work.
func TestPushGatewayDisabled(t *testing.T) {
	path, _ := serve(t, newFake())
	c := dial(t, path)
	ctx := context.Background()
	_, err1 := c.PushLog(ctx, PushLogQuery{Owner: "disabled"})
	_, err2 := c.PushDevices(ctx, "disabled")
	_, err3 := c.PushTest(ctx, "disabled")
	for _, err := range []error{err1, err2, err3} {
		if !errors.Is(err, ErrNotFound) || err.Error() != "the push gateway is disabled (push_gateway.enabled = false)" {
			t.Errorf("with the gateway disabled: %v, want ErrNotFound with the reason", err)
		}
	}
}

// TestPushAnswersAreArrays: scripts reading the socket get [] rather than
// null for empty answers.
func TestPushAnswersAreArrays(t *testing.T) {
	path, _ := serve(t, newFake())
	c := dial(t, path)
	var raw json.RawMessage
	if err := c.Call(context.Background(), CmdPushLog, PushLogQuery{Owner: "nobody"}, &raw); err != nil || string(raw) != "[]" {
		t.Errorf("push.log without records = %s, %v; want []", raw, err)
	}
	if err := c.Call(context.Background(), CmdPushDevices, pushOwnerArgs{Owner: "nobody"}, &raw); err != nil || !strings.Contains(string(raw), `"devices":[]`) {
		t.Errorf("push.devices without devices = %s, %v; want an empty devices array", raw, err)
	}
}

func TestShortToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"0123456789abcdef0123", "01234567…"},
		{"0123456789abcdef", "01234567…"},
		{"abcdef", "abc…"},
		{"a", "…"},
		{"ééééééééééééééééé", "éééééééé…"},
	} {
		if got := ShortToken(tc.in); got != tc.want {
			t.Errorf("ShortToken(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"90m", now.Add(-90 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"0s", now},
		{"7d", now.AddDate(0, 0, -7)},
		{" 2d ", now.AddDate(0, 0, -2)},
		{"2026-11-27T10:00:00+01:00", time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)},
		{"2026-11-27T09:00:00.5Z", time.Date(2026, 11, 27, 9, 0, 0, 5e8, time.UTC)},
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)},
	} {
		got, err := ParseSince(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "yesterday", "-1h", "-3d", "1.5d", "2026-13-01", "10:00"} {
		if got, err := ParseSince(in, now); err == nil {
			t.Errorf("ParseSince(%q) = %v, want an error", in, got)
		}
	}
}
