// Package pep is the personal eventing service (XEP-0163): a
// publish-subscribe service (the subset of XEP-0060 that PEP clients use)
// on every account. Contacts receive notifications of the nodes their
// clients asked for with entity capabilities (XEP-0115) "+notify"
// features, and the last item of each node when they come online. OMEMO
// keys, avatars, bookmarks, nicknames and private storage live here.
package pep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/caps"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Namespaces of publish-subscribe (XEP-0060).
const (
	NS       = "http://jabber.org/protocol/pubsub"
	NSOwner  = NS + "#owner"
	NSEvent  = NS + "#event"
	NSErrors = NS + "#errors"
)

// Limits on names.
const (
	// MaxNodeName is the longest node name accepted, in bytes.
	MaxNodeName = 1024
	// MaxItemID is the longest item id accepted, in bytes.
	MaxItemID = 1024
)

// Store is what the service keeps on disk and reads about accounts.
type Store interface {
	storage.PEP
	// Roster and RosterItem tell who is subscribed to the owner's presence.
	Roster(ctx context.Context, user string) ([]storage.RosterItem, int64, error)
	RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, error)
	// Account tells whether an account exists.
	Account(ctx context.Context, username string) (storage.Account, error)
}

// Options configure the service.
type Options struct {
	// MaxNodes caps the nodes of one account (0: no cap).
	MaxNodes int
	// MaxItems caps the items kept in one node; a node configured for
	// more, or for "max", keeps this many. At least 1.
	MaxItems int
	// CapsCache is the number of entity capabilities kept in memory
	// (default 2000).
	CapsCache int
	// MaxRecipients caps the online resources of contacts (and of the
	// owner) tracked for one account (default 2000).
	MaxRecipients int
	// QueryTimeout bounds the wait for a client's answer to a caps query
	// (default 15s).
	QueryTimeout time.Duration
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// OnPublish, when set, runs after an item was published to a node of
	// an account (by a client or through Publish), outside the node lock.
	// Avatar conversion (XEP-0398) uses it.
	OnPublish func(ctx context.Context, owner, node, id string, payload *xmpp.Element)
}

// Service is the PEP service of all local accounts.
type Service struct {
	router   *router.Router
	store    Store
	log      *slog.Logger
	opts     Options
	fields   []field
	resolver *caps.Resolver

	// locks serialise the changes of one account's nodes, so that its
	// notifications go out in the order of its publishes.
	seed  maphash.Seed
	locks [64]sync.Mutex

	mu     sync.Mutex
	owners map[string]map[string]*recipient // owner localpart -> full JID -> state
}

// New returns the service and registers its IQ handlers and its presence
// hook with the router.
func New(r *router.Router, store Store, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.MaxItems = max(opts.MaxItems, 1)
	if opts.CapsCache <= 0 {
		opts.CapsCache = 2000
	}
	if opts.MaxRecipients <= 0 {
		opts.MaxRecipients = 2000
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 15 * time.Second
	}
	s := &Service{
		router: r,
		store:  store,
		log:    opts.Logger,
		opts:   opts,
		fields: configFields(opts.MaxItems),
		seed:   maphash.MakeSeed(),
		owners: map[string]map[string]*recipient{},
	}
	s.resolver = caps.NewResolver(caps.NewCache(opts.CapsCache), s.askCaps, 1000, opts.Logger)
	r.HandleIQ(router.ToAccount, NS, s.handle)
	r.HandleIQ(router.ToAccount, NSOwner, s.handleOwner)
	r.AddPresenceIn(s.presenceIn)
	return s
}

// Features lists the disco features of the service, for the disco#info
// of accounts and of the server.
func (s *Service) Features() []string {
	out := []string{NS}
	for _, f := range []string{
		"access-open", "access-presence", "access-whitelist",
		"auto-create", "auto-subscribe",
		"config-node", "config-node-max", "create-and-configure", "create-nodes",
		"delete-items", "delete-nodes",
		"filtered-notifications", "item-ids", "last-published",
		"persistent-items", "presence-notifications",
		"publish", "publish-options", "purge-nodes",
		"retrieve-affiliations", "retrieve-default", "retrieve-items",
	} {
		out = append(out, NS+"#"+f)
	}
	return out
}

// lock takes the lock of an owner's nodes and returns its unlock.
func (s *Service) lock(owner string) func() {
	m := &s.locks[maphash.String(s.seed, owner)%uint64(len(s.locks))]
	m.Lock()
	return m.Unlock
}

// bareJID returns owner@domain.
func (s *Service) bareJID(owner string) jid.JID {
	j, _ := jid.New(owner, s.router.Domain(), "")
	return j
}

// randomID returns a fresh random id for items and messages.
func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pubsubError returns a stanza error with a pubsub#errors application
// condition (nothing when app is "") and attributes given as name/value
// pairs.
func pubsubError(cond, app, text string, attrs ...string) *xmpp.StanzaError {
	e := xmpp.NewStanzaError(cond, text)
	if app != "" {
		e.Extra = xmpp.NewElement(NSErrors, app, attrs...)
	}
	return e
}

