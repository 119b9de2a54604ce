package roster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Store is the storage the roster needs.
type Store interface {
	storage.Rosters
	storage.SubscriptionRequests
}

// PresenceSender sends a user's current presence to a contact, used when
// the contact gains or loses a subscription to the user.
type PresenceSender interface {
	// SendCurrent sends the presence of each available resource of user to
	// the contact's bare JID.
	SendCurrent(ctx context.Context, user string, contact jid.JID)
	// SendUnavailable sends unavailable presence from each available
	// resource of user to the contact.
	SendUnavailable(ctx context.Context, user string, contact jid.JID)
}

// rosterInterest is implemented by sessions that know whether their client
// fetched the roster.
type rosterInterest interface {
	RosterRequested() bool
	SetRosterRequested()
}

// Service is the roster and subscription feature.
type Service struct {
	store    Store
	router   *router.Router
	presence PresenceSender
	log      *slog.Logger
}

// New creates the roster service and registers its IQ handler.
func New(store Store, r *router.Router, presence PresenceSender, logger *slog.Logger) *Service {
	s := &Service{store: store, router: r, presence: presence, log: logger.With("component", "roster")}
	r.HandleIQ(router.ToAccount, xmpp.NSRoster, s.handleIQ)
	return s
}

func (s *Service) handleIQ(ctx context.Context, iq *router.Stanza) error {
	if !iq.To.Bare().Equal(iq.From.Bare()) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "you can only read and change your own roster")
	}
	user := iq.From.Localpart()
	q := iq.El.Child(xmpp.NSRoster, "query")
	if q == nil {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "")
	}
	if iq.Type() == "get" {
		return s.get(ctx, iq, user, q)
	}
	return s.set(ctx, iq, user, q)
}

func (s *Service) get(ctx context.Context, iq *router.Stanza, user string, q *xmpp.Element) error {
	if sess, ok := iq.Origin.(rosterInterest); ok {
		sess.SetRosterRequested()
	}
	items, ver, err := s.store.Roster(ctx, user)
	if err != nil {
		return fmt.Errorf("load roster of %s: %w", user, err)
	}
	verStr := strconv.FormatInt(ver, 10)
	if q.HasAttr("ver") && q.Attr("ver") == verStr {
		// XEP-0237: the client's copy is current.
		s.router.Result(ctx, iq, nil)
		return nil
	}
	res := xmpp.NewElement(xmpp.NSRoster, "query")
	res.Attrs = []xmpp.Attr{{Local: "ver", Value: verStr}}
	for _, it := range items {
		res.Append(itemElement(it))
	}
	s.router.Result(ctx, iq, res)
	return nil
}

func itemElement(it storage.RosterItem) *xmpp.Element {
	el := xmpp.NewElement(xmpp.NSRoster, "item", "jid", it.Contact, "name", it.Name, "subscription", it.Subscription)
	if it.AskOut {
		el.SetAttr("ask", "subscribe")
	}
	if it.Approved {
		el.SetAttr("approved", "true")
	}
	for _, g := range it.Groups {
		el.AddChild(xmpp.NSRoster, "group").AppendText(g)
	}
	return el
}

