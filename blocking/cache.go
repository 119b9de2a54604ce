package blocking

import (
	"hash/maphash"
	"sync"
)

// cacheShards is the number of independently locked parts of the cache.
const cacheShards = 16

// cache keeps the blocklists of recently seen users in memory, so that the
// filter, which runs for every stanza, seldom reads storage. A user who
// blocks nobody costs one map entry (a nil list).
//
// Each shard holds two generations of entries: new entries go into cur;
// when cur is full it becomes old and a fresh cur starts, dropping the
// previous old generation. An entry found in old moves back to cur. This
// approximates least-recently-used eviction with O(1) work and bounds a
// shard to twice its generation size.
type cache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu       sync.RWMutex
	cur, old map[string]*list
	genSize  int
	// seq counts the changes made by set and forget, so that a list loaded
	// from storage while a change was being made is not cached (it may
	// predate the change).
	seq uint64

	// edit serialises changes to the blocklists of this shard's users: the
	// read-modify-write of storage and cache for one user must not
	// interleave with another change of the same list.
	edit sync.Mutex
}

// newCache returns a cache holding about size users (at least one per shard).
func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed()}
	gen := max(1, size/(2*cacheShards))
	for i := range c.shards {
		sh := &c.shards[i]
		sh.genSize = gen
		sh.cur = make(map[string]*list)
	}
	return c
}

func (c *cache) shard(user string) *cacheShard {
	return &c.shards[maphash.String(c.seed, user)%cacheShards]
}

// get returns the cached list of user and true, or, on a miss, the
// shard's change counter to hand to put with the list loaded from storage.
func (c *cache) get(user string) (l *list, seq uint64, ok bool) {
	sh := c.shard(user)
	sh.mu.RLock()
	l, ok = sh.cur[user]
	if ok {
		sh.mu.RUnlock()
		return l, 0, true
	}
	_, inOld := sh.old[user]
	seq = sh.seq
	sh.mu.RUnlock()
	if !inOld {
		return nil, seq, false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if l, ok = sh.cur[user]; ok {
		return l, 0, true
	}
	if l, ok = sh.old[user]; ok {
		delete(sh.old, user)
		sh.insert(user, l)
		return l, 0, true
	}
	return nil, sh.seq, false
}

// put caches a list loaded from storage, unless the shard changed since
// get returned seq.
func (c *cache) put(user string, l *list, seq uint64) {
	sh := c.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.seq != seq {
		return
	}
	sh.insert(user, l)
}

// set records a changed list.
func (c *cache) set(user string, l *list) {
	sh := c.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.seq++
	delete(sh.old, user)
	sh.insert(user, l)
}

// forget drops the list of user.
func (c *cache) forget(user string) {
	sh := c.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.seq++
	delete(sh.cur, user)
	delete(sh.old, user)
}

// len returns the number of cached users.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.cur) + len(sh.old)
		sh.mu.RUnlock()
	}
	return n
}

// insert adds an entry to the current generation, starting a new one when
// it is full. The caller holds mu.
func (sh *cacheShard) insert(user string, l *list) {
	if _, ok := sh.cur[user]; !ok && len(sh.cur) >= sh.genSize {
		sh.old = sh.cur
		sh.cur = make(map[string]*list, sh.genSize)
	}
	sh.cur[user] = l
}
