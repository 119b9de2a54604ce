package blocking

import (
	"fmt"
	"testing"
)

func TestCacheGetPutSet(t *testing.T) {
	c := newCache(1000)
	if _, _, ok := c.get("alice"); ok {
		t.Fatal("hit in an empty cache")
	}
	_, seq, _ := c.get("alice")
	c.put("alice", nil, seq)
	l, _, ok := c.get("alice")
	if !ok || l != nil {
		t.Fatalf("known-empty entry: %v, %v", l, ok)
	}
	c.set("alice", newList([]string{"a@x"}))
	if l, _, ok := c.get("alice"); !ok || !l.has("a@x") {
		t.Fatalf("after set: %v, %v", l, ok)
	}
	c.forget("alice")
	if _, _, ok := c.get("alice"); ok {
		t.Fatal("hit after forget")
	}
}

// TestCacheStaleLoadDropped: a list loaded from storage before a change was
// recorded must not replace the changed one.
func TestCacheStaleLoadDropped(t *testing.T) {
	c := newCache(1000)
	_, seq, ok := c.get("alice") // the filter misses and reads storage...
	if ok {
		t.Fatal("hit in an empty cache")
	}
	c.set("alice", newList([]string{"a@x"})) // ...while alice blocks a@x
	c.put("alice", nil, seq)                 // the stale empty list arrives
	if l, _, ok := c.get("alice"); !ok || !l.has("a@x") {
		t.Fatalf("stale load replaced the change: %v, %v", l, ok)
	}
	c.forget("alice")
	c.put("alice", nil, seq)
	if _, _, ok := c.get("alice"); ok {
		t.Fatal("a load that started before forget was cached")
	}
}

func TestCacheBounded(t *testing.T) {
	const size = 320
	c := newCache(size)
	for i := range 100 * size {
		u := fmt.Sprintf("user%d", i)
		_, seq, _ := c.get(u)
		c.put(u, nil, seq)
	}
	if n := c.len(); n > size+2*cacheShards || n < size/2 {
		t.Fatalf("cache holds %d users, want about %d", n, size)
	}
}

// TestCacheKeepsHotEntries: an entry looked up between generations moves
// to the current one and survives while cold ones are evicted.
func TestCacheKeepsHotEntries(t *testing.T) {
	c := newCache(2 * cacheShards * 4) // four entries per shard generation
	c.set("hot", newList([]string{"a@x"}))
	for i := range 1000 {
		u := fmt.Sprintf("cold%d", i)
		_, seq, _ := c.get(u)
		c.put(u, nil, seq)
		if l, _, ok := c.get("hot"); !ok || !l.has("a@x") {
			t.Fatalf("hot entry evicted after %d cold ones", i+1)
		}
	}
}
