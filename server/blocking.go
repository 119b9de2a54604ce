package server

import (
	"wren.im/wren/blocking"
	"wren.im/wren/router"
)

// buildBlocking wires blocking (XEP-0191) into the server: its filter
// sees every stanza before it is routed, its IQ handler serves the
// blocklist on accounts, and the server advertises the feature (clients
// such as Conversations look for it on the server's disco#info).
func (s *Server) buildBlocking() error {
	b := blocking.New(blocking.Config{MaxItems: s.cfg.Blocking.MaxItems}, s.store, s.router, s.log)
	s.blocking = b
	s.router.SetFilter(b.Filter)
	s.router.HandleIQ(router.ToAccount, blocking.NS, b.HandleIQ)
	s.disco.AddServerFeature(blocking.NS)
	return nil
}