func (s *Service) set(ctx context.Context, iq *router.Stanza, user string, q *xmpp.Element) error {
	items := q.Elements()
	if len(items) != 1 || !items[0].Is(xmpp.NSRoster, "item") {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "a roster set carries exactly one item")
	}
	el := items[0]
	contact, err := jid.Parse(el.Attr("jid"))
	if err != nil || el.Attr("jid") == "" {
		return xmpp.NewStanzaError(xmpp.CondJIDMalformed, "the item's jid is not a valid JID")
	}
	contact = contact.Bare()
	cj := contact.String()
	if el.Attr("subscription") == "remove" {
		return s.remove(ctx, iq, user, contact)
	}
	if len(el.Attr("name")) > 1023 {
		return xmpp.NewStanzaError(xmpp.CondNotAcceptable, "the name is too long")
	}
	var groups []string
	seen := map[string]bool{}
	for _, g := range el.Elements() {
		if !g.Is(xmpp.NSRoster, "group") {
			continue
		}
		name := g.Text()
		if name == "" || len(name) > 1023 {
			return xmpp.NewStanzaError(xmpp.CondNotAcceptable, "group names must be 1 to 1023 bytes")
		}
		if seen[name] {
			return xmpp.NewStanzaError(xmpp.CondBadRequest, "the group "+name+" is listed twice")
		}
		seen[name] = true
		groups = append(groups, name)
	}
	item, err := s.store.RosterItem(ctx, user, cj)
	if errors.Is(err, storage.ErrNotFound) {
		item = storage.RosterItem{Contact: cj, Subscription: storage.SubNone}
	} else if err != nil {
		return fmt.Errorf("load roster item %s of %s: %w", cj, user, err)
	}
	item.Name = el.Attr("name")
	item.Groups = groups
	if err := s.put(ctx, user, item); err != nil {
		return err
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

func (s *Service) remove(ctx context.Context, iq *router.Stanza, user string, contact jid.JID) error {
	cj := contact.String()
	item, err := s.store.RosterItem(ctx, user, cj)
	if errors.Is(err, storage.ErrNotFound) {
		return xmpp.NewStanzaError(xmpp.CondItemNotFound, cj+" is not in your roster")
	} else if err != nil {
		return fmt.Errorf("load roster item %s of %s: %w", cj, user, err)
	}
	ver, err := s.store.DeleteRosterItem(ctx, user, cj)
	if err != nil {
		return fmt.Errorf("remove %s from the roster of %s: %w", cj, user, err)
	}
	_ = s.store.DeleteSubscriptionRequest(ctx, user, cj)
	s.router.Result(ctx, iq, nil)
	removed := item
	removed.Subscription = "remove"
	s.push(ctx, user, removed, ver)
	s.cancel(ctx, user, contact, item)
	return nil
}

// cancel ends both directions of the subscription between user and the
// contact of item, as RFC 6121 §2.5.2 requires when the item is removed:
// unsubscribe if the user was subscribed (or asking), and unavailable
// presence then unsubscribed if the contact was subscribed.
func (s *Service) cancel(ctx context.Context, user string, contact jid.JID, item storage.RosterItem) {
	userJID, _ := jid.New(user, s.router.Domain(), "")
	if hasTo(item.Subscription) || item.AskOut {
		s.routePresence(ctx, userJID, contact, "unsubscribe")
	}
	if hasFrom(item.Subscription) {
		s.presence.SendUnavailable(ctx, user, contact)
		s.routePresence(ctx, userJID, contact, "unsubscribed")
	}
}

// CancelAll cancels every subscription of user, as if each roster item
// were removed, so that contacts stop seeing the user as available and
// their rosters reflect it. It is meant for an account about to be
// deleted; the roster itself is left to the deletion.
func (s *Service) CancelAll(ctx context.Context, user string) {
	items, _, err := s.store.Roster(ctx, user)
	if err != nil {
		s.log.Error("cannot load roster; contacts not told of the account removal", "user", user, "err", err)
		return
	}
	for _, it := range items {
		contact, err := jid.Parse(it.Contact)
		if err != nil {
			continue
		}
		s.cancel(ctx, user, contact, it)
	}
}

// put stores an item and pushes it.
func (s *Service) put(ctx context.Context, user string, item storage.RosterItem) error {
	ver, err := s.store.PutRosterItem(ctx, user, item)
	if err != nil {
		return fmt.Errorf("store roster item %s of %s: %w", item.Contact, user, err)
	}
	s.push(ctx, user, item, ver)
	return nil
}

// push sends a roster push to every resource of user that fetched its roster.
func (s *Service) push(ctx context.Context, user string, item storage.RosterItem, ver int64) {
	for _, sess := range s.router.Sessions(user) {
		if ri, ok := sess.(rosterInterest); ok && !ri.RosterRequested() {
			continue
		}
		iq := xmpp.NewElement(xmpp.NSClient, "iq", "type", "set", "id", "push-"+strconv.FormatInt(time.Now().UnixNano(), 36), "to", sess.JID().String())
		q := iq.AddChild(xmpp.NSRoster, "query")
		q.Attrs = []xmpp.Attr{{Local: "ver", Value: strconv.FormatInt(ver, 10)}}
		q.Append(itemElement(item))
		sess.Deliver(iq)
	}
}

func (s *Service) routePresence(ctx context.Context, from, to jid.JID, typ string) {
	p := xmpp.NewElement(xmpp.NSClient, "presence", "from", from.String(), "to", to.String(), "type", typ)
	s.router.Route(ctx, &router.Stanza{El: p, From: from, To: to})
}

// Outbound handles a subscription stanza (subscribe, subscribed,
// unsubscribe, unsubscribed) that a local user sent.
func (s *Service) Outbound(ctx context.Context, st *router.Stanza) {
	user := st.From.Localpart()
	contact := st.To.Bare()
	cj := contact.String()
	typ := st.Type()
	if contact.Equal(st.From.Bare()) {
		return
	}
	item, err := s.store.RosterItem(ctx, user, cj)
	exists := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Error("cannot load roster item; subscription stanza dropped", "user", user, "contact", cj, "err", err)
		return
	}
	if !exists {
		item = storage.RosterItem{Contact: cj}
	}
	pendingIn := s.hasRequest(ctx, user, cj)
	o := Outbound(item, exists, pendingIn, typ)
	if o.Changed {
		if err := s.put(ctx, user, o.Item); err != nil {
			s.log.Error("cannot store roster item", "user", user, "contact", cj, "err", err)
			return
		}
	}
	if o.DropRequest {
		if err := s.store.DeleteSubscriptionRequest(ctx, user, cj); err != nil {
			s.log.Error("cannot delete subscription request", "user", user, "contact", cj, "err", err)
		}
	}
	if o.Route {
		// Subscription stanzas leave with the user's bare JID (RFC 6121 §3.1.2).
		out := st.El.ShallowCopy()
		out.SetAttr("from", st.From.Bare().String())
		out.SetAttr("to", cj)
		s.router.Route(ctx, &router.Stanza{El: out, From: st.From.Bare(), To: contact})
	}
	if o.SendPresence {
		s.presence.SendCurrent(ctx, user, contact)
	}
	if o.SendUnavailable {
		s.presence.SendUnavailable(ctx, user, contact)
	}
}

