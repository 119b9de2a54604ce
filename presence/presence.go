// Package presence broadcasts and answers presence (RFC 6121 §4): initial
// presence with probes, broadcast to subscribers and the user's own
// resources, directed presence, probes from contacts, and unavailable
// presence when a session ends for any reason.
package presence

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"

	"wren.im/wren/c2s"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Subscriptions handles subscription stanzas (implemented by roster.Service).
type Subscriptions interface {
	Outbound(ctx context.Context, st *router.Stanza)
	Inbound(ctx context.Context, st *router.Stanza)
	PendingRequests(ctx context.Context, user string) []*xmpp.Element
}

// Service is the presence feature.
type Service struct {
	router  *router.Router
	rosters storage.Rosters
	subs    Subscriptions
	log     *slog.Logger
	initial []func(ctx context.Context, s *c2s.Session)
	// decorate, when set, may add to an available presence a user sends
	// (the avatar hash of XEP-0398) before it goes anywhere.
	decorate func(ctx context.Context, user string, el *xmpp.Element)
}

// SetDecorator registers a function that may add to every available
// presence a local user sends, broadcast or directed.
func (p *Service) SetDecorator(f func(ctx context.Context, user string, el *xmpp.Element)) {
	p.decorate = f
}

// New returns the presence service. Call SetSubscriptions before serving.
func New(r *router.Router, rosters storage.Rosters, logger *slog.Logger) *Service {
	return &Service{router: r, rosters: rosters, log: logger.With("component", "presence")}
}

// SetSubscriptions sets the handler of subscription stanzas.
func (p *Service) SetSubscriptions(s Subscriptions) { p.subs = s }

// OnInitialPresence registers a function run when a session sends its
// initial available presence (offline delivery uses it).
func (p *Service) OnInitialPresence(f func(ctx context.Context, s *c2s.Session)) {
	p.initial = append(p.initial, f)
}

func isSubscription(typ string) bool {
	switch typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		return true
	}
	return false
}

// priority reads <priority/>: an integer in -128..127, 0 when absent or invalid.
func priority(el *xmpp.Element) int {
	v := strings.TrimSpace(el.ChildText(xmpp.NSClient, "priority"))
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < -128 || n > 127 {
		return 0
	}
	return n
}

// ClientPresence handles a presence stanza sent by a local client (the
// c2s Presence hook).
func (p *Service) ClientPresence(ctx context.Context, s *c2s.Session, st *router.Stanza) {
	typ := st.Type()
	if typ == "" && p.decorate != nil {
		p.decorate(ctx, s.Username(), st.El)
	}
	if st.To.Domainpart() != "" {
		switch {
		case isSubscription(typ):
			if p.subs != nil {
				p.subs.Outbound(ctx, st)
			}
		case typ == "" || typ == "unavailable":
			// Directed presence (RFC 6121 §4.6).
			if !st.To.Bare().Equal(s.JID().Bare()) {
				s.AddDirected(st.To.String(), typ == "unavailable")
			}
			p.router.Route(ctx, st)
		case typ == "error":
			p.router.Route(ctx, st)
		}
		// Probes from clients are not honoured (RFC 6121 §4.3).
		return
	}
	switch typ {
	case "":
		p.available(ctx, s, st.El)
	case "unavailable":
		p.unavailable(ctx, s, st.El)
	}
}

func (p *Service) available(ctx context.Context, s *c2s.Session, el *xmpp.Element) {
	el.SetAttr("to", "")
	wasAvailable := s.SetPresence(el, priority(el))
	user := s.JID().Localpart()
	items, _, err := p.rosters.Roster(ctx, user)
	if err != nil {
		p.log.Error("cannot load roster; presence not broadcast", "user", user, "err", err)
	}
	// Broadcast to subscribers (from/both) and to every available resource
	// of the user, this one included: an entity is implicitly subscribed
	// to its own presence (RFC 6121 §4.2.2 and §4.4.2).
	for _, it := range items {
		if it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth {
			p.sendTo(ctx, s.JID(), it.Contact, el)
		}
	}
	for _, res := range p.router.Available(user) {
		res.Deliver(addressed(el, s.JID(), res.JID().String()))
	}
	p.router.PresenceIn(ctx, &router.Stanza{El: addressed(el, s.JID(), s.JID().Bare().String()), From: s.JID(), To: s.JID().Bare()})
	if wasAvailable {
		return
	}
	// Initial presence: the client also learns the presence of its other
	// resources and probes the contacts it is subscribed to.
	for _, other := range p.router.Available(user) {
		if other != router.Session(s) {
			if op := other.Presence(); op != nil {
				s.Deliver(addressed(op, other.JID(), s.JID().String()))
			}
		}
	}
	for _, it := range items {
		if it.Subscription == storage.SubTo || it.Subscription == storage.SubBoth {
			to, err := jid.Parse(it.Contact)
			if err != nil {
				continue
			}
			probe := xmpp.NewElement(xmpp.NSClient, "presence", "type", "probe", "from", s.JID().String(), "to", it.Contact)
			p.router.Route(ctx, &router.Stanza{El: probe, From: s.JID(), To: to})
		}
	}
	if p.subs != nil {
		for _, req := range p.subs.PendingRequests(ctx, user) {
			s.Deliver(req)
		}
	}
	for _, f := range p.initial {
		f(ctx, s)
	}
}

