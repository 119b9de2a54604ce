package server

import (
	"wren.im/wren/disco"
	"wren.im/wren/pep"
)

// buildPEP wires personal eventing (XEP-0163) and entity capabilities (XEP-0115) into the server.
func (s *Server) buildPEP() error {
	svc := pep.New(s.router, s.store, pep.Options{
		MaxNodes: s.cfg.PEP.MaxNodes,
		MaxItems: s.cfg.PEP.MaxItems,
		Logger:   s.log.With("feature", "pep"),
	})
	// XEP-0163 §6.1: accounts are PEP services; the server says so too,
	// so that clients' server information pages list it.
	id := disco.Identity{Category: "pubsub", Type: "pep"}
	s.disco.AddAccountIdentity(id)
	s.disco.AddServerIdentity(id)
	s.disco.AddAccountFeature(svc.Features()...)
	s.disco.AddServerFeature(svc.Features()...)
	return nil
}
