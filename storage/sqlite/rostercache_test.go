package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"wren.im/wren/storage"
)

// Rosters are served from memory after the first read, and every write
// (put, delete, account deletion) is visible to the next read.
func TestRosterCache(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if _, err := s.PutRosterItem(ctx, "alice", storage.RosterItem{Contact: "bob@example.org", Subscription: storage.SubBoth, Groups: []string{"Friends"}}); err != nil {
		t.Fatal(err)
	}
	items, v1, err := s.Roster(ctx, "alice")
	if err != nil || len(items) != 1 {
		t.Fatalf("Roster = %v, %v", items, err)
	}
	if _, ok := s.rosters.get("alice"); !ok {
		t.Fatal("roster not cached after a read")
	}
	// What a caller does with its copy does not reach the cache.
	items[0].Groups[0] = "Changed"
	items[0].Name = "Changed"
	again, _, _ := s.Roster(ctx, "alice")
	if again[0].Groups[0] != "Friends" || again[0].Name != "" {
		t.Fatalf("cached roster changed through a returned copy: %+v", again[0])
	}
	// Served from the cache: found and not found.
	if it, err := s.RosterItem(ctx, "alice", "bob@example.org"); err != nil || it.Subscription != storage.SubBoth {
		t.Fatalf("RosterItem(bob) = %+v, %v", it, err)
	}
	if _, err := s.RosterItem(ctx, "alice", "carol@example.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RosterItem(carol) = %v, want ErrNotFound", err)
	}
	// A put is seen at once, with its version.
	v2, err := s.PutRosterItem(ctx, "alice", storage.RosterItem{Contact: "carol@example.org", Subscription: storage.SubTo})
	if err != nil {
		t.Fatal(err)
	}
	items, v, err := s.Roster(ctx, "alice")
	if err != nil || len(items) != 2 || v != v2 || v2 <= v1 {
		t.Fatalf("after a put: %v version %d (put said %d, before %d), %v", items, v, v2, v1, err)
	}
	if it, err := s.RosterItem(ctx, "alice", "carol@example.org"); err != nil || it.Subscription != storage.SubTo {
		t.Fatalf("RosterItem(carol) after the put = %+v, %v", it, err)
	}
	// A delete too.
	if _, err := s.DeleteRosterItem(ctx, "alice", "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if items, _, _ := s.Roster(ctx, "alice"); len(items) != 1 || items[0].Contact != "carol@example.org" {
		t.Fatalf("after a delete: %v", items)
	}
	// And the account's deletion: a new account of the same name starts
	// with an empty roster.
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if items, v, err := s.Roster(ctx, "alice"); err != nil || len(items) != 0 || v != 0 {
		t.Fatalf("roster of the new alice: %v version %d, %v", items, v, err)
	}
}

// Reads racing with writes never leave a stale roster in the cache: once
// the writes are done, the cached roster is the stored one.
func TestRosterCacheRacingWrites(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	const n = 200
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if _, err := s.PutRosterItem(ctx, "alice", storage.RosterItem{Contact: fmt.Sprintf("c%03d@example.org", i), Subscription: storage.SubNone}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for range n {
				if _, _, err := s.Roster(ctx, "alice"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	items, v, err := s.Roster(ctx, "alice")
	if err != nil || len(items) != n || v != n {
		t.Fatalf("after %d puts the roster has %d items, version %d (%v)", n, len(items), v, err)
	}
}

// "No pending subscription requests" is remembered after a read and
// forgotten when a request is stored, answered or the account deleted.
func TestNoRequestsCache(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if reqs, err := s.SubscriptionRequests(ctx, "alice"); err != nil || len(reqs) != 0 {
		t.Fatalf("SubscriptionRequests = %v, %v", reqs, err)
	}
	if _, ok := s.noRequests.get("alice"); !ok {
		t.Fatal("no requests not remembered")
	}
	req := storage.SubscriptionRequest{From: "bob@example.org", Stanza: []byte("<presence type='subscribe'/>")}
	if err := s.PutSubscriptionRequest(ctx, "alice", req); err != nil {
		t.Fatal(err)
	}
	if reqs, err := s.SubscriptionRequests(ctx, "alice"); err != nil || len(reqs) != 1 || reqs[0].From != "bob@example.org" {
		t.Fatalf("after a request: %v, %v", reqs, err)
	}
	if err := s.DeleteSubscriptionRequest(ctx, "alice", "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	if reqs, err := s.SubscriptionRequests(ctx, "alice"); err != nil || len(reqs) != 0 {
		t.Fatalf("after answering: %v, %v", reqs, err)
	}
	if err := s.PutSubscriptionRequest(ctx, "alice", req); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if reqs, err := s.SubscriptionRequests(ctx, "alice"); err != nil || len(reqs) != 0 {
		t.Fatalf("new alice: %v, %v", reqs, err)
	}
}
