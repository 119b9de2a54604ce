// Package archive keeps each user's message archive and serves it with
// Message Archive Management (XEP-0313, urn:xmpp:mam:2 and its #extended
// fields), marks every archived message with its archive id as a XEP-0359
// <stanza-id/>, and applies the user's archiving preferences (XEP-0441)
// and the operator's retention limits.
//
// It plugs into the core at three points: the router's MessageIn hook
// (messages a user receives), a c2s MessageOut hook (messages a user
// sends, through ArchiveSent) and an account IQ handler for the
// urn:xmpp:mam:2 namespace (queries, preferences, metadata).
package archive

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/c2s"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Namespaces of the protocols the archive speaks.
const (
	NS         = "urn:xmpp:mam:2"
	NSExtended = "urn:xmpp:mam:2#extended"
	NSSID      = "urn:xmpp:sid:0"
	NSRSM      = "http://jabber.org/protocol/rsm"
	NSForward  = "urn:xmpp:forward:0"
	NSHints    = "urn:xmpp:hints"
	nsCarbons  = "urn:xmpp:carbons:2"
)

// Store is what the archive needs from storage: the archive itself, the
// roster (for the "roster" archiving mode) and the account list (for
// retention).
type Store interface {
	storage.Archive
	RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, error)
	ListAccounts(ctx context.Context) ([]string, error)
	AfterWrites(fn func()) error
}

// Config configures the archive.
type Config struct {
	// DefaultMode is the archiving mode of users who set no preferences:
	// storage.ArchiveAlways, ArchiveRoster or ArchiveNever.
	DefaultMode string
	// Retention removes messages older than this (0: keep forever).
	Retention time.Duration
	// MaxPerUser removes the oldest messages of archives larger than this
	// (0: no cap).
	MaxPerUser int
	// CleanupInterval is how often retention is applied.
	CleanupInterval time.Duration
}

// Service is the message archive feature.
type Service struct {
	cfg    Config
	store  Store
	router *router.Router
	log    *slog.Logger
	now    func() time.Time

	prefsCache prefsCache

	// ctx is cancelled by Close; it stops the cleanup goroutine.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the cleanup goroutine
}

// New returns the archive service and registers its IQ handler for
// urn:xmpp:mam:2 on user accounts. Call Start to run retention and Close
// to stop it.
func New(cfg Config, store Store, r *router.Router, logger *slog.Logger) *Service {
	if cfg.DefaultMode == "" {
		cfg.DefaultMode = storage.ArchiveAlways
	}
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = time.Hour
	}
	s := &Service{
		cfg:    cfg,
		store:  store,
		router: r,
		log:    logger.With("component", "archive"),
		now:    time.Now,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	r.HandleIQ(router.ToAccount, NS, s.handleIQ)
	return s
}

// MessageIn is the router's MessageIn hook. It removes <stanza-id/>
// elements that claim to come from the recipient's archive unless they
// are genuine (a message the server routes a second time, such as one
// handed back by a stream management session that timed out), archives
// the message when it is worth it and the recipient's preferences allow
// it, and adds its <stanza-id/>. It never consumes the message: when the
// archive fails, the message is delivered without a stanza-id.
func (s *Service) MessageIn(ctx context.Context, st *router.Stanza) bool {
	if st.Kind() != "message" {
		return false
	}
	user := st.To.Localpart()
	by := st.To.Bare().String()
	if claimed := stanzaIDsBy(st.El, by); len(claimed) > 0 {
		if len(claimed) == 1 && s.rerouted(ctx, user, claimed[0], st) {
			// Archived when it was first routed: keep its id.
			return false
		}
		st.El = withoutStanzaIDs(st.El, by)
	}
	if st.From.Domainpart() == "" || !Worth(st.El) || !s.wants(ctx, user, st.From) {
		return false
	}
	if _, el, ok := s.add(ctx, st.To.Bare(), st.El, st.From, false); ok {
		st.El = el
	}
	return false
}

// rerouted reports whether the stanza-id id that a message carries, by
// the recipient's archive, is genuine: the server itself routes the
// message again (it has no origin session), and the archive holds an
// incoming message with that id from the same contact.
func (s *Service) rerouted(ctx context.Context, user, id string, st *router.Stanza) bool {
	if st.Origin != nil {
		// Straight from a client: a client never gets to set our ids.
		return false
	}
	m, err := s.store.ArchivedMessage(ctx, user, id)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			s.log.Warn("cannot check a message's stanza-id; treating it as new", "user", user, "err", err)
		}
		return false
	}
	return !m.Outgoing && m.With == st.From.Bare().String()
}

// ArchiveSent archives a message a local client sent (from stamped, not
// yet routed) in the sender's archive and returns its archive id, or ""
// when it was not archived. The routed message is left unchanged: its
// recipient has no access to the sender's archive (XEP-0313 §3.2); the id
// goes only in carbon copies. Messages to the sender's own account are
// archived once, when they are received.
func (s *Service) ArchiveSent(ctx context.Context, st *router.Stanza) string {
	to := st.To
	if to.Domainpart() == "" || to.Bare().Equal(st.From.Bare()) {
		return ""
	}
	if !Worth(st.El) {
		return ""
	}
	user := st.From.Localpart()
	if !s.wants(ctx, user, to) {
		return ""
	}
	id, _, _ := s.add(ctx, st.From.Bare(), st.El, to, true)
	return id
}