// unsupported is the error for a pubsub feature Wren does not implement.
func unsupported(feature string) *xmpp.StanzaError {
	return pubsubError(xmpp.CondFeatureNotImplemented, "unsupported", "", "feature", feature)
}

// validNode checks a node name from a request.
func validNode(node string) *xmpp.StanzaError {
	switch {
	case node == "":
		return pubsubError(xmpp.CondBadRequest, "nodeid-required", "")
	case len(node) > MaxNodeName:
		return pubsubError(xmpp.CondNotAcceptable, "", "node names are limited to 1024 bytes")
	}
	return nil
}

// isOwner reports whether the request comes from the account it is
// addressed to.
func isOwner(iq *router.Stanza) bool {
	return iq.From.Localpart() == iq.To.Localpart() && iq.From.Domainpart() == iq.To.Domainpart()
}

// handle answers IQs in the pubsub namespace addressed to an account.
func (s *Service) handle(ctx context.Context, iq *router.Stanza) error {
	ps := iq.El.FirstElement()
	var verb, opts *xmpp.Element
	for _, el := range ps.Elements() {
		if el.Space != NS {
			continue
		}
		switch el.Local {
		case "publish-options", "configure", "options":
			if opts != nil {
				return xmpp.NewStanzaError(xmpp.CondBadRequest, "more than one options element")
			}
			opts = el
		default:
			if verb != nil {
				return xmpp.NewStanzaError(xmpp.CondBadRequest, "more than one pubsub request")
			}
			verb = el
		}
	}
	if verb == nil {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "no pubsub request")
	}
	switch iq.Type() + " " + verb.Local {
	case "get items":
		return s.items(ctx, iq, verb)
	case "get subscriptions":
		// Subscriptions are presence-based; there are no explicit ones.
		res := xmpp.NewElement(NS, "pubsub")
		res.AddChild(NS, "subscriptions", "node", verb.Attr("node"))
		s.router.Result(ctx, iq, res)
		return nil
	case "get affiliations":
		return s.affiliations(ctx, iq, verb, NS)
	case "set publish":
		if opts != nil && opts.Local != "publish-options" {
			return xmpp.NewStanzaError(xmpp.CondBadRequest, "unexpected <"+opts.Local+"/> with publish")
		}
		return s.publishIQ(ctx, iq, verb, opts)
	case "set retract":
		return s.retract(ctx, iq, verb)
	case "set create":
		if opts != nil && opts.Local != "configure" {
			return xmpp.NewStanzaError(xmpp.CondBadRequest, "unexpected <"+opts.Local+"/> with create")
		}
		return s.create(ctx, iq, verb, opts)
	case "set subscribe", "set unsubscribe":
		// PEP subscriptions follow presence subscriptions and caps.
		return unsupported("subscribe")
	case "get options", "set options", "get default":
		return unsupported("subscription-options")
	}
	return xmpp.NewStanzaError(xmpp.CondBadRequest, "unknown pubsub request "+iq.Type()+" "+verb.Local)
}

// handleOwner answers IQs in the pubsub#owner namespace: only the
// account's owner may use them.
func (s *Service) handleOwner(ctx context.Context, iq *router.Stanza) error {
	ps := iq.El.FirstElement()
	verb := ps.FirstElement()
	if verb == nil || len(ps.Elements()) != 1 || verb.Space != NSOwner {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "exactly one pubsub#owner request expected")
	}
	if !isOwner(iq) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "only the account owner manages its nodes")
	}
	switch iq.Type() + " " + verb.Local {
	case "get configure":
		return s.getConfig(ctx, iq, verb)
	case "set configure":
		return s.setConfig(ctx, iq, verb)
	case "get default":
		res := xmpp.NewElement(NSOwner, "pubsub")
		res.AddChild(NSOwner, "default").Append(configForm(s.fields, defaultConfig(), "form"))
		s.router.Result(ctx, iq, res)
		return nil
	case "set delete":
		return s.deleteNode(ctx, iq, verb)
	case "set purge":
		return s.purge(ctx, iq, verb)
	case "get affiliations":
		return s.affiliations(ctx, iq, verb, NSOwner)
	case "get subscriptions":
		if err := validNode(verb.Attr("node")); err != nil {
			return err
		}
		res := xmpp.NewElement(NSOwner, "pubsub")
		res.AddChild(NSOwner, "subscriptions", "node", verb.Attr("node"))
		s.router.Result(ctx, iq, res)
		return nil
	case "set affiliations":
		return unsupported("modify-affiliations")
	case "set subscriptions":
		return unsupported("manage-subscriptions")
	}
	return xmpp.NewStanzaError(xmpp.CondBadRequest, "unknown pubsub#owner request "+iq.Type()+" "+verb.Local)
}
