package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"wren.im/wren/storage"
)

func testDevice(owner, provider, deviceID, node string) storage.PushDevice {
	return storage.PushDevice{
		Owner: owner, Provider: provider, DeviceID: deviceID,
		Token: "token-" + node, Node: node, Secret: "secret-" + node,
	}
}

func TestPushDeviceRegistration(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()

	if _, err := s.PushDevice(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PushDevice(unknown) = %v, want ErrNotFound", err)
	}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	d := testDevice("alice@example.org", "fcm", "android-1", "node1")
	d.Updated = t0
	got, err := s.PutPushDevice(ctx, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != "node1" || got.Secret != "secret-node1" || !got.Created.Equal(t0) || !got.Updated.Equal(t0) {
		t.Fatalf("first registration returned %+v", got)
	}

	// Registering again replaces the token and keeps node, secret, created.
	again := testDevice("alice@example.org", "fcm", "android-1", "other-node")
	again.Token = "new-token"
	again.Topic = "im.example.app"
	again.Sandbox = true
	again.Updated = t0.Add(time.Hour)
	got, err = s.PutPushDevice(ctx, again, 1)
	if err != nil {
		t.Fatalf("re-registration within the quota: %v", err)
	}
	if got.Node != "node1" || got.Secret != "secret-node1" || got.Token != "new-token" || !got.Created.Equal(t0) || !got.Updated.Equal(t0.Add(time.Hour)) {
		t.Fatalf("re-registration returned %+v", got)
	}
	stored, err := s.PushDevice(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Token != "new-token" || stored.Topic != "im.example.app" || !stored.Sandbox || stored.Owner != "alice@example.org" ||
		stored.Provider != "fcm" || stored.DeviceID != "android-1" {
		t.Fatalf("stored device %+v", stored)
	}
	if _, err := s.PushDevice(ctx, "other-node"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the node of the re-registration was stored: %v", err)
	}

	// Quota: one device already, max 1.
	if _, err := s.PutPushDevice(ctx, testDevice("alice@example.org", "apns", "ios-1", "node2"), 1); !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Fatalf("second device over quota: %v", err)
	}
	// The same device id with another provider or for a MUC is another device.
	if _, err := s.PutPushDevice(ctx, testDevice("alice@example.org", "apns", "android-1", "node2"), 0); err != nil {
		t.Fatal(err)
	}
	muc := testDevice("alice@example.org", "fcm", "android-1", "node3")
	muc.MUC = "room@conference.example.org"
	if _, err := s.PutPushDevice(ctx, muc, 0); err != nil {
		t.Fatal(err)
	}
	// A node collision is refused.
	if _, err := s.PutPushDevice(ctx, testDevice("bob@example.net", "fcm", "x", "node1"), 0); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("node collision: %v", err)
	}
	// A new device without node or secret is refused.
	if _, err := s.PutPushDevice(ctx, storage.PushDevice{Owner: "bob@example.net", Provider: "fcm", DeviceID: "y", Token: "t"}, 0); err == nil {
		t.Fatal("a device without node was stored")
	}

	list, err := s.PushDevices(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Node != "node1" {
		t.Fatalf("PushDevices = %+v", list)
	}
	if list, _ := s.PushDevices(ctx, "bob@example.net"); len(list) != 0 {
		t.Fatalf("bob has devices: %+v", list)
	}

	// A dead token removes the device only while it still has that token.
	if ok, err := s.DeletePushDevice(ctx, "node1", "token-node1"); err != nil || ok {
		t.Fatalf("delete with an old token = %v, %v", ok, err)
	}
	if ok, err := s.DeletePushDevice(ctx, "node1", "new-token"); err != nil || !ok {
		t.Fatalf("delete with the current token = %v, %v", ok, err)
	}
	if ok, err := s.DeletePushDevice(ctx, "node2", ""); err != nil || !ok {
		t.Fatalf("delete without token = %v, %v", ok, err)
	}
	if ok, err := s.DeletePushDevice(ctx, "node2", ""); err != nil || ok {
		t.Fatalf("second delete = %v, %v", ok, err)
	}
	if list, _ := s.PushDevices(ctx, "alice@example.org"); len(list) != 1 || list[0].Node != "node3" || list[0].MUC != "room@conference.example.org" {
		t.Fatalf("after deletes: %+v", list)
	}
}

func TestPushDeliveries(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	add := func(owner, device string, at time.Duration) int64 {
		t.Helper()
		id, err := s.AddPushDelivery(ctx, storage.PushDelivery{
			Time: base.Add(at), Owner: owner, DeviceID: device, Provider: "fcm", Node: "n-" + device,
			Outcome: storage.PushRetrying, Reason: "unavailable (HTTP 503)", Attempts: 1, Important: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a1 := add("alice@example.org", "d1", 0)
	a2 := add("alice@example.org", "d2", time.Minute)
	b1 := add("bob@example.net", "d1", 2*time.Minute)
	a3 := add("alice@example.org", "d1", 3*time.Minute)

	err := s.UpdatePushDelivery(ctx, storage.PushDelivery{ID: a1, Outcome: storage.PushDelivered,
		ProviderID: "projects/p/messages/1", Attempts: 2, Latency: 1500 * time.Millisecond, Coalesced: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UpdatePushDelivery(ctx, storage.PushDelivery{ID: 9999, Outcome: storage.PushFailed}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update of a missing record: %v", err)
	}

	ids := func(f storage.PushDeliveryFilter) []int64 {
		t.Helper()
		list, err := s.PushDeliveries(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, d := range list {
			out = append(out, d.ID)
		}
		return out
	}
	eq := func(got, want []int64) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
	for _, tc := range []struct {
		name string
		f    storage.PushDeliveryFilter
		want []int64
	}{
		{"all", storage.PushDeliveryFilter{}, []int64{a3, b1, a2, a1}},
		{"owner", storage.PushDeliveryFilter{Owner: "alice@example.org"}, []int64{a3, a2, a1}},
		{"device", storage.PushDeliveryFilter{Owner: "alice@example.org", DeviceID: "d1"}, []int64{a3, a1}},
		{"device any owner", storage.PushDeliveryFilter{DeviceID: "d1"}, []int64{a3, b1, a1}},
		{"since", storage.PushDeliveryFilter{Since: base.Add(time.Minute)}, []int64{a3, b1, a2}},
		{"limit", storage.PushDeliveryFilter{Limit: 2}, []int64{a3, b1}},
	} {
		if got := ids(tc.f); !eq(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	list, err := s.PushDeliveries(ctx, storage.PushDeliveryFilter{Owner: "alice@example.org", DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	got := list[1]
	if got.ID != a1 || !got.Time.Equal(base) || got.Outcome != storage.PushDelivered || got.ProviderID != "projects/p/messages/1" ||
		got.Attempts != 2 || got.Latency != 1500*time.Millisecond || got.Important || got.Coalesced != 3 ||
		got.Provider != "fcm" || got.Node != "n-d1" || got.Reason != "" {
		t.Fatalf("updated record: %+v", got)
	}

	// Retention removes the oldest records first, limit at a time.
	n, err := s.TrimPushDeliveries(ctx, base.Add(150*time.Second), 2)
	if err != nil || n != 2 {
		t.Fatalf("trim = %d, %v; want 2", n, err)
	}
	n, err = s.TrimPushDeliveries(ctx, base.Add(150*time.Second), 2)
	if err != nil || n != 1 {
		t.Fatalf("second trim = %d, %v; want 1", n, err)
	}
	if got := ids(storage.PushDeliveryFilter{}); !eq(got, []int64{a3}) {
		t.Fatalf("after trim: %v", got)
	}
	if n, err := s.TrimPushDeliveries(ctx, base.Add(time.Hour), 0); err != nil || n != 0 {
		t.Fatalf("trim with limit 0 = %d, %v", n, err)
	}
}

func TestPushGatewayClosedStore(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir()+"/wren.db", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ctx := context.Background()
	if _, err := s.PushDevice(ctx, "n"); !errors.Is(err, ErrClosed) {
		t.Errorf("PushDevice after Close: %v", err)
	}
	if _, err := s.PushDevices(ctx, "a@b"); !errors.Is(err, ErrClosed) {
		t.Errorf("PushDevices after Close: %v", err)
	}
	if _, err := s.PushDeliveries(ctx, storage.PushDeliveryFilter{}); !errors.Is(err, ErrClosed) {
		t.Errorf("PushDeliveries after Close: %v", err)
	}
	if _, err := s.AddPushDelivery(ctx, storage.PushDelivery{}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPushDelivery after Close: %v", err)
	}
}
