package caps

import (
	"container/list"
	"slices"
	"strings"
	"sync"
)

// NotifySuffix marks a feature that asks for PEP notifications of the
// node named before it (XEP-0163 §4.3.x "filtered notifications").
const NotifySuffix = "+notify"

// Features is an immutable set of disco features. The nil *Features is
// the empty set.
type Features struct {
	set    map[string]struct{}
	notify []string // nodes with +notify, sorted
}

// NewFeatures returns the set of the listed features.
func NewFeatures(list []string) *Features {
	f := &Features{set: make(map[string]struct{}, len(list))}
	for _, v := range list {
		f.set[v] = struct{}{}
		if node, ok := strings.CutSuffix(v, NotifySuffix); ok && node != "" {
			f.notify = append(f.notify, node)
		}
	}
	slices.Sort(f.notify)
	f.notify = slices.Compact(f.notify)
	return f
}

// Has reports whether the set holds feature v.
func (f *Features) Has(v string) bool {
	if f == nil {
		return false
	}
	_, ok := f.set[v]
	return ok
}

// Wants reports whether the entity asked for notifications of node.
func (f *Features) Wants(node string) bool { return f.Has(node + NotifySuffix) }

// Notify returns the nodes the entity asked for notifications of, sorted.
// The caller must not change the slice.
func (f *Features) Notify() []string {
	if f == nil {
		return nil
	}
	return f.notify
}

// Len returns the number of features.
func (f *Features) Len() int {
	if f == nil {
		return 0
	}
	return len(f.set)
}

// Cache maps caps keys (Caps.Key) to the features they stand for. It holds
// at most a fixed number of entries and forgets the least recently used
// one first. It is safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	max     int
	order   *list.List // front: most recently used; values are *cacheEntry
	entries map[string]*list.Element
}

type cacheEntry struct {
	key      string
	features *Features
}

// NewCache returns a cache of at most size entries (at least 1).
func NewCache(size int) *Cache {
	return &Cache{max: max(size, 1), order: list.New(), entries: map[string]*list.Element{}}
}

// Get returns the features cached under key.
func (c *Cache) Get(key string) (*Features, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).features, true
}

// Put caches f under key, evicting the least recently used entry when
// the cache is full.
func (c *Cache) Put(key string, f *Features) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		e.Value.(*cacheEntry).features = f
		c.order.MoveToFront(e)
		return
	}
	c.entries[key] = c.order.PushFront(&cacheEntry{key: key, features: f})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).key)
	}
}

// Len returns the number of cached entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
