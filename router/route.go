package router

import (
	"context"
	"errors"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

// Route delivers a stanza whose From and To are set (To may be the zero JID
// for stanzas addressed to the sender's own account). It never blocks on a
// slow recipient.
func (r *Router) Route(ctx context.Context, s *Stanza) {
	to := s.To
	if to.Domainpart() == "" {
		// No 'to': handled on behalf of the sender's account (RFC 6120 §10.3).
		to = s.From.Bare()
		s.To = to
	}
	if r.Filter(ctx, s) {
		return
	}
	if s.Kind() == "iq" && r.answerIQ(s) {
		return
	}
	if to.Domainpart() != r.domain {
		if h := r.service(to.Domainpart()); h != nil {
			h(ctx, s)
			return
		}
		r.mu.RLock()
		remote := r.hooks.Remote
		r.mu.RUnlock()
		if remote != nil {
			remote(ctx, s)
			return
		}
		r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondRemoteServerNotFound, "this server does not federate with "+to.Domainpart()+" yet"))
		return
	}
	switch {
	case to.Localpart() == "" && to.Resourcepart() == "":
		r.toServer(ctx, s)
	case to.Localpart() == "":
		// domain/resource: nothing lives there.
		r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
	case to.Resourcepart() == "":
		r.toBare(ctx, s)
	default:
		r.toFull(ctx, s)
	}
}

func (r *Router) toServer(ctx context.Context, s *Stanza) {
	if s.Kind() != "iq" {
		// Presence and messages to the server itself: nothing to do.
		return
	}
	r.dispatchIQ(ctx, s, ToServer)
}

func (r *Router) dispatchIQ(ctx context.Context, s *Stanza, target Target) {
	typ := s.Type()
	if typ != "get" && typ != "set" {
		// Results and errors addressed to the server or an account bare JID
		// have no waiting requester here; drop them.
		return
	}
	payload := s.El.FirstElement()
	if payload == nil || len(s.El.Elements()) != 1 {
		r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondBadRequest, "an IQ get or set must have exactly one child element"))
		return
	}
	r.mu.RLock()
	var h IQHandler
	if target == ToServer {
		h = r.serverIQ[payload.Space]
	} else {
		h = r.accountIQ[payload.Space]
	}
	r.mu.RUnlock()
	if h == nil {
		r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
		return
	}
	if err := h(ctx, s); err != nil {
		var serr *xmpp.StanzaError
		if !errors.As(err, &serr) {
			r.log.Error("IQ handler failed", "ns", payload.Space, "from", s.From.String(), "err", err)
			serr = xmpp.NewStanzaError(xmpp.CondInternalServerError, "")
		}
		r.Bounce(ctx, s, serr)
	}
}

func (r *Router) accountExists(ctx context.Context, user string) bool {
	if r.hasSessions(user) {
		// A user with a bound session exists; no storage lookup needed.
		return true
	}
	r.mu.RLock()
	f := r.hooks.AccountExists
	r.mu.RUnlock()
	if f == nil {
		return true
	}
	return f(ctx, user)
}

func (r *Router) toBare(ctx context.Context, s *Stanza) {
	user := s.To.Localpart()
	switch s.Kind() {
	case "iq":
		if !r.accountExists(ctx, user) {
			r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
			return
		}
		r.dispatchIQ(ctx, s, ToAccount)
	case "presence":
		if r.inboundPresence(ctx, s) {
			return
		}
		// Directed available/unavailable presence to a bare JID goes to
		// every available resource (RFC 6121 §4.6.3 and §8.5.2.1.2).
		for _, sess := range r.Available(user) {
			sess.Deliver(s.El) // keeps its bare 'to' (RFC 6121 §8.5.2.1)
		}
		r.PresenceIn(ctx, s)
	case "message":
		r.messageToUser(ctx, s)
	}
}

// inboundPresence hands subscription stanzas and probes for a local user
// to the InboundPresence hook and reports whether the stanza was one of
// them (and so consumed).
func (r *Router) inboundPresence(ctx context.Context, s *Stanza) bool {
	switch s.Type() {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe":
	default:
		return false
	}
	if !r.accountExists(ctx, s.To.Localpart()) {
		// RFC 6121 §8.5.1: for an account that does not exist, these are
		// silently ignored.
		return true
	}
	r.mu.RLock()
	h := r.hooks.InboundPresence
	r.mu.RUnlock()
	if h == nil {
		return true
	}
	h(ctx, s)
	return true
}

// messageToUser delivers a message addressed to a local user: the
// MessageIn hooks run once, then RFC 6121 §8.5 decides between the full
// JID's session, the highest-priority resources, and offline storage.
func (r *Router) messageToUser(ctx context.Context, s *Stanza) {
	user := s.To.Localpart()
	typ := s.Type()
	if !r.accountExists(ctx, user) {
		if typ != "error" && typ != "groupchat" && typ != "headline" {
			r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
		}
		return
	}
	r.mu.RLock()
	in, delivered := r.hooks.MessageIn, r.hooks.MessageDelivered
	r.mu.RUnlock()
	for _, h := range in {
		if h(ctx, s) {
			return
		}
	}
	targets := r.messageTargets(ctx, s)
	for _, sess := range targets {
		sess.Deliver(s.El)
	}
	for _, h := range delivered {
		h(ctx, s, targets)
	}
}

