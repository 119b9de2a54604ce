// Package carbons implements Message Carbons (XEP-0280): a client that
// enables carbons receives a copy of every chat message its user receives
// on another resource (<received/>) and of every one the user sends from
// another resource (<sent/>), so that all of a user's devices see both
// sides of every conversation.
//
// It plugs into the core at four points: an account IQ handler for
// urn:xmpp:carbons:2 (enable, disable), the router's MessageIn and
// MessageDelivered hooks (received copies), a c2s MessageOut hook (sent
// copies) and the c2s Bound and Ended hooks (per-resource state).
package carbons

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/c2s"
	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// Namespaces.
const (
	NS        = "urn:xmpp:carbons:2"
	nsForward = "urn:xmpp:forward:0"
	nsSID     = "urn:xmpp:sid:0"
	nsHints   = "urn:xmpp:hints"
	nsMUCUser = "http://jabber.org/protocol/muc#user"
	nsMAM     = "urn:xmpp:mam:2"
)

// noteTTL bounds how long a note about a message in flight is kept if the
// router never reports its delivery (a later MessageIn hook consumed it).
const noteTTL = time.Minute

// Service is the carbons feature.
type Service struct {
	router *router.Router
	log    *slog.Logger

	mu sync.Mutex
	// enabled holds, per local user, the resources that enabled carbons.
	// It is keyed by full JID rather than by session so that a session
	// resumed on a new connection (XEP-0198) keeps its state.
	enabled map[string]map[string]struct{}

	notesMu sync.Mutex
	// notes carry what MessageIn saw of a message to MessageDelivered,
	// for the few messages that need it (see note).
	notes map[*router.Stanza]note
}

// note is what MessageIn learned about a message that MessageDelivered
// needs: it carried <private/> (removed before delivery), or a
// <stanza-id/> by the recipient's archive, which is still there after the
// archive's hook only if the server routes the message a second time.
type note struct {
	private   bool
	claimedID string
	at        time.Time
}

// New returns the carbons service and registers its IQ handler.
func New(r *router.Router, logger *slog.Logger) *Service {
	s := &Service{
		router:  r,
		log:     logger.With("component", "carbons"),
		enabled: map[string]map[string]struct{}{},
		notes:   map[*router.Stanza]note{},
	}
	r.HandleIQ(router.ToAccount, NS, s.handleIQ)
	return s
}

// handleIQ enables or disables carbons for the requesting resource
// (XEP-0280 §4, §5). Repeating either is not an error.
func (s *Service) handleIQ(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "set" {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "enable or disable carbons with an IQ set")
	}
	if !iq.From.Bare().Equal(iq.To.Bare()) || iq.From.Resourcepart() == "" {
		return xmpp.NewStanzaError(xmpp.CondNotAllowed, "a client can only change its own carbons")
	}
	el := iq.El.FirstElement()
	switch {
	case el.Is(NS, "enable"):
		s.set(iq.From, true)
		s.log.Debug("carbons enabled", "jid", iq.From.String())
	case el.Is(NS, "disable"):
		s.set(iq.From, false)
		s.log.Debug("carbons disabled", "jid", iq.From.String())
	default:
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "expected <enable/> or <disable/>")
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

func (s *Service) set(full jid.JID, on bool) {
	user, res := full.Localpart(), full.Resourcepart()
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		if s.enabled[user] == nil {
			s.enabled[user] = map[string]struct{}{}
		}
		s.enabled[user][res] = struct{}{}
		return
	}
	delete(s.enabled[user], res)
	if len(s.enabled[user]) == 0 {
		delete(s.enabled, user)
	}
}

// Enabled reports whether the resource full has carbons enabled.
func (s *Service) Enabled(full jid.JID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.enabled[full.Localpart()][full.Resourcepart()]
	return ok
}

// SessionBound is a c2s Bound hook: a newly bound resource starts with
// carbons disabled, even if an older connection with the same resource
// had them on.
func (s *Service) SessionBound(_ context.Context, sess *c2s.Session) {
	s.set(sess.JID(), false)
}

// SessionEnded is a c2s Ended hook: it forgets the resource's state, unless
// another session is bound to the same full JID by now (the session was
// replaced by a new connection for that resource).
func (s *Service) SessionEnded(_ context.Context, sess *c2s.Session, replaced bool) {
	if replaced {
		return
	}
	j := sess.JID()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.router.Session(j) != nil {
		return
	}
	delete(s.enabled[j.Localpart()], j.Resourcepart())
	if len(s.enabled[j.Localpart()]) == 0 {
		delete(s.enabled, j.Localpart())
	}
}

// targets returns the sessions of user with carbons enabled, except those
// whose resource is in skip.
func (s *Service) targets(user string, skip func(resource string) bool) []router.Session {
	s.mu.Lock()
	var resources []string
	for r := range s.enabled[user] {
		if !skip(r) {
			resources = append(resources, r)
		}
	}
	s.mu.Unlock()
	var out []router.Session
	for _, r := range resources {
		full, err := jid.New(user, s.router.Domain(), r)
		if err != nil {
			continue
		}
		if sess := s.router.Session(full); sess != nil {
			out = append(out, sess)
		}
	}
	return out
}

