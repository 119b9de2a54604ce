// Package privatexml implements private XML storage (XEP-0049), which
// older clients use for bookmarks and settings.
package privatexml

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Service answers jabber:iq:private requests.
type Service struct {
	store  storage.PrivateXML
	router *router.Router
}

// New registers the private storage handler.
func New(store storage.PrivateXML, r *router.Router) *Service {
	s := &Service{store: store, router: r}
	r.HandleIQ(router.ToAccount, xmpp.NSPrivate, s.handle)
	return s
}

func (s *Service) handle(ctx context.Context, iq *router.Stanza) error {
	if !iq.To.Bare().Equal(iq.From.Bare()) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "private storage belongs to its owner only")
	}
	user := iq.From.Localpart()
	q := iq.El.Child(xmpp.NSPrivate, "query")
	if q == nil {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "")
	}
	children := q.Elements()
	if len(children) == 0 {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "name the element to store or fetch")
	}
	for _, c := range children {
		if c.Space == "" || strings.HasPrefix(c.Space, "jabber:") || c.Space == xmpp.NSClient {
			return xmpp.NewStanzaError(xmpp.CondNotAcceptable, "namespace "+c.Space+" cannot be used for private storage")
		}
	}
	if iq.Type() == "set" {
		for _, c := range children {
			if err := s.store.SetPrivateXML(ctx, user, c.Space, c.Bytes()); err != nil {
				return fmt.Errorf("store private XML %s of %s: %w", c.Space, user, err)
			}
		}
		s.router.Result(ctx, iq, nil)
		return nil
	}
	if len(children) != 1 {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "fetch one element at a time")
	}
	want := children[0]
	res := xmpp.NewElement(xmpp.NSPrivate, "query")
	b, err := s.store.PrivateXML(ctx, user, want.Space)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		res.Append(xmpp.NewElement(want.Space, want.Local))
	case err != nil:
		return fmt.Errorf("load private XML %s of %s: %w", want.Space, user, err)
	default:
		el, err := xmpp.ParseElement(b)
		if err != nil {
			return fmt.Errorf("parse stored private XML of %s: %w", user, err)
		}
		res.Append(el)
	}
	s.router.Result(ctx, iq, res)
	return nil
}
