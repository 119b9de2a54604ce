package c2s

import (
	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

// IQ spoofing protection: a session only receives an IQ result or error
// from an entity it sent the matching request (same id) to. Anything else
// could be a forged answer and is dropped.

// maxPendingIQ bounds the requests remembered per session; the oldest are
// forgotten first.
const maxPendingIQ = 256

type iqKey struct{ id, peer string }

// iqPeer normalises the address of a request's target or a reply's sender:
// no address means the user's own account.
func (s *Session) iqPeer(addr string) string {
	if addr == "" {
		return s.jid.Bare().String()
	}
	j, err := jid.Parse(addr)
	if err != nil {
		return addr
	}
	return j.String()
}

// sentIQ records an IQ request the client sent.
func (s *Session) sentIQ(el *xmpp.Element) {
	k := iqKey{id: el.Attr("id"), peer: s.iqPeer(el.Attr("to"))}
	s.iqMu.Lock()
	defer s.iqMu.Unlock()
	if s.pendingIQ == nil {
		s.pendingIQ = map[iqKey]struct{}{}
	}
	if _, ok := s.pendingIQ[k]; ok {
		return
	}
	if len(s.iqOrder) >= maxPendingIQ {
		delete(s.pendingIQ, s.iqOrder[0])
		s.iqOrder = s.iqOrder[1:]
	}
	s.pendingIQ[k] = struct{}{}
	s.iqOrder = append(s.iqOrder, k)
}

// expectedReply reports whether an IQ result or error answers a request
// the client sent to its sender, and forgets the request.
func (s *Session) expectedReply(el *xmpp.Element) bool {
	k := iqKey{id: el.Attr("id"), peer: s.iqPeer(el.Attr("from"))}
	s.iqMu.Lock()
	defer s.iqMu.Unlock()
	if _, ok := s.pendingIQ[k]; !ok {
		return false
	}
	delete(s.pendingIQ, k)
	if len(s.pendingIQ) == 0 {
		// Nothing outstanding: an idle session keeps no map.
		s.pendingIQ, s.iqOrder = nil, nil
		return true
	}
	for i, o := range s.iqOrder {
		if o == k {
			s.iqOrder = append(s.iqOrder[:i], s.iqOrder[i+1:]...)
			break
		}
	}
	return true
}