func (p *Service) unavailable(ctx context.Context, s *c2s.Session, el *xmpp.Element) {
	el.SetAttr("to", "")
	if !s.SetPresence(nil, 0) {
		// Not available before: subscribers never saw it, nothing to
		// retract from them. Entities that received directed presence
		// are told when the session ends.
		return
	}
	p.broadcastUnavailable(ctx, s, el, true)
}

// broadcastUnavailable sends unavailable presence el from session s to the
// entities that received its directed presence, and forgets them. When
// wasAvailable is true the session had broadcast available presence, so
// the user's subscribers and other resources are told as well; otherwise
// they never saw the session and are left alone.
func (p *Service) broadcastUnavailable(ctx context.Context, s *c2s.Session, el *xmpp.Element, wasAvailable bool) {
	user := s.JID().Localpart()
	sent := map[string]bool{}
	if wasAvailable {
		items, _, err := p.rosters.Roster(ctx, user)
		if err != nil {
			p.log.Error("cannot load roster; unavailable presence not broadcast", "user", user, "err", err)
		}
		for _, it := range items {
			if it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth {
				p.sendTo(ctx, s.JID(), it.Contact, el)
				sent[it.Contact] = true
			}
		}
	}
	for _, d := range s.Directed() {
		if !sent[d] {
			p.sendTo(ctx, s.JID(), d, el)
		}
		s.AddDirected(d, true)
	}
	if !wasAvailable {
		return
	}
	for _, other := range p.router.Available(user) {
		if other != router.Session(s) {
			other.Deliver(addressed(el, s.JID(), other.JID().String()))
		}
	}
	p.router.PresenceIn(ctx, &router.Stanza{El: addressed(el, s.JID(), s.JID().Bare().String()), From: s.JID(), To: s.JID().Bare()})
}

// SessionEnded broadcasts unavailable presence for a session that ended
// without saying so (the c2s Ended hook).
func (p *Service) SessionEnded(ctx context.Context, s *c2s.Session, replaced bool) {
	wasAvailable := s.Presence() != nil
	if !wasAvailable && len(s.Directed()) == 0 {
		return
	}
	s.SetPresence(nil, 0)
	if replaced {
		// Another session holds the full JID now and announces itself.
		return
	}
	el := xmpp.NewElement(xmpp.NSClient, "presence", "type", "unavailable")
	p.broadcastUnavailable(ctx, s, el, wasAvailable)
}

func addressed(el *xmpp.Element, from jid.JID, to string) *xmpp.Element {
	c := el.ShallowCopy()
	c.SetAttr("from", from.String())
	c.SetAttr("to", to)
	return c
}

func (p *Service) sendTo(ctx context.Context, from jid.JID, to string, el *xmpp.Element) {
	tj, err := jid.Parse(to)
	if err != nil {
		return
	}
	p.router.Route(ctx, &router.Stanza{El: addressed(el, from, to), From: from, To: tj})
}

// InboundPresence is the router hook for presence addressed to a local
// user: subscription stanzas go to the roster, probes are answered.
func (p *Service) InboundPresence(ctx context.Context, st *router.Stanza) bool {
	typ := st.Type()
	if isSubscription(typ) {
		if p.subs != nil {
			p.subs.Inbound(ctx, st)
		}
		return true
	}
	if typ != "probe" {
		return false
	}
	user := st.To.Localpart()
	item, err := p.rosters.RosterItem(ctx, user, st.From.Bare().String())
	if err != nil || (item.Subscription != storage.SubFrom && item.Subscription != storage.SubBoth) {
		// Not a subscriber: probes are ignored (RFC 6121 §4.3.2).
		return true
	}
	p.answerProbe(ctx, user, st.From)
	return true
}

func (p *Service) answerProbe(ctx context.Context, user string, to jid.JID) {
	sessions := p.router.Available(user)
	if len(sessions) == 0 {
		from, _ := jid.New(user, p.router.Domain(), "")
		el := xmpp.NewElement(xmpp.NSClient, "presence", "type", "unavailable")
		p.router.Route(ctx, &router.Stanza{El: addressed(el, from, to.String()), From: from, To: to})
		return
	}
	for _, sess := range sessions {
		if pr := sess.Presence(); pr != nil {
			p.router.Route(ctx, &router.Stanza{El: addressed(pr, sess.JID(), to.String()), From: sess.JID(), To: to})
		}
	}
}

// SendCurrent implements roster.PresenceSender: a new subscriber gets the
// user's current presence.
func (p *Service) SendCurrent(ctx context.Context, user string, contact jid.JID) {
	for _, sess := range p.router.Available(user) {
		if pr := sess.Presence(); pr != nil {
			p.router.Route(ctx, &router.Stanza{El: addressed(pr, sess.JID(), contact.String()), From: sess.JID(), To: contact})
		}
	}
}

// SendUnavailable implements roster.PresenceSender: a former subscriber
// sees the user go unavailable.
func (p *Service) SendUnavailable(ctx context.Context, user string, contact jid.JID) {
	for _, sess := range p.router.Available(user) {
		el := xmpp.NewElement(xmpp.NSClient, "presence", "type", "unavailable")
		p.router.Route(ctx, &router.Stanza{El: addressed(el, sess.JID(), contact.String()), From: sess.JID(), To: contact})
	}
}
