// Package vcard stores and serves vcard-temp (XEP-0054) documents.
package vcard

import (
	"context"
	"errors"
	"fmt"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Service answers vCard requests to accounts.
type Service struct {
	store  storage.VCards
	router *router.Router
	onSet  func(ctx context.Context, owner string, vcard *xmpp.Element)
}

// OnSet registers a function run after a user stored a new vCard (avatar
// conversion publishes its photo to PEP).
func (s *Service) OnSet(f func(ctx context.Context, owner string, vcard *xmpp.Element)) {
	s.onSet = f
}

// New registers the vCard handler.
func New(store storage.VCards, r *router.Router) *Service {
	s := &Service{store: store, router: r}
	r.HandleIQ(router.ToAccount, xmpp.NSVCard, s.handle)
	return s
}

func (s *Service) handle(ctx context.Context, iq *router.Stanza) error {
	owner := iq.To.Localpart()
	v := iq.El.Child(xmpp.NSVCard, "vCard")
	if v == nil {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "expected <vCard xmlns='vcard-temp'/>")
	}
	if iq.Type() == "set" {
		if !iq.To.Bare().Equal(iq.From.Bare()) {
			return xmpp.NewStanzaError(xmpp.CondForbidden, "you can only change your own vCard")
		}
		if err := s.store.SetVCard(ctx, owner, v.Bytes()); err != nil {
			return fmt.Errorf("store vCard of %s: %w", owner, err)
		}
		if s.onSet != nil {
			// Before the result: the client sees its avatar published
			// once the vCard set is acknowledged.
			s.onSet(ctx, owner, v)
		}
		s.router.Result(ctx, iq, nil)
		return nil
	}
	b, err := s.store.VCard(ctx, owner)
	if errors.Is(err, storage.ErrNotFound) {
		s.router.Result(ctx, iq, xmpp.NewElement(xmpp.NSVCard, "vCard"))
		return nil
	}
	if err != nil {
		return fmt.Errorf("load vCard of %s: %w", owner, err)
	}
	el, err := xmpp.ParseElement(b)
	if err != nil {
		return fmt.Errorf("parse stored vCard of %s: %w", owner, err)
	}
	s.router.Result(ctx, iq, el)
	return nil
}
