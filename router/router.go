// Package router decides where a stanza goes: to a handler of this server,
// to one or more local sessions, to offline storage, or to another domain.
// It keeps the table of local sessions and applies RFC 6121 §8's delivery
// rules. Features register handlers with it instead of the router knowing
// every feature.
package router

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sort"
	"sync"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

// Session is a bound client session as the router sees it.
type Session interface {
	// JID is the session's full JID.
	JID() jid.JID
	// Deliver queues a stanza for the client. It must not block; the session
	// applies its own policy when its queue is full.
	Deliver(el *xmpp.Element)
	// Available reports whether the session has sent available presence,
	// and its priority.
	Available() (bool, int)
	// Presence returns the session's last broadcast available presence, or
	// nil when it is not available.
	Presence() *xmpp.Element
	// Close ends the session with a stream error (nil for a plain close).
	Close(err *xmpp.StreamError)
}

// Stanza is a stanza on its way through the router with its addresses parsed.
type Stanza struct {
	El   *xmpp.Element
	From jid.JID
	To   jid.JID
	// Origin is the local session the stanza came from, or nil.
	Origin Session
	// Filtered is set once the Filter hook has seen the stanza (and on
	// errors the router generates itself, which no filter may drop).
	Filtered bool
}

// Kind returns message, presence or iq.
func (s *Stanza) Kind() string { return s.El.Local }

// Type returns the type attribute.
func (s *Stanza) Type() string { return s.El.Attr("type") }

// IQHandler handles an IQ addressed to the server or to an account. It
// replies through the router (Router.Reply or Router.ReplyError). Returning
// a *xmpp.StanzaError makes the router answer with that error.
type IQHandler func(ctx context.Context, iq *Stanza) error

// Target says whether an IQ handler serves IQs addressed to the server
// itself or to a user's bare JID.
type Target int

// Targets of IQ handlers.
const (
	ToServer Target = iota
	ToAccount
)

// Hooks are the points where features plug into routing. Every field is
// optional.
type Hooks struct {
	// Offline takes a message for a local user with no available resource.
	// It returns a stanza error to bounce the message (e.g. when the queue
	// is full) or nil when the message was stored.
	Offline func(ctx context.Context, user string, s *Stanza) *xmpp.StanzaError
	// InboundPresence handles presence addressed to a local user's bare or
	// full JID for subscription types and probes. It returns true when it
	// consumed the stanza.
	InboundPresence func(ctx context.Context, s *Stanza) bool
	// AccountExists reports whether a local user exists.
	AccountExists func(ctx context.Context, user string) bool
	// Remote routes a stanza to another domain. When nil, such stanzas are
	// bounced with remote-server-not-found.
	Remote func(ctx context.Context, s *Stanza)
	// MessageIn runs once for every message addressed to a local user (bare
	// or full JID), before delivery or offline storage. A hook may replace
	// s.El (with a copy: stanzas are shared) — the archive adds its
	// <stanza-id/> there. It returns true when it consumed the message.
	MessageIn []func(ctx context.Context, s *Stanza) bool
	// MessageDelivered runs after a message for a local user was queued for
	// the sessions in to (empty when it went to offline storage or was
	// dropped). Carbons copy it to the user's other resources here.
	MessageDelivered []func(ctx context.Context, s *Stanza, to []Session)
	// Filter sees every stanza before it is routed (once: c2s calls
	// Router.Filter before its own hooks). It returns true when it
	// consumed the stanza, having dropped or bounced it; blocking
	// (XEP-0191) lives here.
	Filter func(ctx context.Context, s *Stanza) bool
	// PresenceIn runs once for every available or unavailable presence
	// (no subscription types, no probes) that reached a local user, from
	// a contact or from one of the user's own resources, after delivery.
	// s.To is the user's bare or full JID. PEP learns who is online here.
	PresenceIn []func(ctx context.Context, s *Stanza)
}

const shardCount = 64

type shard struct {
	mu    sync.RWMutex
	users map[string]map[string]Session // localpart -> resource -> session
}

// Router routes stanzas for one domain. It is safe for concurrent use; the
// session table is sharded so that routing takes no global lock.
type Router struct {
	domain string
	log    *slog.Logger
	seed   maphash.Seed
	shards [shardCount]shard

	mu        sync.RWMutex
	serverIQ  map[string]IQHandler
	accountIQ map[string]IQHandler
	hooks     Hooks
	serverJID jid.JID
	services  map[string]ServiceHandler // internal service domains

	iqs pendingIQs // server-originated IQs awaiting replies
}

// New returns a router for domain.
func New(domain string, logger *slog.Logger) (*Router, error) {
	d, err := jid.New("", domain, "")
	if err != nil {
		return nil, err
	}
	r := &Router{
		domain:    d.Domainpart(),
		serverJID: d,
		log:       logger,
		seed:      maphash.MakeSeed(),
		serverIQ:  map[string]IQHandler{},
		accountIQ: map[string]IQHandler{},
	}
	for i := range r.shards {
		r.shards[i].users = map[string]map[string]Session{}
	}
	return r, nil
}

// Domain returns the domain this router serves.
func (r *Router) Domain() string { return r.domain }

// ServerJID returns the JID of the server itself.
func (r *Router) ServerJID() jid.JID { return r.serverJID }

// IsLocal reports whether j belongs to this server's domain.
func (r *Router) IsLocal(j jid.JID) bool { return j.Domainpart() == r.domain }

// HandleIQ registers h for IQs whose payload is in namespace ns.
func (r *Router) HandleIQ(target Target, ns string, h IQHandler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if target == ToServer {
		r.serverIQ[ns] = h
	} else {
		r.accountIQ[ns] = h
	}
}

