package caps

import (
	"context"
	"log/slog"
	"sync"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

// Asker sends a disco#info query about node to entity, from the address
// from, and calls done exactly once: with the <query/> of the result, or
// with nil when the entity answered with an error or not at all. done may
// run on any goroutine and must not block.
type Asker func(ctx context.Context, from, entity jid.JID, node string, done func(query *xmpp.Element))

// Resolver learns the features behind announced caps: from its cache, or
// by asking the entity that announced them. While a query for a
// verification string is outstanding, other entities announcing the same
// string wait for its answer instead of asking again. It is safe for
// concurrent use.
type Resolver struct {
	cache *Cache
	ask   Asker
	log   *slog.Logger

	maxPending   int // distinct outstanding queries
	maxWaiters   int // entities waiting for one query
	maxPerEntity int // outstanding queries to one entity

	mu      sync.Mutex
	pending map[string][]func(*Features)
	asked   map[string]int // entity -> outstanding queries to it
}

// NewResolver returns a resolver that caches verified features in cache
// and asks entities with ask. At most maxPending queries are outstanding
// at a time, and at most 4 to one entity (an entity announcing ever new
// caps without answering cannot hold up the others); caps announced
// beyond that are treated as having no features until they are announced
// again.
func NewResolver(cache *Cache, ask Asker, maxPending int, logger *slog.Logger) *Resolver {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Resolver{
		cache:        cache,
		ask:          ask,
		log:          logger,
		maxPending:   max(maxPending, 1),
		maxWaiters:   4096,
		maxPerEntity: 4,
		pending:      map[string][]func(*Features){},
		asked:        map[string]int{},
	}
}

// Cached returns the features of verifiable caps when they are cached.
func (r *Resolver) Cached(c Caps) (*Features, bool) {
	if !c.Verifiable() {
		return nil, false
	}
	return r.cache.Get(c.Key())
}

// Resolve returns the features behind caps c announced by entity. When the
// answer is known now (cached, or given up on because too many queries are
// outstanding, in which case the features are nil) it returns it with
// true, and done is not called. Otherwise it returns false and calls done
// exactly once, later, with the features, or with nil when they could not
// be learnt: no answer, or an answer that does not hash to the announced
// verification string (XEP-0115 §5.4). The query is sent from the address
// from. Callers must not hold locks that done takes: done may run before
// Resolve returns, on the goroutine that routed the answer.
func (r *Resolver) Resolve(ctx context.Context, from, entity jid.JID, c Caps, done func(*Features)) (*Features, bool) {
	verifiable := c.Verifiable()
	key := c.Key()
	if verifiable {
		if f, ok := r.cache.Get(key); ok {
			return f, true
		}
	} else {
		// Legacy caps and unknown hashes describe only this entity.
		key = "entity " + entity.String() + " " + c.DiscoNode()
	}
	who := entity.String()
	r.mu.Lock()
	waiters, asking := r.pending[key]
	switch {
	case !asking && (len(r.pending) >= r.maxPending || r.asked[who] >= r.maxPerEntity), len(waiters) >= r.maxWaiters:
		r.mu.Unlock()
		r.log.Warn("too many entity capabilities queries outstanding; caps ignored", "from", who, "node", c.Node)
		return nil, true
	}
	r.pending[key] = append(waiters, done)
	if !asking {
		r.asked[who]++
	}
	r.mu.Unlock()
	if asking {
		return nil, false
	}
	r.ask(ctx, from, entity, c.DiscoNode(), func(q *xmpp.Element) {
		r.answer(key, entity, c, verifiable, q)
	})
	return nil, false
}

// answer handles the reply to the query for key.
func (r *Resolver) answer(key string, entity jid.JID, c Caps, verifiable bool, q *xmpp.Element) {
	var f *Features
	if q == nil {
		r.log.Debug("no disco#info answer for entity capabilities", "entity", entity.String(), "node", c.DiscoNode())
	} else {
		info, err := ParseInfo(q)
		if err == nil && verifiable {
			err = Verify(c, info)
		}
		if err != nil {
			r.log.Info("entity capabilities do not match the disco#info answer; ignored", "entity", entity.String(), "err", err)
		} else {
			f = NewFeatures(info.Features)
			if verifiable {
				r.cache.Put(key, f)
			}
		}
	}
	who := entity.String()
	r.mu.Lock()
	waiters := r.pending[key]
	delete(r.pending, key)
	if r.asked[who]--; r.asked[who] <= 0 {
		delete(r.asked, who)
	}
	r.mu.Unlock()
	for _, w := range waiters {
		w(f)
	}
}

// Pending returns the number of outstanding queries.
func (r *Resolver) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}
