package server

import (
	"context"
	"time"

	"wren.im/wren/c2s"
	"wren.im/wren/push"
	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// buildPush wires push notifications (XEP-0357) into the server. It runs
// before the routing hooks are installed: they call into s.push.
func (s *Server) buildPush() error {
	p := s.cfg.Push
	if !p.Enabled {
		return nil
	}
	s.push = push.New(push.Config{
		MaxRegistrations: p.MaxRegistrations,
		MaxErrors:        p.MaxErrors,
		IncludeSender:    p.IncludeSender,
		IncludeBody:      p.IncludeBody,
		PlaceholderBody:  p.PlaceholderBody,
		HibernateTimeout: p.HibernateTimeout.Duration,
		ReplyTimeout:     p.ReplyTimeout.Duration,
		RetryInterval:    p.RetryInterval.Duration,
	}, s.store, s.router, s.log.With("feature", "push"))
	s.push.SetMetrics(s.metrics.Push)
	s.disco.AddServerFeature(push.NS)
	s.disco.AddAccountFeature(push.NS)
	return nil
}

// pushDelivered adds the push service's delivery hook; it runs after the
// router's hooks are installed.
func (s *Server) pushDelivered() {
	if s.push != nil && s.cfg.Archive.Enabled {
		// A message that reached the user's other resources is archived:
		// devices without a session fetch it from there once woken.
		s.router.AddMessageDelivered(s.push.Delivered)
	}
}

// pushOffline wraps the offline hook: a stored message wakes the user's devices.
func (s *Server) pushOffline(store func(context.Context, string, *router.Stanza) *xmpp.StanzaError) func(context.Context, string, *router.Stanza) *xmpp.StanzaError {
	if s.push == nil {
		return store
	}
	return func(ctx context.Context, user string, st *router.Stanza) *xmpp.StanzaError {
		serr := store(ctx, user, st)
		if serr == nil {
			s.push.Offline(ctx, user, st)
		}
		return serr
	}
}

// pushSubscriptions wraps the inbound presence hook: a subscription
// request wakes the user's devices.
func (s *Server) pushSubscriptions(inbound func(context.Context, *router.Stanza) bool) func(context.Context, *router.Stanza) bool {
	if s.push == nil {
		return inbound
	}
	return func(ctx context.Context, st *router.Stanza) bool {
		consumed := inbound(ctx, st)
		if st.Type() == "subscribe" && st.To.Localpart() != "" {
			s.push.SubscriptionRequest(ctx, st.To.Localpart(), st)
		}
		return consumed
	}
}

// pushHooks adds the push service's session hooks to the c2s hooks.
func (s *Server) pushHooks(h *c2s.Hooks) {
	if s.push == nil {
		return
	}
	bound := h.Bound
	h.Bound = func(ctx context.Context, sess *c2s.Session) {
		if bound != nil {
			bound(ctx, sess)
		}
		s.push.Online(ctx, sess.Username(), sess.JID().Resourcepart())
	}
	h.Resumed = func(ctx context.Context, sess *c2s.Session) {
		s.push.Online(ctx, sess.Username(), sess.JID().Resourcepart())
	}
	h.HibernateTimeout = func(sess *c2s.Session) time.Duration { return s.push.HibernateTimeout(sess) }
	h.Hibernated = func(sess *c2s.Session, queued []*xmpp.Element) { s.push.Hibernated(sess, queued) }
	h.QueuedWhileHibernated = func(sess *c2s.Session, el *xmpp.Element) { s.push.QueuedWhileHibernated(sess, el) }
}