// SetHooks installs the routing hooks set in h. Call it before serving.
// Hooks already installed by features stay: list hooks are appended to,
// and a single hook is replaced only when h sets it.
func (r *Router) SetHooks(h Hooks) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h.Offline != nil {
		r.hooks.Offline = h.Offline
	}
	if h.InboundPresence != nil {
		r.hooks.InboundPresence = h.InboundPresence
	}
	if h.AccountExists != nil {
		r.hooks.AccountExists = h.AccountExists
	}
	if h.Remote != nil {
		r.hooks.Remote = h.Remote
	}
	if h.Filter != nil {
		r.hooks.Filter = h.Filter
	}
	r.hooks.MessageIn = append(r.hooks.MessageIn, h.MessageIn...)
	r.hooks.MessageDelivered = append(r.hooks.MessageDelivered, h.MessageDelivered...)
	r.hooks.PresenceIn = append(r.hooks.PresenceIn, h.PresenceIn...)
}

// AddMessageIn appends a MessageIn hook.
func (r *Router) AddMessageIn(h func(ctx context.Context, s *Stanza) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks.MessageIn = append(r.hooks.MessageIn, h)
}

// AddMessageDelivered appends a MessageDelivered hook.
func (r *Router) AddMessageDelivered(h func(ctx context.Context, s *Stanza, to []Session)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks.MessageDelivered = append(r.hooks.MessageDelivered, h)
}

// AddPresenceIn appends a PresenceIn hook.
func (r *Router) AddPresenceIn(h func(ctx context.Context, s *Stanza)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks.PresenceIn = append(r.hooks.PresenceIn, h)
}

// SetFilter installs the Filter hook.
func (r *Router) SetFilter(f func(ctx context.Context, s *Stanza) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks.Filter = f
}

// Filter runs the Filter hook on s unless it already ran, and reports
// whether the hook consumed the stanza.
func (r *Router) Filter(ctx context.Context, s *Stanza) bool {
	if s.Filtered {
		return false
	}
	s.Filtered = true
	r.mu.RLock()
	f := r.hooks.Filter
	r.mu.RUnlock()
	return f != nil && f(ctx, s)
}

// PresenceIn runs the PresenceIn hooks for an available or unavailable
// presence that reached local user s.To. The router calls it for presence
// it routes; the presence service calls it for the copies of a user's
// presence it hands to the user's own resources.
func (r *Router) PresenceIn(ctx context.Context, s *Stanza) {
	if t := s.Type(); t != "" && t != "unavailable" {
		return
	}
	r.mu.RLock()
	hooks := r.hooks.PresenceIn
	r.mu.RUnlock()
	for _, h := range hooks {
		h(ctx, s)
	}
}

func (r *Router) shard(user string) *shard {
	return &r.shards[maphash.String(r.seed, user)%shardCount]
}

// Bind adds a session to the table. If a session with the same full JID
// exists it is replaced and returned, so that the caller can close it with
// a conflict error.
func (r *Router) Bind(s Session) (replaced Session) {
	j := s.JID()
	sh := r.shard(j.Localpart())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	res := sh.users[j.Localpart()]
	if res == nil {
		res = map[string]Session{}
		sh.users[j.Localpart()] = res
	}
	replaced = res[j.Resourcepart()]
	res[j.Resourcepart()] = s
	return replaced
}

// Unbind removes a session from the table if it is still the bound one.
func (r *Router) Unbind(s Session) bool {
	j := s.JID()
	sh := r.shard(j.Localpart())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	res := sh.users[j.Localpart()]
	if res == nil || res[j.Resourcepart()] != s {
		return false
	}
	delete(res, j.Resourcepart())
	if len(res) == 0 {
		delete(sh.users, j.Localpart())
	}
	return true
}

// Sessions returns the bound sessions of a local user, ordered by resource.
func (r *Router) Sessions(user string) []Session {
	sh := r.shard(user)
	sh.mu.RLock()
	res := sh.users[user]
	out := make([]Session, 0, len(res))
	for _, s := range res {
		out = append(out, s)
	}
	sh.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].JID().Resourcepart() < out[j].JID().Resourcepart() })
	return out
}

// hasSessions reports whether user has any bound session.
func (r *Router) hasSessions(user string) bool {
	sh := r.shard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return len(sh.users[user]) > 0
}

// Session returns the session bound to a full JID, or nil.
func (r *Router) Session(full jid.JID) Session {
	sh := r.shard(full.Localpart())
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.users[full.Localpart()][full.Resourcepart()]
}

// ResourceExists reports whether user has a session with that resource.
func (r *Router) ResourceExists(user, resource string) bool {
	sh := r.shard(user)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	_, ok := sh.users[user][resource]
	return ok
}

// Count returns the number of bound sessions.
func (r *Router) Count() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, res := range sh.users {
			n += len(res)
		}
		sh.mu.RUnlock()
	}
	return n
}

// AllSessions returns every bound session (for shutdown and admin).
func (r *Router) AllSessions() []Session {
	var out []Session
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, res := range sh.users {
			for _, s := range res {
				out = append(out, s)
			}
		}
		sh.mu.RUnlock()
	}
	return out
}

// Available returns the user's sessions that have sent available presence.
func (r *Router) Available(user string) []Session {
	all := r.Sessions(user)
	out := all[:0]
	for _, s := range all {
		if ok, _ := s.Available(); ok {
			out = append(out, s)
		}
	}
	return out
}

// highest returns the available sessions with the highest non-negative priority.
func (r *Router) highest(user string) []Session {
	var out []Session
	best := -1
	for _, s := range r.Sessions(user) {
		ok, prio := s.Available()
		if !ok || prio < 0 {
			continue
		}
		switch {
		case prio > best:
			best = prio
			out = append(out[:0], s)
		case prio == best:
			out = append(out, s)
		}
	}
	return out
}
