package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"wren.im/wren/storage"
)

func mustBlocklist(t *testing.T, s *Store, user string) []string {
	t.Helper()
	l, err := s.Blocklist(context.Background(), user)
	if err != nil {
		t.Fatalf("Blocklist(%s): %v", user, err)
	}
	return l
}

func TestBlocklist(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice", "bob")
	if l := mustBlocklist(t, s, "alice"); len(l) != 0 {
		t.Fatalf("new account's blocklist: %v", l)
	}
	if l := mustBlocklist(t, s, "nobody"); len(l) != 0 {
		t.Fatalf("blocklist of a user without account: %v", l)
	}
	if err := s.BlockJIDs(ctx, "alice", []string{"romeo@example.net", "example.com", "iago@example.org/x"}, 0); err != nil {
		t.Fatal(err)
	}
	// Blocking again keeps the first place; new JIDs go last.
	if err := s.BlockJIDs(ctx, "alice", []string{"example.com", "tybalt@example.net"}, 0); err != nil {
		t.Fatal(err)
	}
	want := []string{"romeo@example.net", "example.com", "iago@example.org/x", "tybalt@example.net"}
	if l := mustBlocklist(t, s, "alice"); !slices.Equal(l, want) {
		t.Fatalf("blocklist %v, want %v", l, want)
	}
	if l := mustBlocklist(t, s, "bob"); len(l) != 0 {
		t.Fatalf("bob's blocklist: %v", l)
	}
	n, err := s.UnblockJIDs(ctx, "alice", []string{"example.com", "unknown@example.com"})
	if err != nil || n != 1 {
		t.Fatalf("UnblockJIDs: %d, %v; want 1", n, err)
	}
	want = []string{"romeo@example.net", "iago@example.org/x", "tybalt@example.net"}
	if l := mustBlocklist(t, s, "alice"); !slices.Equal(l, want) {
		t.Fatalf("blocklist after unblock %v, want %v", l, want)
	}
	n, err = s.UnblockAll(ctx, "alice")
	if err != nil || n != 3 {
		t.Fatalf("UnblockAll: %d, %v; want 3", n, err)
	}
	if l := mustBlocklist(t, s, "alice"); len(l) != 0 {
		t.Fatalf("blocklist after unblock all: %v", l)
	}
	if n, err := s.UnblockAll(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("UnblockAll of an empty list: %d, %v", n, err)
	}
}

func TestBlocklistQuota(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if err := s.BlockJIDs(ctx, "alice", []string{"a@x", "b@x"}, 3); err != nil {
		t.Fatal(err)
	}
	// Re-blocking listed JIDs does not count against the cap.
	if err := s.BlockJIDs(ctx, "alice", []string{"a@x", "b@x", "c@x"}, 3); err != nil {
		t.Fatalf("filling up to the cap: %v", err)
	}
	err := s.BlockJIDs(ctx, "alice", []string{"d@x", "a@x"}, 3)
	if !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Fatalf("over the cap: %v, want ErrQuotaExceeded", err)
	}
	if l := mustBlocklist(t, s, "alice"); !slices.Equal(l, []string{"a@x", "b@x", "c@x"}) {
		t.Fatalf("a refused block changed the list: %v", l)
	}
}

func TestBlocklistNoAccount(t *testing.T) {
	s := newStore(t)
	err := s.BlockJIDs(context.Background(), "nobody", []string{"a@x"}, 0)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("BlockJIDs without account: %v, want ErrNotFound", err)
	}
}

func TestBlocklistDeletedWithAccount(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if err := s.BlockJIDs(ctx, "alice", []string{"a@x"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if l := mustBlocklist(t, s, "alice"); len(l) != 0 {
		t.Fatalf("blocklist of a re-created account: %v", l)
	}
}

func TestBlocklistPersists(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wren.db")
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if err := s.BlockJIDs(ctx, "alice", []string{"a@x", "x"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if l := mustBlocklist(t, s, "alice"); !slices.Equal(l, []string{"a@x", "x"}) {
		t.Fatalf("blocklist after reopen: %v", l)
	}
}