// MessageOut is a c2s MessageOut hook that archives sent messages. Use it
// when no carbons feature calls ArchiveSent itself.
func (s *Service) MessageOut(ctx context.Context, _ *c2s.Session, st *router.Stanza) bool {
	s.ArchiveSent(ctx, st)
	return false
}

// add archives a message in the archive of owner (a local bare JID) and
// returns its archive id and the element as archived: for an incoming
// message, a copy with its <stanza-id by=owner/>, which is also what the
// user receives; an outgoing message is kept as sent.
//
// The write is queued, not waited for: the message goes on while the
// store commits it with others (group commit), and the store's order
// makes it durable before anything the client is told later is (stream
// management acks wait for AfterWrites). Archive queries wait for queued
// writes too, so a user always finds what was delivered to them.
func (s *Service) add(ctx context.Context, owner jid.JID, el *xmpp.Element, with jid.JID, outgoing bool) (string, *xmpp.Element, bool) {
	user, by := owner.Localpart(), owner.String()
	now := s.now()
	id := newID(now)
	kept := el
	if !outgoing {
		kept = el.ShallowCopy()
		kept.AddChild(NSSID, "stanza-id", "by", by, "id", id)
	}
	err := s.store.QueueArchive(ctx, user, storage.ArchivedMessage{
		ID:   id,
		Time: now.UTC().Truncate(time.Microsecond),
		With: with.Bare().String(), WithResource: with.Resourcepart(),
		Outgoing: outgoing,
		Stanza:   kept.Bytes(),
	}, func(_ time.Time, err error) {
		if err != nil {
			s.logFailure(user, id, err)
		}
	})
	if err != nil {
		s.logFailure(user, id, err)
		return "", nil, false
	}
	return id, kept, true
}

// settled waits until every archive write queued so far is on disk, so
// that a query sees each message already delivered to the user.
func (s *Service) settled(ctx context.Context) error {
	written := make(chan struct{})
	if err := s.store.AfterWrites(func() { close(written) }); err != nil {
		return err
	}
	select {
	case <-written:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) logFailure(user, id string, err error) {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// The account was deleted while the message was on its way.
		s.log.Info("message not archived: the account no longer exists", "user", user)
	case errors.Is(err, storage.ErrExists):
		// Two draws of 80 random bits met: practically never.
		s.log.Error("message not archived: its random archive id is already used", "user", user, "id", id)
	default:
		s.log.Error("cannot archive a message; it was delivered with an archive id the archive lacks", "user", user, "id", id, "err", err)
	}
}

// Worth reports whether a message belongs in a user archive (XEP-0313
// §7.1.1): a chat or normal message with a body or an end-to-end
// encrypted payload, or one marked with the XEP-0334 <store/> hint; never
// one marked <no-store/> or <no-permanent-store/>, nor an error, headline
// or groupchat message, nor a carbon copy or archive result.
func Worth(el *xmpp.Element) bool {
	switch el.Attr("type") {
	case "", "normal", "chat":
	default:
		return false
	}
	content := false
	for _, c := range el.Elements() {
		switch {
		case c.Is(NSHints, "no-store"), c.Is(NSHints, "no-permanent-store"):
			return false
		case c.Space == nsCarbons && (c.Local == "received" || c.Local == "sent"),
			c.Is(NS, "result"):
			return false
		case c.Is(NSHints, "store"), c.Is(xmpp.NSClient, "body"), c.Is(xmpp.NSServer, "body"):
			content = true
		case encrypted(c.Space):
			content = true
		}
	}
	return content
}

// encrypted reports whether ns is an end-to-end encryption payload that
// stands for a body.
func encrypted(ns string) bool {
	switch ns {
	case "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:openpgp:0", "jabber:x:encrypted":
		return true
	}
	return false
}

// stanzaIDsBy returns the ids of the <stanza-id/> children of el set by by.
func stanzaIDsBy(el *xmpp.Element, by string) []string {
	var ids []string
	for _, c := range el.Elements() {
		if c.Is(NSSID, "stanza-id") && c.Attr("by") == by {
			ids = append(ids, c.Attr("id"))
		}
	}
	return ids
}

// withoutStanzaIDs returns a copy of el without the <stanza-id/> children
// set by by.
func withoutStanzaIDs(el *xmpp.Element, by string) *xmpp.Element {
	c := el.ShallowCopy()
	c.RemoveChildren(func(e *xmpp.Element) bool { return e.Is(NSSID, "stanza-id") && e.Attr("by") == by })
	return c
}

// StripStanzaIDs is a router MessageIn hook for a server without an
// archive: it removes every <stanza-id/> that claims to come from the
// recipient's archive (XEP-0359 §4: only the archive may set them).
func StripStanzaIDs(_ context.Context, st *router.Stanza) bool {
	if st.Kind() != "message" {
		return false
	}
	by := st.To.Bare().String()
	if len(stanzaIDsBy(st.El, by)) > 0 {
		st.El = withoutStanzaIDs(st.El, by)
	}
	return false
}

// idEncoding writes archive ids: 14 bytes are 23 characters. The "hex"
// alphabet of base32 sorts like the bytes it encodes.
var idEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// newID returns an archive id: the time in milliseconds (48 bits) followed
// by 64 random bits. Ids cannot be guessed, and they sort by time, so that
// a user's new messages go at the end of the store's index of ids instead
// of all over it (writes stay on a few pages).
func newID(now time.Time) string {
	var b [14]byte
	ms := uint64(now.UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (8 * (5 - i)))
	}
	rand.Read(b[6:]) // crypto/rand.Read never fails (Go 1.24+)
	return idEncoding.EncodeToString(b[:])
}
