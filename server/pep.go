package server

import (
	"context"

	"wren.im/wren/avatar"
	"wren.im/wren/disco"
	"wren.im/wren/pep"
	"wren.im/wren/xmpp"
)

// buildPEP wires personal eventing (XEP-0163) and entity capabilities (XEP-0115) into the server.
func (s *Server) buildPEP() error {
	var av *avatar.Service
	svc := pep.New(s.router, s.store, pep.Options{
		MaxNodes: s.cfg.PEP.MaxNodes,
		MaxItems: s.cfg.PEP.MaxItems,
		Logger:   s.log.With("feature", "pep"),
		OnPublish: func(ctx context.Context, owner, node, id string, payload *xmpp.Element) {
			av.PEPPublished(ctx, owner, node, id, payload)
		},
	})
	// XEP-0398: PEP and vCard avatars kept in step, the avatar hash in
	// the user's presence.
	av = avatar.New(s.store, svc, s.cfg.Domain, s.log.With("feature", "avatar"))
	s.avatars = av
	s.vcards.OnSet(av.VCardSet)
	s.presence.SetDecorator(av.DecoratePresence)
	s.disco.AddAccountFeature(avatar.NS)
	// XEP-0163 §6.1: accounts are PEP services; the server says so too,
	// so that clients' server information pages list it.
	id := disco.Identity{Category: "pubsub", Type: "pep"}
	s.disco.AddAccountIdentity(id)
	s.disco.AddServerIdentity(id)
	s.disco.AddAccountFeature(svc.Features()...)
	s.disco.AddServerFeature(svc.Features()...)
	return nil
}
