package server

import (
	"sync/atomic"

	"wren.im/wren/xmpp"
)

// capsFeature caches the serialised-once caps element of the stream
// features; the server's disco information only changes at start.
type capsFeature struct {
	el atomic.Pointer[xmpp.Element]
}

// streamFeatures is the c2s hook adding the server's entity capabilities
// (XEP-0115 §6.3) to the features offered after authentication, so that
// clients can cache what the server supports.
func (s *Server) streamFeatures() []*xmpp.Element {
	el := s.caps.el.Load()
	if el == nil {
		el = s.disco.Caps()
		s.caps.el.Store(el)
	}
	return []*xmpp.Element{el}
}

// accountDeleted makes the features forget what they cached about a
// deleted account, so that an account created again under the same name
// starts clean.
func (s *Server) accountDeleted(user string) {
	if s.history != nil && s.history.archive != nil {
		s.history.archive.Forget(user)
	}
	if s.blocking != nil {
		s.blocking.Forget(user)
	}
	if s.push != nil {
		s.push.Forget(user)
	}
	if s.avatars != nil {
		s.avatars.Forget(user)
	}
}