func (s *Service) hasRequest(ctx context.Context, user, contact string) bool {
	reqs, err := s.store.SubscriptionRequests(ctx, user)
	if err != nil {
		return false
	}
	for _, r := range reqs {
		if r.From == contact {
			return true
		}
	}
	return false
}

// Inbound handles a subscription stanza sent to a local user: it updates
// the user's roster, answers on the user's behalf where RFC 6121 §3 says
// so, and delivers the stanza to the user's available resources when the
// user has to see it.
func (s *Service) Inbound(ctx context.Context, st *router.Stanza) {
	user := st.To.Localpart()
	contact := st.From.Bare()
	cj := contact.String()
	typ := st.Type()
	item, err := s.store.RosterItem(ctx, user, cj)
	exists := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Error("cannot load roster item; subscription stanza dropped", "user", user, "contact", cj, "err", err)
		return
	}
	if !exists {
		item = storage.RosterItem{Contact: cj}
	}
	if s.hasRequest(ctx, user, cj) {
		item.PendingIn = true
	}
	o := Inbound(item, exists, typ)
	if o.Changed {
		if err := s.put(ctx, user, o.Item); err != nil {
			s.log.Error("cannot store roster item", "user", user, "contact", cj, "err", err)
			return
		}
	}
	userJID, _ := jid.New(user, s.router.Domain(), "")
	if o.KeepRequest {
		stored := st.El.ShallowCopy()
		stored.SetAttr("from", cj)
		stored.SetAttr("to", userJID.String())
		if err := s.store.PutSubscriptionRequest(ctx, user, storage.SubscriptionRequest{From: cj, Stanza: stored.Bytes(), Stored: time.Now().UTC()}); err != nil {
			s.log.Error("cannot store subscription request", "user", user, "contact", cj, "err", err)
		}
	}
	if o.DropRequest {
		if err := s.store.DeleteSubscriptionRequest(ctx, user, cj); err != nil {
			s.log.Error("cannot delete subscription request", "user", user, "contact", cj, "err", err)
		}
	}
	if o.AutoReply != "" {
		s.routePresence(ctx, userJID, contact, o.AutoReply)
	}
	if o.SendPresence {
		s.presence.SendCurrent(ctx, user, contact)
	}
	if o.SendUnavailable {
		s.presence.SendUnavailable(ctx, user, contact)
	}
	if o.Route {
		out := st.El.ShallowCopy()
		out.SetAttr("from", cj)
		for _, sess := range s.router.Available(user) {
			sess.Deliver(out)
		}
	}
}

// PendingRequests returns the stored subscription requests of user, to be
// delivered when a session becomes available.
func (s *Service) PendingRequests(ctx context.Context, user string) []*xmpp.Element {
	reqs, err := s.store.SubscriptionRequests(ctx, user)
	if err != nil {
		s.log.Error("cannot load pending subscription requests", "user", user, "err", err)
		return nil
	}
	var out []*xmpp.Element
	for _, r := range reqs {
		el, err := xmpp.ParseElement(r.Stanza)
		if err != nil {
			s.log.Error("stored subscription request is corrupt; skipping", "user", user, "from", r.From, "err", err)
			continue
		}
		out = append(out, el)
	}
	return out
}
