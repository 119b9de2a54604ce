package blocking

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// blocklistInterest is implemented by sessions that know whether their
// client fetched the blocklist: XEP-0191 pushes changes only to those.
// Sessions that do not implement it get every push.
type blocklistInterest interface {
	BlocklistRequested() bool
	SetBlocklistRequested()
}

// HandleIQ is the account IQ handler for NS: a user gets the blocklist,
// blocks, unblocks, or unblocks everybody.
func (s *Service) HandleIQ(ctx context.Context, iq *router.Stanza) error {
	if !iq.To.Bare().Equal(iq.From.Bare()) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "you can only read and change your own blocklist")
	}
	user := iq.From.Localpart()
	payload := iq.El.FirstElement()
	switch {
	case iq.Type() == "get" && payload.Is(NS, "blocklist"):
		return s.get(ctx, iq, user)
	case iq.Type() == "set" && payload.Is(NS, "block"):
		items, err := parseItems(payload)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return xmpp.NewStanzaError(xmpp.CondBadRequest, "<block/> needs at least one <item/>")
		}
		return s.block(ctx, iq, user, items)
	case iq.Type() == "set" && payload.Is(NS, "unblock"):
		items, err := parseItems(payload)
		if err != nil {
			return err
		}
		return s.unblock(ctx, iq, user, items)
	}
	return xmpp.NewStanzaError(xmpp.CondBadRequest, "expected <blocklist/> in a get, or <block/> or <unblock/> in a set")
}

// parseItems returns the normalised JIDs of the <item/> children of a
// <block/> or <unblock/>, without duplicates.
func parseItems(el *xmpp.Element) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, it := range el.Elements() {
		if !it.Is(NS, "item") {
			continue
		}
		v := it.Attr("jid")
		if v == "" {
			return nil, xmpp.NewStanzaError(xmpp.CondBadRequest, "an <item/> needs a 'jid' attribute")
		}
		j, err := jid.Parse(v)
		if err != nil {
			return nil, xmpp.NewStanzaError(xmpp.CondJIDMalformed, fmt.Sprintf("%q is not a valid JID", v))
		}
		n := j.String()
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// get answers a blocklist request and marks the session as interested in
// pushes.
func (s *Service) get(ctx context.Context, iq *router.Stanza, user string) error {
	l, err := s.load(ctx, user)
	if err != nil {
		return err
	}
	if sess, ok := iq.Origin.(blocklistInterest); ok {
		sess.SetBlocklistRequested()
	}
	res := xmpp.NewElement(NS, "blocklist")
	if l != nil {
		for _, it := range l.items {
			res.AddChild(NS, "item", "jid", it)
		}
	}
	s.router.Result(ctx, iq, res)
	return nil
}

// block adds items to the user's blocklist, answers, pushes the change to
// the user's sessions and applies the presence effects to the JIDs that
// were not blocked yet.
func (s *Service) block(ctx context.Context, iq *router.Stanza, user string, items []string) error {
	sh := s.cache.shard(user)
	sh.edit.Lock()
	old, err := s.load(ctx, user)
	if err != nil {
		sh.edit.Unlock()
		return err
	}
	updated, added := old.with(items)
	if s.cfg.MaxItems > 0 && updated.len() > s.cfg.MaxItems {
		sh.edit.Unlock()
		return s.full()
	}
	if len(added) > 0 {
		if err := s.store.BlockJIDs(ctx, user, added, s.cfg.MaxItems); err != nil {
			sh.edit.Unlock()
			if errors.Is(err, storage.ErrQuotaExceeded) {
				return s.full()
			}
			return fmt.Errorf("block %d JIDs for %s: %w", len(added), user, err)
		}
		s.cache.set(user, updated)
	}
	sh.edit.Unlock()

	s.router.Result(ctx, iq, nil)
	s.push(user, "block", items)
	if len(added) > 0 {
		s.log.Debug("user blocked addresses", "user", user, "jids", added)
		s.blocked(ctx, user, added)
	}
	return nil
}

// full is the error for a block that would overflow the blocklist.
func (s *Service) full() error {
	return xmpp.NewStanzaError(xmpp.CondNotAcceptable,
		fmt.Sprintf("your blocklist is full: it holds at most %d entries", s.cfg.MaxItems))
}

// unblock removes items from the user's blocklist (all of them when items
// is empty), answers, pushes the change and applies the presence effects
// to the JIDs that were blocked.
func (s *Service) unblock(ctx context.Context, iq *router.Stanza, user string, items []string) error {
	sh := s.cache.shard(user)
	sh.edit.Lock()
	old, err := s.load(ctx, user)
	if err != nil {
		sh.edit.Unlock()
		return err
	}
	var updated *list
	var removed []string
	if len(items) == 0 {
		if old != nil {
			removed = old.items
		}
	} else {
		updated, removed = old.without(items)
	}
	if len(removed) > 0 {
		if len(items) == 0 {
			_, err = s.store.UnblockAll(ctx, user)
		} else {
			_, err = s.store.UnblockJIDs(ctx, user, removed)
		}
		if err != nil {
			sh.edit.Unlock()
			return fmt.Errorf("unblock %d JIDs for %s: %w", len(removed), user, err)
		}
		s.cache.set(user, updated)
	}
	sh.edit.Unlock()

	s.router.Result(ctx, iq, nil)
	s.push(user, "unblock", items)
	if len(removed) > 0 {
		s.log.Debug("user unblocked addresses", "user", user, "jids", removed)
		s.unblocked(ctx, user, removed)
	}
	return nil
}

// push sends the change (a <block/> or <unblock/> with items; an empty
// <unblock/> for unblock all) to the user's sessions whose client fetched
// the blocklist, as an IQ set from the user's account (XEP-0191 §3.3).
// Sessions that cannot tell whether their client did get it anyway.
func (s *Service) push(user, op string, items []string) {
	for _, sess := range s.router.Sessions(user) {
		if bi, ok := sess.(blocklistInterest); ok && !bi.BlocklistRequested() {
			continue
		}
		id := "blocklist-push-" + strconv.FormatUint(s.pushID.Add(1), 10)
		iq := xmpp.NewElement(xmpp.NSClient, "iq", "type", "set", "id", id, "to", sess.JID().String())
		el := iq.AddChild(NS, op)
		for _, it := range items {
			el.AddChild(NS, "item", "jid", it)
		}
		sess.Deliver(iq)
	}
}
