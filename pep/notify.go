package pep

import (
	"context"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"wren.im/wren/caps"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// recipient is an online resource (of a contact or of the owner) that
// sent presence to an owner, with what its caps say it wants.
type recipient struct {
	jid      jid.JID
	caps     caps.Caps
	hasCaps  bool
	gen      uint64         // bumped at each caps change; stale answers are dropped
	features *caps.Features // nil: nothing known (yet)
	failed   bool           // the features of caps could not be learnt: ask again when announced again
}

// askCaps is the caps.Asker of the service: a disco#info query routed
// through the router, answered within QueryTimeout.
func (s *Service) askCaps(ctx context.Context, from, entity jid.JID, node string, done func(*xmpp.Element)) {
	iq := xmpp.NewElement(xmpp.NSClient, "iq", "type", "get", "from", from.String(), "to", entity.String())
	iq.AddChild(xmpp.NSDiscoInfo, "query", "node", node)
	s.router.SendIQ(ctx, &router.Stanza{El: iq, From: from, To: entity}, s.opts.QueryTimeout, func(reply *router.Stanza) {
		if reply == nil || reply.Type() != "result" {
			done(nil)
			return
		}
		done(reply.El.Child(xmpp.NSDiscoInfo, "query"))
	})
}

// presenceIn is the router's PresenceIn hook: it learns which resources
// are online with which interests, for the owner the presence reached
// and, for a user's own presence, for the local contacts the user is
// subscribed to.
func (s *Service) presenceIn(ctx context.Context, st *router.Stanza) {
	owner := st.To.Localpart()
	from := st.From
	if owner == "" || st.To.Domainpart() != s.router.Domain() || from.Resourcepart() == "" {
		return
	}
	own := from.Localpart() == owner && from.Domainpart() == s.router.Domain()
	if st.Type() == "unavailable" {
		s.forget(owner, from)
		if own {
			s.eachPublisher(ctx, from, func(o string) { s.forget(o, from) })
		}
		return
	}
	c, hasCaps := caps.FromElement(st.El)
	s.observe(ctx, owner, from, c, hasCaps)
	if own {
		// Contacts whose presence this user does not receive (a one-way
		// subscription) still publish to it: learn its interests for them
		// too. Where the presence does reach them this changes nothing.
		s.eachPublisher(ctx, from, func(o string) { s.observe(ctx, o, from, c, hasCaps) })
	}
}

// eachPublisher calls f with every local user (other than the user of
// full) whose presence the user of full is subscribed to.
func (s *Service) eachPublisher(ctx context.Context, full jid.JID, f func(owner string)) {
	items, _, err := s.store.Roster(ctx, full.Localpart())
	if err != nil {
		s.log.Error("cannot load the roster to find PEP publishers", "user", full.Localpart(), "err", err)
		return
	}
	for _, it := range items {
		if it.Subscription != storage.SubTo && it.Subscription != storage.SubBoth {
			continue
		}
		c, err := jid.Parse(it.Contact)
		if err != nil || c.Domainpart() != s.router.Domain() || c.Localpart() == "" || c.Localpart() == full.Localpart() {
			continue
		}
		f(c.Localpart())
	}
}

// forget drops a resource that went offline.
func (s *Service) forget(owner string, full jid.JID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.owners[owner]
	if m == nil {
		return
	}
	delete(m, full.String())
	if len(m) == 0 {
		delete(s.owners, owner)
	}
}

// observe records the caps of an available resource that reached owner.
// When they are new, it learns the features behind them (asking the
// resource if needed) and then sends the resource the last items of the
// nodes it newly wants.
func (s *Service) observe(ctx context.Context, owner string, full jid.JID, c caps.Caps, hasCaps bool) {
	key := full.String()
	s.mu.Lock()
	m := s.owners[owner]
	// A user's own resource proves its account exists; for others, check.
	own := full.Localpart() == owner && full.Domainpart() == s.router.Domain()
	if m == nil {
		s.mu.Unlock()
		if !own {
			if _, err := s.store.Account(ctx, owner); err != nil {
				return // presence for an account that does not exist
			}
		}
		s.mu.Lock()
		if m = s.owners[owner]; m == nil {
			m = map[string]*recipient{}
			s.owners[owner] = m
		}
	}
	rec := m[key]
	switch {
	case rec == nil && len(m) >= s.opts.MaxRecipients:
		s.mu.Unlock()
		s.log.Warn("too many online resources tracked for one account; PEP notifications to this one are skipped",
			"user", owner, "resource", key, "limit", s.opts.MaxRecipients)
		return
	case rec == nil:
		rec = &recipient{jid: full}
		m[key] = rec
	case rec.hasCaps == hasCaps && rec.caps == c && !rec.failed:
		s.mu.Unlock()
		return // nothing new
	}
	rec.caps, rec.hasCaps, rec.failed = c, hasCaps, false
	rec.gen++
	gen := rec.gen
	s.mu.Unlock()

	if !hasCaps {
		s.learned(ctx, owner, full, gen, nil)
		return
	}
	bg := context.WithoutCancel(ctx)
	f, ok := s.resolver.Resolve(ctx, s.bareJID(owner), full, c, func(f *caps.Features) {
		s.learned(bg, owner, full, gen, f)
	})
	if ok {
		s.learned(ctx, owner, full, gen, f)
	}
}

// learned records the features of a resource's caps (nil when none are
// known) and sends the last items of the nodes it newly asks for.
func (s *Service) learned(ctx context.Context, owner string, full jid.JID, gen uint64, f *caps.Features) {
	s.mu.Lock()
	rec := s.owners[owner][full.String()]
	if rec == nil || rec.gen != gen {
		s.mu.Unlock()
		return // gone offline or announced other caps meanwhile
	}
	old := rec.features
	rec.features = f
	rec.failed = rec.hasCaps && f == nil
	s.mu.Unlock()
	var wanted []string
	for _, node := range f.Notify() {
		if !old.Wants(node) {
			wanted = append(wanted, node)
		}
	}
	if len(wanted) > 0 {
		s.sendLast(ctx, owner, full, wanted)
	}
}

// sendLast sends a resource the last item of each of the owner's nodes in
// wanted that it may see and that sends its last item on presence
// (XEP-0163 §4.3.x, "last published item").
func (s *Service) sendLast(ctx context.Context, owner string, to jid.JID, wanted []string) {
	last, err := s.store.LastPEPItems(ctx, owner)
	if err != nil {
		s.log.Error("cannot load the last PEP items", "user", owner, "err", err)
		return
	}
	for _, node := range wanted {
		st, ok := last[node]
		if !ok {
			continue
		}
		c, exists, err := s.loadNode(ctx, owner, node)
		if err != nil || !exists {
			continue
		}
		if !c.DeliverNotifications || c.SendLast == SendLastNever {
			continue
		}
		if serr, err := s.mayAccess(ctx, owner, to, c); err != nil || serr != nil {
			continue
		}
		it, err := decodeItem(st)
		if err != nil {
			s.log.Error("stored PEP item is unreadable; not sent", "user", owner, "node", node, "item", st.ID, "err", err)
			continue
		}
		s.send(ctx, owner, to, c, itemsEvent(node, c, it))
	}
}

// send routes one notification from the owner's bare JID.
func (s *Service) send(ctx context.Context, owner string, to jid.JID, c nodeConfig, event *xmpp.Element) {
	from := s.bareJID(owner)
	typ := c.NotificationType
	if typ == "" {
		typ = "headline"
	}
	msg := xmpp.NewElement(xmpp.NSClient, "message", "from", from.String(), "to", to.String(), "type", typ, "id", randomID())
	msg.Append(event)
	s.router.Route(ctx, &router.Stanza{El: msg, From: from, To: to})
}

// notify sends event about node to every online resource that wants the
// node's notifications and may see them: the owner's own resources and,
// as the access model allows, contacts (XEP-0163 §4.3).
func (s *Service) notify(ctx context.Context, owner, node string, c nodeConfig, event *xmpp.Element) {
	s.mu.Lock()
	var targets []jid.JID
	for _, rec := range s.owners[owner] {
		if rec.features.Wants(node) {
			targets = append(targets, rec.jid)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(targets, func(a, b jid.JID) int { return strings.Compare(a.String(), b.String()) })
	var subscribers map[string]bool // loaded on first need
	for _, to := range targets {
		own := to.Localpart() == owner && to.Domainpart() == s.router.Domain()
		if !own {
			switch c.AccessModel {
			case AccessOpen:
			case AccessPresence:
				if subscribers == nil {
					subscribers = s.subscribers(ctx, owner)
				}
				if !subscribers[to.Bare().String()] {
					continue
				}
			default:
				continue
			}
		}
		s.send(ctx, owner, to, c, event)
	}
}

// subscribers returns the bare JIDs subscribed to the owner's presence.
func (s *Service) subscribers(ctx context.Context, owner string) map[string]bool {
	out := map[string]bool{}
	items, _, err := s.store.Roster(ctx, owner)
	if err != nil {
		s.log.Error("cannot load the roster; PEP notifications go to the owner only", "user", owner, "err", err)
		return out
	}
	for _, it := range items {
		if it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth {
			out[it.Contact] = true
		}
	}
	return out
}

// Tracked returns the number of online resources whose interests the
// service keeps, for all accounts (for metrics and tests).
func (s *Service) Tracked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.owners {
		n += len(m)
	}
	return n
}