// Eligible reports whether a message is copied to other resources
// (XEP-0280 §6): a chat message, or a normal one with a body; never one
// marked <private/> or with the XEP-0334 <no-copy/> hint, nor one from a
// group chat (including private messages through a room), nor a copy or
// an archive result itself.
func Eligible(el *xmpp.Element) bool {
	body := false
	for _, c := range el.Elements() {
		switch {
		case c.Is(NS, "private"), c.Is(nsHints, "no-copy"),
			c.Is(NS, "received"), c.Is(NS, "sent"),
			c.Is(nsMUCUser, "x"), c.Is(nsMAM, "result"):
			return false
		case c.Local == "body" && (c.Space == xmpp.NSClient || c.Space == xmpp.NSServer):
			body = true
		}
	}
	switch el.Attr("type") {
	case "chat":
		return true
	case "", "normal":
		return body
	}
	return false
}

// MessageIn is a router MessageIn hook; register it before the archive's.
// It removes <private/> from messages to local users (XEP-0280 §7) and
// notes, for MessageDelivered, the messages that need a decision there.
func (s *Service) MessageIn(_ context.Context, st *router.Stanza) bool {
	var n note
	by := st.To.Bare().String()
	for _, c := range st.El.Elements() {
		switch {
		case c.Is(NS, "private"):
			n.private = true
		case c.Is(nsSID, "stanza-id") && c.Attr("by") == by:
			n.claimedID = c.Attr("id")
		}
	}
	if !n.private && n.claimedID == "" {
		return false
	}
	if n.private {
		el := st.El.ShallowCopy()
		el.RemoveChildren(func(c *xmpp.Element) bool { return c.Is(NS, "private") })
		st.El = el
	}
	n.at = time.Now()
	s.notesMu.Lock()
	defer s.notesMu.Unlock()
	if len(s.notes) >= 1024 {
		// Notes are taken back by MessageDelivered; only messages that a
		// later hook consumed stay. Drop the old ones.
		for k, v := range s.notes {
			if n.at.Sub(v.at) > noteTTL {
				delete(s.notes, k)
			}
		}
	}
	s.notes[st] = n
	return false
}

func (s *Service) takeNote(st *router.Stanza) (note, bool) {
	s.notesMu.Lock()
	defer s.notesMu.Unlock()
	n, ok := s.notes[st]
	if ok {
		delete(s.notes, st)
	}
	return n, ok
}

// MessageDelivered is a router MessageDelivered hook: it sends a
// <received/> copy of an eligible message to each carbons-enabled
// resource of the recipient that did not get the message itself. A
// message the server routes a second time (handed back by a session that
// ended without acknowledging it) was copied the first time and is not
// copied again.
func (s *Service) MessageDelivered(_ context.Context, st *router.Stanza, to []router.Session) {
	if n, ok := s.takeNote(st); ok {
		if n.private {
			return
		}
		for _, c := range st.El.Elements() {
			if c.Is(nsSID, "stanza-id") && c.Attr("by") == st.To.Bare().String() && c.Attr("id") == n.claimedID {
				return // the archive kept the id it gave the first time
			}
		}
	}
	if !Eligible(st.El) {
		return
	}
	user := st.To.Localpart()
	got := map[string]bool{}
	for _, sess := range to {
		got[sess.JID().Resourcepart()] = true
	}
	if o := st.Origin; o != nil && o.JID().Localpart() == user && o.JID().Domainpart() == st.To.Domainpart() {
		got[o.JID().Resourcepart()] = true // a message to oneself: not back to the sender
	}
	for _, sess := range s.targets(user, func(r string) bool { return got[r] }) {
		sess.Deliver(wrap("received", st.To.Bare(), sess.JID(), st.El))
	}
}

// MessageOut is a c2s MessageOut hook that sends <sent/> copies without an
// archive id. With an archive, call Sent from a hook that archives first.
func (s *Service) MessageOut(ctx context.Context, sess *c2s.Session, st *router.Stanza) bool {
	s.Sent(ctx, sess, st, "")
	return false
}

// Sent sends a <sent/> copy of an eligible message that sess sent to the
// user's other carbons-enabled resources (XEP-0280 §8). archiveID, when
// not empty, is the id of the message in the sender's archive; it goes in
// the copies as a <stanza-id/> (XEP-0313 §3.2). Messages to the user's own
// account are copied when received, not here.
func (s *Service) Sent(_ context.Context, sess *c2s.Session, st *router.Stanza, archiveID string) {
	from := sess.JID()
	if st.To.Domainpart() == "" || st.To.Bare().Equal(from.Bare()) || !Eligible(st.El) {
		return
	}
	targets := s.targets(from.Localpart(), func(r string) bool { return r == from.Resourcepart() })
	if len(targets) == 0 {
		return
	}
	orig := st.El.ShallowCopy()
	if archiveID != "" {
		orig.AddChild(nsSID, "stanza-id", "by", from.Bare().String(), "id", archiveID)
	}
	for _, t := range targets {
		t.Deliver(wrap("sent", from.Bare(), t.JID(), orig))
	}
}

// wrap builds a carbon copy: a message from the user's bare JID to one of
// their resources, of the original's type, holding the original in a
// XEP-0297 <forwarded/> inside <received/> or <sent/>.
func wrap(kind string, bare, to jid.JID, orig *xmpp.Element) *xmpp.Element {
	m := xmpp.NewElement(xmpp.NSClient, "message", "from", bare.String(), "to", to.String(), "type", orig.Attr("type"))
	m.AddChild(NS, kind).AddChild(nsForward, "forwarded").Append(orig)
	return m
}
