package sqlite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"wren.im/wren/storage"
)

func itemIDs(items []storage.PEPItem) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func putItem(t *testing.T, s *Store, user, node, id string, keep int) {
	t.Helper()
	it := storage.PEPItem{ID: id, Publisher: user + "@example.org/res", Payload: []byte("<x xmlns='urn:test'>" + id + "</x>")}
	if err := s.PutPEPItem(context.Background(), user, node, it, keep); err != nil {
		t.Fatalf("PutPEPItem(%s, %s, %s): %v", user, node, id, err)
	}
}

func TestPEPNodes(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice", "bob")

	if nodes, err := s.PEPNodes(ctx, "alice"); err != nil || len(nodes) != 0 {
		t.Fatalf("PEPNodes of a new account = %v, %v", nodes, err)
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, name := range []string{"urn:b", "urn:a"} {
		if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: name, Config: []byte(`{"x":1}`), Created: created}, 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: "urn:a"}, 3); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("creating an existing node: %v, want ErrExists", err)
	}
	if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: "urn:c"}, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: "urn:d"}, 3); !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Fatalf("fourth node with max 3: %v, want ErrQuotaExceeded", err)
	}
	if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: "urn:d"}, 0); err != nil {
		t.Fatalf("no limit: %v", err)
	}
	if err := s.CreatePEPNode(ctx, "nobody", storage.PEPNode{Name: "urn:a"}, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("node of a missing account: %v, want ErrNotFound", err)
	}
	nodes, err := s.PEPNodes(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if want := []string{"urn:a", "urn:b", "urn:c", "urn:d"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("nodes = %v, want %v", names, want)
	}
	n, err := s.PEPNode(ctx, "alice", "urn:a")
	if err != nil || string(n.Config) != `{"x":1}` || !n.Created.Equal(created) {
		t.Fatalf("PEPNode = %+v, %v", n, err)
	}
	if _, err := s.PEPNode(ctx, "bob", "urn:a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another account's node: %v, want ErrNotFound", err)
	}
	if err := s.SetPEPNodeConfig(ctx, "alice", "urn:a", []byte(`{"x":2}`), 0); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.PEPNode(ctx, "alice", "urn:a"); string(n.Config) != `{"x":2}` {
		t.Fatalf("config after SetPEPNodeConfig = %s", n.Config)
	}
	if err := s.SetPEPNodeConfig(ctx, "alice", "urn:zzz", nil, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("configuring a missing node: %v", err)
	}
	if err := s.DeletePEPNode(ctx, "alice", "urn:b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePEPNode(ctx, "alice", "urn:b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}

func TestPEPItems(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if err := s.PutPEPItem(ctx, "alice", "urn:a", storage.PEPItem{ID: "1"}, 0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("publishing to a missing node: %v, want ErrNotFound", err)
	}
	for _, name := range []string{"urn:a", "urn:b", "urn:empty"} {
		if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: name}, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 5; i++ {
		putItem(t, s, "alice", "urn:a", fmt.Sprint(i), 0)
	}
	putItem(t, s, "alice", "urn:b", "only", 0)

	items, err := s.PEPItems(ctx, "alice", "urn:a", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := itemIDs(items), []string{"5", "4", "3", "2", "1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("all items = %v, want newest first %v", got, want)
	}
	if string(items[0].Payload) != "<x xmlns='urn:test'>5</x>" || items[0].Publisher != "alice@example.org/res" || items[0].Published.IsZero() {
		t.Fatalf("item = %+v", items[0])
	}
	items, _ = s.PEPItems(ctx, "alice", "urn:a", nil, 2)
	if got, want := itemIDs(items), []string{"5", "4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("newest 2 = %v, want %v", got, want)
	}
	items, _ = s.PEPItems(ctx, "alice", "urn:a", []string{"2", "missing", "4"}, 0)
	if got, want := itemIDs(items), []string{"4", "2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("by id = %v, want %v", got, want)
	}

	// Publishing an id again replaces the item and makes it the newest.
	putItem(t, s, "alice", "urn:a", "2", 0)
	items, _ = s.PEPItems(ctx, "alice", "urn:a", nil, 0)
	if got, want := itemIDs(items), []string{"2", "5", "4", "3", "1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after republishing 2: %v, want %v", got, want)
	}
	// keep trims the oldest.
	putItem(t, s, "alice", "urn:a", "6", 3)
	items, _ = s.PEPItems(ctx, "alice", "urn:a", nil, 0)
	if got, want := itemIDs(items), []string{"6", "2", "5"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after publishing with keep 3: %v, want %v", got, want)
	}
	last, err := s.LastPEPItems(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 2 || last["urn:a"].ID != "6" || last["urn:b"].ID != "only" {
		t.Fatalf("LastPEPItems = %+v", last)
	}
	// Lowering the limit trims too.
	if err := s.SetPEPNodeConfig(ctx, "alice", "urn:a", nil, 1); err != nil {
		t.Fatal(err)
	}
	items, _ = s.PEPItems(ctx, "alice", "urn:a", nil, 0)
	if got, want := itemIDs(items), []string{"6"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after configuring keep 1: %v, want %v", got, want)
	}

	deleted, err := s.DeletePEPItems(ctx, "alice", "urn:a", []string{"missing", "6"})
	if err != nil || !reflect.DeepEqual(deleted, []string{"6"}) {
		t.Fatalf("DeletePEPItems = %v, %v", deleted, err)
	}
	if items, _ := s.PEPItems(ctx, "alice", "urn:a", nil, 0); len(items) != 0 {
		t.Fatalf("items after retracting all: %v", itemIDs(items))
	}
	if err := s.PurgePEPNode(ctx, "alice", "urn:b"); err != nil {
		t.Fatal(err)
	}
	if items, _ := s.PEPItems(ctx, "alice", "urn:b", nil, 0); len(items) != 0 {
		t.Fatalf("items after purge: %v", itemIDs(items))
	}
	if err := s.PurgePEPNode(ctx, "alice", "urn:none"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("purging a missing node: %v", err)
	}
	if items, err := s.PEPItems(ctx, "alice", "urn:none", nil, 0); err != nil || len(items) != 0 {
		t.Fatalf("items of a missing node: %v, %v", items, err)
	}
}

func TestPEPManyIDs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: "n"}, 0); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 1200 {
		ids = append(ids, fmt.Sprint(i))
	}
	for _, id := range []string{"7", "700", "1100"} {
		putItem(t, s, "alice", "n", id, 0)
	}
	items, err := s.PEPItems(ctx, "alice", "n", ids, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := itemIDs(items), []string{"1100", "700", "7"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ids over several chunks = %v, want %v", got, want)
	}
}

func TestPEPDeletedWithNodeAndAccount(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: "n"}, 0); err != nil {
		t.Fatal(err)
	}
	putItem(t, s, "alice", "n", "a", 0)
	if err := s.DeletePEPNode(ctx, "alice", "n"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePEPNode(ctx, "alice", storage.PEPNode{Name: "n"}, 0); err != nil {
		t.Fatal(err)
	}
	if items, _ := s.PEPItems(ctx, "alice", "n", nil, 0); len(items) != 0 {
		t.Fatalf("a re-created node has the old items %v", itemIDs(items))
	}
	putItem(t, s, "alice", "n", "b", 0)
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if nodes, err := s.PEPNodes(ctx, "alice"); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes of a re-created account: %v, %v", nodes, err)
	}
	if last, err := s.LastPEPItems(ctx, "alice"); err != nil || len(last) != 0 {
		t.Fatalf("items of a re-created account: %v, %v", last, err)
	}
}
