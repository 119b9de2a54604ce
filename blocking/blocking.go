// Package blocking implements the Blocking Command (XEP-0191): each user
// keeps a list of JIDs (users, resources, whole domains) whose stanzas the
// server stops in both directions.
//
// It plugs into the core at two points: the router's Filter hook, which
// sees every stanza once before it is routed and stops those between a
// user and a JID the user blocked, and an account IQ handler for the
// urn:xmpp:blocking namespace (get the list, block, unblock, unblock all).
// Blocklists live in storage and, for the users the filter met recently,
// in a bounded in-memory cache.
package blocking

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Namespaces of XEP-0191.
const (
	NS       = "urn:xmpp:blocking"
	NSErrors = "urn:xmpp:blocking:errors"
)

// DefaultCacheSize is the number of users whose blocklists are kept in
// memory when Config.CacheSize is 0.
const DefaultCacheSize = 16384

// Store is what blocking needs from storage: the blocklists, the roster
// (who receives whose presence) and the pending subscription requests
// (a blocked JID's request is dropped).
type Store interface {
	storage.Blocklists
	Roster(ctx context.Context, user string) ([]storage.RosterItem, int64, error)
	SubscriptionRequests(ctx context.Context, user string) ([]storage.SubscriptionRequest, error)
	DeleteSubscriptionRequest(ctx context.Context, user, from string) error
}

// Config configures blocking.
type Config struct {
	// MaxItems caps the entries of one user's blocklist (0: no cap).
	MaxItems int
	// CacheSize is about how many users' blocklists are kept in memory
	// (0: DefaultCacheSize). A user who blocks nobody costs a map entry.
	CacheSize int
}

// Service is the blocking feature.
type Service struct {
	cfg    Config
	store  Store
	router *router.Router
	log    *slog.Logger
	domain string
	cache  *cache
	pushID atomic.Uint64 // numbers the blocklist pushes
}

// New returns the blocking service. Install Filter as the router's filter
// and HandleIQ as the account IQ handler for NS.
func New(cfg Config, store Store, r *router.Router, logger *slog.Logger) *Service {
	size := cfg.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Service{
		cfg:    cfg,
		store:  store,
		router: r,
		log:    logger.With("component", "blocking"),
		domain: r.Domain(),
		cache:  newCache(size),
	}
}

// localUser returns the localpart of j when j is an account of this
// server, or "".
func (s *Service) localUser(j jid.JID) string {
	if j.Domainpart() != s.domain {
		return ""
	}
	return j.Localpart()
}

// lookup returns user's blocklist for the filter: from the cache, or
// loaded from storage and cached. When storage fails it logs and returns
// the empty list: a database hiccup must not stop all of a user's traffic.
func (s *Service) lookup(ctx context.Context, user string) *list {
	l, err := s.load(ctx, user)
	if err != nil {
		s.log.Error("cannot load blocklist; stanza not filtered", "user", user, "err", err)
		return nil
	}
	return l
}

// load returns user's blocklist from the cache or storage.
func (s *Service) load(ctx context.Context, user string) (*list, error) {
	l, seq, ok := s.cache.get(user)
	if ok {
		return l, nil
	}
	items, err := s.store.Blocklist(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("load blocklist of %s: %w", user, err)
	}
	l = newList(items)
	s.cache.put(user, l, seq)
	return l, nil
}

// Blocks reports whether local user blocked entity (a storage failure
// counts as not blocked).
func (s *Service) Blocks(ctx context.Context, user string, entity jid.JID) bool {
	return s.lookup(ctx, user).matches(entity)
}

// Forget drops the cached blocklist of user. Call it when an account is
// deleted, so that an account created again under the same name does not
// inherit the old list from the cache.
func (s *Service) Forget(user string) { s.cache.forget(user) }

// exempt reports whether a stanza is outside blocking: one between a
// user's own resources or account, or to or from the server itself.
func (s *Service) exempt(from, to jid.JID) bool {
	if to.Domainpart() == "" || from.Domainpart() == "" {
		return true // no 'to': addressed to the sender's own account
	}
	if (from.Domainpart() == s.domain && from.Localpart() == "") || (to.Domainpart() == s.domain && to.Localpart() == "") {
		return true
	}
	return from.Localpart() == to.Localpart() && from.Domainpart() == to.Domainpart()
}

// Filter is the router's Filter hook. It stops a stanza from a local user
// to a JID the user blocked, and a stanza to a local user from a JID the
// user blocked, and reports whether it did. Stanzas between two remote
// entities and stanzas of users who block nobody pass after a cache
// lookup at most.
func (s *Service) Filter(ctx context.Context, st *router.Stanza) bool {
	if s.exempt(st.From, st.To) {
		return false
	}
	if user := s.localUser(st.From); user != "" && s.lookup(ctx, user).matches(st.To) {
		s.outbound(ctx, st)
		return true
	}
	if user := s.localUser(st.To); user != "" && s.lookup(ctx, user).matches(st.From) {
		s.inbound(ctx, st)
		return true
	}
	return false
}

// outbound handles a stanza a user sent to a JID the user blocked
// (XEP-0191 §3.3). Messages and IQ requests that the user's client sent
// are answered with <not-acceptable/> and <blocked/>. Presence is dropped
// silently, as are stanzas the server sends on the user's behalf
// (presence broadcasts, PEP notifications, answers): an error about them
// would reach a client that sent nothing.
func (s *Service) outbound(ctx context.Context, st *router.Stanza) {
	if st.Origin == nil || st.Kind() == "presence" {
		return
	}
	switch typ := st.Type(); {
	case typ == "error", st.Kind() == "iq" && typ == "result":
		return
	}
	serr := &xmpp.StanzaError{
		Type:      xmpp.ErrTypeCancel,
		Condition: xmpp.CondNotAcceptable,
		Text:      "You have blocked this address; unblock it to communicate with it.",
		By:        s.domain,
		Extra:     xmpp.NewElement(NSErrors, "blocked"),
	}
	s.router.Bounce(ctx, st, serr)
}

// inbound handles a stanza to a user from a JID the user blocked
// (XEP-0191 §3.3): presence is dropped silently; chat and normal messages
// and IQ requests are answered with <service-unavailable/>, as if the
// user did not exist; other messages and IQ answers are dropped.
func (s *Service) inbound(ctx context.Context, st *router.Stanza) {
	typ := st.Type()
	switch st.Kind() {
	case "message":
		if typ != "" && typ != "normal" && typ != "chat" {
			return
		}
	case "iq":
		if typ != "get" && typ != "set" {
			return
		}
	default:
		return
	}
	s.router.Bounce(ctx, st, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
}