// messageTargets picks the sessions that get a message (RFC 6121 §8.5.2
// and §8.5.3); when none fits it stores or bounces the message and
// returns nil.
func (r *Router) messageTargets(ctx context.Context, s *Stanza) []Session {
	user := s.To.Localpart()
	typ := s.Type()
	if s.To.Resourcepart() != "" {
		if sess := r.Session(s.To); sess != nil {
			return []Session{sess}
		}
		// Absent resource (RFC 6121 §8.5.3.2.1).
		switch typ {
		case "groupchat":
			r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
			return nil
		case "headline", "error":
			return nil
		}
	}
	switch typ {
	case "groupchat":
		r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
		return nil
	case "headline":
		return r.highestOrAllNonNegative(user)
	case "error":
		return r.highest(user)
	}
	if targets := r.highest(user); len(targets) > 0 {
		return targets
	}
	r.storeOffline(ctx, user, s)
	return nil
}

// StoreOffline hands a message for a user without available resources to
// the offline hook, bouncing it when the hook refuses it. Sessions that go
// away with undelivered messages use it too.
func (r *Router) storeOffline(ctx context.Context, user string, s *Stanza) {
	r.mu.RLock()
	off := r.hooks.Offline
	r.mu.RUnlock()
	if off == nil {
		r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
		return
	}
	if serr := off(ctx, user, s); serr != nil {
		r.Bounce(ctx, s, serr)
	}
}

func (r *Router) highestOrAllNonNegative(user string) []Session {
	var out []Session
	for _, sess := range r.Available(user) {
		if _, prio := sess.Available(); prio >= 0 {
			out = append(out, sess)
		}
	}
	return out
}

func (r *Router) toFull(ctx context.Context, s *Stanza) {
	if s.Kind() == "message" {
		r.messageToUser(ctx, s)
		return
	}
	if sess := r.Session(s.To); sess != nil {
		if s.Kind() == "presence" && r.inboundPresence(ctx, s) {
			return
		}
		sess.Deliver(s.El)
		if s.Kind() == "presence" {
			r.PresenceIn(ctx, s)
		}
		return
	}
	// No such resource (RFC 6121 §8.5.3.2).
	switch s.Kind() {
	case "presence":
		// Subscription stanzas are handled as if sent to the bare JID;
		// probes are answered; other presence is dropped.
		r.inboundPresence(ctx, s)
	case "iq":
		r.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
	}
}

// Bounce answers a stanza with an error, unless it is an error itself (or
// a presence that must not be bounced).
func (r *Router) Bounce(ctx context.Context, s *Stanza, serr *xmpp.StanzaError) {
	reply := xmpp.ErrorReply(s.El, serr)
	if reply == nil {
		return
	}
	if s.To.Domainpart() != "" && serr.By == "" {
		reply.Child(xmpp.NSClient, "error").SetAttr("by", s.To.String())
	}
	if s.From.Domainpart() == "" {
		return
	}
	r.Route(ctx, &Stanza{El: reply, From: s.To, To: s.From, Filtered: true})
}

// Reply routes an IQ result (or any reply) built by a handler.
func (r *Router) Reply(ctx context.Context, req *Stanza, reply *xmpp.Element) {
	reply.SetAttr("id", req.El.Attr("id"))
	from := req.To
	if from.Domainpart() == "" {
		from = req.From.Bare()
	}
	reply.SetAttr("from", fromAttr(from, req))
	reply.SetAttr("to", req.From.String())
	r.Route(ctx, &Stanza{El: reply, From: from, To: req.From})
}

// fromAttr returns the 'from' of a reply: RFC 6120 §10.3.3 lets a server
// answer an IQ the user sent to its own account without a 'from', but
// clients accept their bare JID there too; keep the original 'to' when the
// request had one.
func fromAttr(from jid.JID, req *Stanza) string {
	if req.El.Attr("to") == "" {
		return ""
	}
	return from.String()
}

// Result sends an IQ result with an optional payload.
func (r *Router) Result(ctx context.Context, req *Stanza, payload *xmpp.Element) {
	res := xmpp.NewElement(xmpp.NSClient, "iq", "type", "result")
	if payload != nil {
		res.Append(payload)
	}
	r.Reply(ctx, req, res)
}

// StoreOffline stores a message for a local user, bouncing it if storage
// refuses. Used for messages that a closing session could not deliver.
func (r *Router) StoreOffline(ctx context.Context, s *Stanza) {
	r.storeOffline(ctx, s.To.Localpart(), s)
}
