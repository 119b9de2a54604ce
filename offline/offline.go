// Package offline keeps messages for users who have no available resource
// (XEP-0160) and delivers them, stamped with their original time
// (XEP-0203), when the user next sends initial presence.
package offline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"wren.im/wren/c2s"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Service is the offline message feature.
type Service struct {
	store      storage.Offline
	domain     string
	maxPerUser int
	log        *slog.Logger
	now        func() time.Time
	metrics    Metrics
}

// Outcomes of an offline write, as passed to Metrics.OfflineWrite.
const (
	WriteStored    = "stored"     // the message is on disk
	WriteFull      = "full"       // the user's queue is at its cap; bounced
	WriteNoAccount = "no_account" // the user does not exist (any more); bounced
	WriteError     = "error"      // the storage failed; bounced
)

// Metrics counts offline writes. It must be safe for concurrent use.
type Metrics interface {
	OfflineWrite(outcome string)
}

type nopMetrics struct{}

func (nopMetrics) OfflineWrite(string) {}

// New returns the offline service. maxPerUser caps each queue (0: no cap).
func New(store storage.Offline, domain string, maxPerUser int, logger *slog.Logger) *Service {
	return &Service{store: store, domain: domain, maxPerUser: maxPerUser, log: logger.With("component", "offline"), now: time.Now, metrics: nopMetrics{}}
}

// SetMetrics makes the service count its writes with m. Call it before
// the service is used.
func (o *Service) SetMetrics(m Metrics) { o.metrics = m }

// Worth reports whether a message is worth keeping for later: chat states
// alone and messages marked no-store (XEP-0334) are not.
func Worth(el *xmpp.Element) bool {
	switch el.Attr("type") {
	case "error", "groupchat", "headline":
		return false
	}
	content := false
	for _, c := range el.Elements() {
		switch {
		case c.Is("urn:xmpp:hints", "no-store"), c.Is("urn:xmpp:hints", "no-permanent-store"):
			return false
		case c.Is("urn:xmpp:hints", "store"):
			content = true
		case c.Space == "http://jabber.org/protocol/chatstates":
		case c.Space == "urn:xmpp:hints":
		default:
			content = true
		}
	}
	return content
}

// Store is the router's Offline hook: it keeps the message durably, or
// returns the stanza error to bounce it with.
func (o *Service) Store(ctx context.Context, user string, s *router.Stanza) *xmpp.StanzaError {
	if !Worth(s.El) {
		return nil
	}
	el := s.El.ShallowCopy()
	if el.Child(xmpp.NSDelay, "delay") == nil {
		el.AddChild(xmpp.NSDelay, "delay", "from", o.domain, "stamp", o.now().UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	_, err := o.store.StoreOffline(ctx, user, el.Bytes(), o.maxPerUser)
	switch {
	case err == nil:
		o.metrics.OfflineWrite(WriteStored)
		return nil
	case errors.Is(err, storage.ErrQuotaExceeded):
		o.metrics.OfflineWrite(WriteFull)
		o.log.Info("offline queue full; message bounced", "user", user, "from", s.From.String(), "max", o.maxPerUser)
		return xmpp.NewStanzaError(xmpp.CondResourceConstraint, "the recipient's offline message queue is full")
	case errors.Is(err, storage.ErrNotFound):
		// The account was deleted while messages for it were in flight
		// (an ended session hands back what its client had not
		// acknowledged).
		o.metrics.OfflineWrite(WriteNoAccount)
		o.log.Info("message for a deleted account bounced", "user", user, "from", s.From.String())
		return xmpp.NewStanzaError(xmpp.CondServiceUnavailable, "the recipient's account no longer exists")
	default:
		o.metrics.OfflineWrite(WriteError)
		o.log.Error("cannot store offline message; bounced to sender", "user", user, "from", s.From.String(), "err", err)
		return xmpp.NewStanzaError(xmpp.CondInternalServerError, "the message could not be stored")
	}
}

// Deliver sends the stored messages to a session that just became
// available with a non-negative priority, then removes them.
func (o *Service) Deliver(ctx context.Context, s *c2s.Session) {
	if _, prio := s.Available(); prio < 0 {
		return
	}
	user := s.Username()
	msgs, err := o.store.OfflineMessages(ctx, user)
	if err != nil {
		o.log.Error("cannot load offline messages; they stay stored", "user", user, "err", err)
		return
	}
	if len(msgs) == 0 {
		return
	}
	var last int64
	for _, m := range msgs {
		el, err := xmpp.ParseElement(m.Stanza)
		if err != nil {
			o.log.Error("stored offline message is corrupt; dropping it", "user", user, "id", m.ID, "err", err)
			last = m.ID
			continue
		}
		s.Deliver(el)
		last = m.ID
	}
	if err := o.store.DeleteOffline(ctx, user, last); err != nil {
		o.log.Error("cannot delete delivered offline messages; they may be delivered again", "user", user, "err", err)
	}
}
