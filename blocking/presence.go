package blocking

import (
	"context"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// directedPresence is implemented by sessions that remember the JIDs they
// sent directed presence to (RFC 6121 §4.6).
type directedPresence interface {
	Directed() []string
}

func hasFrom(sub string) bool { return sub == storage.SubFrom || sub == storage.SubBoth }
func hasTo(sub string) bool   { return sub == storage.SubTo || sub == storage.SubBoth }

// affected returns the addresses of roster contact c that a change of the
// JIDs in changed (the list of those JIDs) concerns: c itself when the
// change covers all of c (c's bare JID or domain), else the full JIDs of
// c that a full JID or domain/resource item names.
func affected(changed *list, c jid.JID) []jid.JID {
	if changed.matches(c) {
		return []jid.JID{c}
	}
	var out []jid.JID
	for _, it := range changed.items {
		j, err := jid.Parse(it)
		if err != nil || j.Resourcepart() == "" || j.Domainpart() != c.Domainpart() {
			continue
		}
		if j.Localpart() == c.Localpart() || j.Localpart() == "" {
			if full, err := jid.New(c.Localpart(), c.Domainpart(), j.Resourcepart()); err == nil {
				out = append(out, full)
			}
		}
	}
	return out
}

// blocked applies XEP-0191 §3.3 to JIDs the user just blocked: contacts
// that received the user's presence (by subscription or directed
// presence) get unavailable presence from each available resource; the
// user's available resources get unavailable presence from the blocked
// contacts whose presence they received, since it no longer reaches them;
// and pending subscription requests from the blocked JIDs are dropped, as
// the user could not answer them any more.
func (s *Service) blocked(ctx context.Context, user string, jids []string) {
	changed := newList(jids)
	s.dropRequests(ctx, user, changed)
	sessions := s.router.Available(user)
	if len(sessions) == 0 {
		return // the contacts saw the user go offline already
	}
	items, _, err := s.store.Roster(ctx, user)
	if err != nil {
		s.log.Error("cannot load roster; presence not updated after a block", "user", user, "err", err)
	}
	told := map[string]bool{}
	for _, it := range items {
		c, err := jid.Parse(it.Contact)
		if err != nil {
			continue
		}
		for _, t := range affected(changed, c) {
			if hasFrom(it.Subscription) {
				told[t.String()] = true
				for _, sess := range sessions {
					s.routePast(ctx, unavailable(sess.JID(), t))
				}
			}
			if hasTo(it.Subscription) {
				for _, from := range s.resources(t) {
					for _, sess := range sessions {
						sess.Deliver(unavailable(from, sess.JID()).El)
					}
				}
			}
		}
	}
	for _, sess := range sessions {
		dp, ok := sess.(directedPresence)
		if !ok {
			continue
		}
		for _, d := range dp.Directed() {
			t, err := jid.Parse(d)
			if err != nil || told[t.String()] || !changed.matches(t) {
				continue
			}
			s.routePast(ctx, unavailable(sess.JID(), t))
		}
	}
}

// unblocked applies XEP-0191 §3.4 to JIDs the user just unblocked:
// contacts allowed to receive the user's presence get the current
// presence of each available resource, and contacts whose presence the
// user is subscribed to are probed so that the user's resources learn it
// again.
func (s *Service) unblocked(ctx context.Context, user string, jids []string) {
	sessions := s.router.Available(user)
	if len(sessions) == 0 {
		return
	}
	changed := newList(jids)
	items, _, err := s.store.Roster(ctx, user)
	if err != nil {
		s.log.Error("cannot load roster; presence not updated after an unblock", "user", user, "err", err)
	}
	userJID, err := jid.New(user, s.domain, "")
	if err != nil {
		return
	}
	told := map[string]bool{}
	for _, it := range items {
		c, err := jid.Parse(it.Contact)
		if err != nil {
			continue
		}
		targets := affected(changed, c)
		if hasFrom(it.Subscription) {
			for _, t := range targets {
				told[t.String()] = true
				s.sendCurrent(ctx, sessions, t)
			}
		}
		if hasTo(it.Subscription) && len(targets) > 0 {
			probe := xmpp.NewElement(xmpp.NSClient, "presence", "type", "probe", "from", userJID.String(), "to", c.String())
			s.router.Route(ctx, &router.Stanza{El: probe, From: userJID, To: c})
		}
	}
	for _, sess := range sessions {
		dp, ok := sess.(directedPresence)
		if !ok {
			continue
		}
		for _, d := range dp.Directed() {
			t, err := jid.Parse(d)
			if err != nil || told[t.String()] || !changed.matches(t) {
				continue
			}
			s.sendCurrent(ctx, []router.Session{sess}, t)
		}
	}
}

// sendCurrent routes the current presence of each of sessions to t. The
// router's filter still applies: t may be blocked by another item.
func (s *Service) sendCurrent(ctx context.Context, sessions []router.Session, t jid.JID) {
	for _, sess := range sessions {
		pr := sess.Presence()
		if pr == nil {
			continue
		}
		c := pr.ShallowCopy()
		c.SetAttr("from", sess.JID().String())
		c.SetAttr("to", t.String())
		s.router.Route(ctx, &router.Stanza{El: c, From: sess.JID(), To: t})
	}
}

// resources returns the addresses that presence of contact address t
// comes from: the available resources of a local account, else t itself
// (a remote contact's resources are not tracked; unavailable presence from
// its bare JID stands for all of them).
func (s *Service) resources(t jid.JID) []jid.JID {
	if t.Resourcepart() != "" {
		return []jid.JID{t}
	}
	user := s.localUser(t)
	if user == "" {
		return []jid.JID{t}
	}
	var out []jid.JID
	for _, sess := range s.router.Available(user) {
		out = append(out, sess.JID())
	}
	return out
}

// routePast routes a stanza of the user past the user's own blocklist,
// which lists its recipient now: only a local recipient's blocklist
// applies.
func (s *Service) routePast(ctx context.Context, st *router.Stanza) {
	if user := s.localUser(st.To); user != "" && s.lookup(ctx, user).matches(st.From) {
		return
	}
	st.Filtered = true
	s.router.Route(ctx, st)
}

// unavailable returns unavailable presence from from to to.
func unavailable(from, to jid.JID) *router.Stanza {
	el := xmpp.NewElement(xmpp.NSClient, "presence", "type", "unavailable", "from", from.String(), "to", to.String())
	return &router.Stanza{El: el, From: from, To: to}
}

// dropRequests deletes the user's pending subscription requests from JIDs
// on changed.
func (s *Service) dropRequests(ctx context.Context, user string, changed *list) {
	reqs, err := s.store.SubscriptionRequests(ctx, user)
	if err != nil {
		s.log.Error("cannot load subscription requests; those of blocked JIDs are kept", "user", user, "err", err)
		return
	}
	for _, r := range reqs {
		from, err := jid.Parse(r.From)
		if err != nil || !changed.matches(from) {
			continue
		}
		if err := s.store.DeleteSubscriptionRequest(ctx, user, r.From); err != nil {
			s.log.Error("cannot delete the subscription request of a blocked JID", "user", user, "from", r.From, "err", err)
		}
	}
}
