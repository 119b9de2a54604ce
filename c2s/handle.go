package c2s

import (
	"context"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// handle processes one top-level element from a bound client.
func (s *Session) handle(ctx context.Context, el *xmpp.Element) error {
	if el.Space != xmpp.NSClient {
		return s.handleSM(el)
	}
	switch el.Local {
	case "message", "presence", "iq":
	default:
		return xmpp.NewStreamError(xmpp.StreamUnsupportedStanza, "<%s/> is not a stanza", el.Local)
	}
	s.srv.cfg.Metrics.StanzaIn(el.Local)
	if s.smEnabled {
		// Counted when taken in: a stanza is handled once the server has
		// accepted responsibility for it (XEP-0198 §4).
		s.handledIn++
	}
	// 'from' is always the authenticated full JID (RFC 6120 §8.1.2.1).
	if f := el.Attr("from"); f != "" {
		fj, err := jid.Parse(f)
		if err != nil || !(fj.Equal(s.jid) || fj.Equal(s.jid.Bare())) {
			return xmpp.NewStreamError(xmpp.StreamInvalidFrom, "'from' must be your own address %s", s.jid.String())
		}
	}
	el.SetAttr("from", s.jid.String())
	st := &router.Stanza{El: el, From: s.jid, Origin: s}
	if t := el.Attr("to"); t != "" {
		to, err := jid.Parse(t)
		if err != nil {
			s.deliverError(el, xmpp.NewStanzaError(xmpp.CondJIDMalformed, "the 'to' address is not a valid JID"))
			return nil
		}
		st.To = to
	}
	switch el.Local {
	case "iq":
		typ := el.Attr("type")
		switch typ {
		case "get", "set":
			if el.Attr("id") == "" || len(el.Elements()) != 1 {
				s.deliverError(el, xmpp.NewStanzaError(xmpp.CondBadRequest, "an IQ get or set needs an id and exactly one child element"))
				return nil
			}
			if typ == "set" && st.To.Domainpart() == "" && el.Child(xmpp.NSSession, "session") != nil {
				// Legacy session establishment (RFC 3921) is a no-op.
				s.deliver(xmpp.NewElement(xmpp.NSClient, "iq", "type", "result", "id", el.Attr("id"), "to", s.jid.String()))
				return nil
			}
			if typ == "set" && el.Child(xmpp.NSBind, "bind") != nil {
				s.deliverError(el, xmpp.NewStanzaError(xmpp.CondNotAllowed, "a resource is already bound"))
				return nil
			}
			s.sentIQ(el)
		case "result", "error":
			if el.Attr("id") == "" {
				return nil
			}
		default:
			s.deliverError(el, xmpp.NewStanzaError(xmpp.CondBadRequest, "unknown IQ type"))
			return nil
		}
	case "presence":
		if h := s.srv.cfg.Hooks.Presence; h != nil {
			h(ctx, s, st)
			return nil
		}
	case "message":
		// Blocking decides before the archive and carbons see the message.
		if s.srv.cfg.Router.Filter(ctx, st) {
			return nil
		}
		for _, h := range s.srv.cfg.Hooks.MessageOut {
			if h(ctx, s, st) {
				return nil
			}
		}
	}
	start := time.Now()
	s.srv.cfg.Router.Route(ctx, st)
	s.srv.cfg.Metrics.Routed(time.Since(start))
	return nil
}

// deliverError answers a client's stanza directly with an error from the server.
func (s *Session) deliverError(el *xmpp.Element, serr *xmpp.StanzaError) {
	reply := xmpp.ErrorReply(el, serr)
	if reply == nil {
		return
	}
	reply.SetAttr("to", s.jid.String())
	if el.Attr("to") == "" {
		reply.SetAttr("from", "")
	}
	s.deliver(reply)
}
