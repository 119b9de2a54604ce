package pep

import (
	"context"
	"errors"
	"strconv"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Item is an item of a node as the owner's code sees it.
type Item struct {
	ID      string
	Payload *xmpp.Element
}

// errNoNode is the answer about a node that does not exist.
var errNoNode = xmpp.NewStanzaError(xmpp.CondItemNotFound, "no such node")

// loadNode returns the configuration of an owner's node; ok is false when
// the node does not exist.
func (s *Service) loadNode(ctx context.Context, owner, node string) (nodeConfig, bool, error) {
	n, err := s.store.PEPNode(ctx, owner, node)
	if errors.Is(err, storage.ErrNotFound) {
		return nodeConfig{}, false, nil
	}
	if err != nil {
		return nodeConfig{}, false, err
	}
	c, err := decodeConfig(n.Config)
	if err != nil {
		s.log.Error("stored PEP node configuration is unreadable; using defaults", "user", owner, "node", node, "err", err)
	}
	return c, true, nil
}

// mayAccess reports whether who may retrieve the items of an owner's node
// with configuration c, as a stanza error when not.
func (s *Service) mayAccess(ctx context.Context, owner string, who jid.JID, c nodeConfig) (*xmpp.StanzaError, error) {
	if who.Localpart() == owner && who.Domainpart() == s.router.Domain() {
		return nil, nil
	}
	switch c.AccessModel {
	case AccessOpen:
		return nil, nil
	case AccessPresence:
		ok, err := s.subscribed(ctx, owner, who.Bare().String())
		if err != nil || ok {
			return nil, err
		}
		return pubsubError(xmpp.CondNotAuthorized, "presence-subscription-required", ""), nil
	default:
		return pubsubError(xmpp.CondNotAllowed, "closed-node", ""), nil
	}
}

// subscribed reports whether contact (a bare JID) is subscribed to the
// owner's presence.
func (s *Service) subscribed(ctx context.Context, owner, contact string) (bool, error) {
	it, err := s.store.RosterItem(ctx, owner, contact)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth, nil
}

// publishIQ handles <publish/> with optional <publish-options/>.
func (s *Service) publishIQ(ctx context.Context, iq *router.Stanza, pub, opts *xmpp.Element) error {
	node := pub.Attr("node")
	if err := validNode(node); err != nil {
		return err
	}
	if !isOwner(iq) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "only the account owner publishes to its nodes")
	}
	var items []*xmpp.Element
	for _, el := range pub.Elements() {
		if el.Is(NS, "item") {
			items = append(items, el)
		}
	}
	switch {
	case len(items) == 0:
		return pubsubError(xmpp.CondBadRequest, "item-required", "")
	case len(items) > 1:
		return pubsubError(xmpp.CondBadRequest, "invalid-payload", "publish one item at a time")
	}
	item := items[0]
	payloads := item.Elements()
	switch {
	case len(payloads) == 0:
		return pubsubError(xmpp.CondBadRequest, "payload-required", "")
	case len(payloads) > 1:
		return pubsubError(xmpp.CondBadRequest, "invalid-payload", "an item holds exactly one payload element")
	}
	id := item.Attr("id")
	if len(id) > MaxItemID {
		return pubsubError(xmpp.CondNotAcceptable, "", "item ids are limited to 1024 bytes")
	}
	var options []formValue
	if opts != nil {
		if x := opts.Child(xmpp.NSDataForms, "x"); x != nil {
			_, formType, values := readForm(x)
			if formType != "" && formType != formPublishOptions {
				return xmpp.NewStanzaError(xmpp.CondBadRequest, "publish-options must have FORM_TYPE "+formPublishOptions)
			}
			options = values
		}
	}
	id, err := s.publish(ctx, iq.From, node, id, payloads[0], options)
	if err != nil {
		return err
	}
	res := xmpp.NewElement(NS, "pubsub")
	res.AddChild(NS, "publish", "node", node).AddChild(NS, "item", "id", id)
	s.router.Result(ctx, iq, res)
	return nil
}

// Publish publishes payload as item id ("" for a new random id) to the
// node of the publisher's account, creating the node with the default
// configuration when needed, and notifies the contacts who want it. It
// returns the item id. Features of the server (such as keeping vCard and
// PEP avatars in step) use it.
func (s *Service) Publish(ctx context.Context, publisher jid.JID, node, id string, payload *xmpp.Element) (string, error) {
	if err := validNode(node); err != nil {
		return "", err
	}
	return s.publish(ctx, publisher, node, id, payload, nil)
}

// publish stores an item and sends its notifications. The publisher is a
// JID of the owner's account.
func (s *Service) publish(ctx context.Context, publisher jid.JID, node, id string, payload *xmpp.Element, options []formValue) (_ string, err error) {
	owner := publisher.Localpart()
	if h := s.opts.OnPublish; h != nil {
		// Deferred before the lock's release, so it runs after it.
		defer func() {
			if err == nil {
				h(ctx, owner, node, id, payload)
			}
		}()
	}
	defer s.lock(owner)()
	c, exists, err := s.loadNode(ctx, owner, node)
	if err != nil {
		return "", err
	}
	if exists {
		if err := satisfies(s.fields, c, options, s.opts.MaxItems); err != nil {
			return "", pubsubError(xmpp.CondConflict, "precondition-not-met", err.Error())
		}
	} else {
		// Auto-create (XEP-0060 §7.1.4), with the publish options as the
		// configuration (§7.1.5).
		c = defaultConfig()
		if err := apply(s.fields, &c, options); err != nil {
			return "", pubsubError(xmpp.CondConflict, "precondition-not-met", err.Error())
		}
		if err := s.createNode(ctx, owner, node, c); err != nil {
			return "", err
		}
	}
	if id == "" {
		id = randomID()
	}
	it := storage.PEPItem{ID: id, Publisher: publisher.String(), Payload: payload.Bytes()}
	if err := s.store.PutPEPItem(ctx, owner, node, it, c.keep(s.opts.MaxItems)); err != nil {
		return "", err
	}
	if c.DeliverNotifications {
		s.notify(ctx, owner, node, c, itemsEvent(node, c, Item{ID: id, Payload: payload}))
	}
	return id, nil
}

// createNode stores a new node, mapping the storage errors to stanza errors.
func (s *Service) createNode(ctx context.Context, owner, node string, c nodeConfig) error {
	err := s.store.CreatePEPNode(ctx, owner, storage.PEPNode{Name: node, Config: c.encode()}, s.opts.MaxNodes)
	switch {
	case errors.Is(err, storage.ErrExists):
		return xmpp.NewStanzaError(xmpp.CondConflict, "the node exists")
	case errors.Is(err, storage.ErrQuotaExceeded):
		return pubsubError(xmpp.CondNotAllowed, "max-nodes-exceeded",
			"an account may have "+strconv.Itoa(s.opts.MaxNodes)+" nodes")
	}
	return err
}

// itemsEvent returns the <event/> announcing published items.
func itemsEvent(node string, c nodeConfig, items ...Item) *xmpp.Element {
	ev := xmpp.NewElement(NSEvent, "event")
	its := ev.AddChild(NSEvent, "items", "node", node)
	for _, it := range items {
		el := its.AddChild(NSEvent, "item", "id", it.ID)
		if c.DeliverPayloads && it.Payload != nil {
			el.Append(it.Payload)
		}
	}
	return ev
}

// decodeItem parses a stored item.
func decodeItem(it storage.PEPItem) (Item, error) {
	p, err := xmpp.ParseElement(it.Payload)
	if err != nil {
		return Item{}, err
	}
	return Item{ID: it.ID, Payload: p}, nil
}

// items handles <items/>: all items, the newest max_items, or some by id.
func (s *Service) items(ctx context.Context, iq *router.Stanza, req *xmpp.Element) error {
	node := req.Attr("node")
	if err := validNode(node); err != nil {
		return err
	}
	owner := iq.To.Localpart()
	c, exists, err := s.loadNode(ctx, owner, node)
	if err != nil {
		return err
	}
	if !exists {
		return errNoNode
	}
	if serr, err := s.mayAccess(ctx, owner, iq.From, c); err != nil || serr != nil {
		if err != nil {
			return err
		}
		return serr
	}
	max := 0
	if v := req.Attr("max_items"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return xmpp.NewStanzaError(xmpp.CondBadRequest, "max_items must be a positive number")
		}
		max = n
	}
	var ids []string
	for _, el := range req.Elements() {
		if el.Is(NS, "item") {
			if id := el.Attr("id"); id != "" {
				ids = append(ids, id)
			}
		}
	}
	stored, err := s.store.PEPItems(ctx, owner, node, ids, max)
	if err != nil {
		return err
	}
	if len(ids) > 0 && len(stored) == 0 {
		return xmpp.NewStanzaError(xmpp.CondItemNotFound, "no such item")
	}
	res := xmpp.NewElement(NS, "pubsub")
	list := res.AddChild(NS, "items", "node", node)
	for _, st := range stored {
		it, err := decodeItem(st)
		if err != nil {
			s.log.Error("stored PEP item is unreadable; skipped", "user", owner, "node", node, "item", st.ID, "err", err)
			continue
		}
		list.AddChild(NS, "item", "id", it.ID).Append(it.Payload)
	}
	s.router.Result(ctx, iq, res)
	return nil
}

// retract handles <retract/>.
func (s *Service) retract(ctx context.Context, iq *router.Stanza, req *xmpp.Element) error {
	node := req.Attr("node")
	if err := validNode(node); err != nil {
		return err
	}
	if !isOwner(iq) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "only the account owner retracts items")
	}
	var ids []string
	for _, el := range req.Elements() {
		if el.Is(NS, "item") && el.Attr("id") != "" {
			ids = append(ids, el.Attr("id"))
		}
	}
	if len(ids) == 0 {
		return pubsubError(xmpp.CondBadRequest, "item-required", "")
	}
	owner := iq.To.Localpart()
	unlock := s.lock(owner)
	defer unlock()
	c, exists, err := s.loadNode(ctx, owner, node)
	if err != nil {
		return err
	}
	if !exists {
		return errNoNode
	}
	gone, err := s.store.DeletePEPItems(ctx, owner, node, ids)
	if err != nil {
		return err
	}
	if len(gone) == 0 {
		return xmpp.NewStanzaError(xmpp.CondItemNotFound, "no such item")
	}
	notify := c.NotifyRetract
	if v := req.Attr("notify"); v != "" {
		notify, _ = parseBool(v)
	}
	if notify && c.DeliverNotifications {
		ev := xmpp.NewElement(NSEvent, "event")
		its := ev.AddChild(NSEvent, "items", "node", node)
		for _, id := range gone {
			its.AddChild(NSEvent, "retract", "id", id)
		}
		s.notify(ctx, owner, node, c, ev)
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

// create handles <create/> with an optional <configure/>.
func (s *Service) create(ctx context.Context, iq *router.Stanza, req, configure *xmpp.Element) error {
	node := req.Attr("node")
	if node == "" {
		return pubsubError(xmpp.CondNotAcceptable, "nodeid-required", "instant nodes are not supported")
	}
	if err := validNode(node); err != nil {
		return err
	}
	if !isOwner(iq) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "only the account owner creates its nodes")
	}
	c := defaultConfig()
	if configure != nil {
		if x := configure.Child(xmpp.NSDataForms, "x"); x != nil {
			if err := s.readConfigForm(x, &c); err != nil {
				return err
			}
		}
	}
	owner := iq.To.Localpart()
	defer s.lock(owner)()
	if err := s.createNode(ctx, owner, node, c); err != nil {
		return err
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

// readConfigForm applies a submitted node_config form to c.
func (s *Service) readConfigForm(x *xmpp.Element, c *nodeConfig) error {
	typ, formType, values := readForm(x)
	if typ != "submit" {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "a configuration form of type submit is expected")
	}
	if formType != "" && formType != formNodeConfig {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "the configuration form must have FORM_TYPE "+formNodeConfig)
	}
	if err := apply(s.fields, c, values); err != nil {
		return pubsubError(xmpp.CondNotAcceptable, "invalid-options", err.Error())
	}
	return nil
}

// getConfig handles <configure/> gets of the owner.
func (s *Service) getConfig(ctx context.Context, iq *router.Stanza, req *xmpp.Element) error {
	node := req.Attr("node")
	if err := validNode(node); err != nil {
		return err
	}
	c, exists, err := s.loadNode(ctx, iq.To.Localpart(), node)
	if err != nil {
		return err
	}
	if !exists {
		return errNoNode
	}
	res := xmpp.NewElement(NSOwner, "pubsub")
	res.AddChild(NSOwner, "configure", "node", node).Append(configForm(s.fields, c, "form"))
	s.router.Result(ctx, iq, res)
	return nil
}

// setConfig handles <configure/> sets of the owner.
func (s *Service) setConfig(ctx context.Context, iq *router.Stanza, req *xmpp.Element) error {
	node := req.Attr("node")
	if err := validNode(node); err != nil {
		return err
	}
	x := req.Child(xmpp.NSDataForms, "x")
	if x == nil {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "a configuration form is expected")
	}
	owner := iq.To.Localpart()
	defer s.lock(owner)()
	c, exists, err := s.loadNode(ctx, owner, node)
	if err != nil {
		return err
	}
	if !exists {
		return errNoNode
	}
	if x.Attr("type") == "cancel" {
		s.router.Result(ctx, iq, nil)
		return nil
	}
	if err := s.readConfigForm(x, &c); err != nil {
		return err
	}
	if err := s.store.SetPEPNodeConfig(ctx, owner, node, c.encode(), c.keep(s.opts.MaxItems)); err != nil {
		return err
	}
	if c.NotifyConfig && c.DeliverNotifications {
		ev := xmpp.NewElement(NSEvent, "event")
		ev.AddChild(NSEvent, "configuration", "node", node)
		s.notify(ctx, owner, node, c, ev)
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

// deleteNode handles <delete/>.
func (s *Service) deleteNode(ctx context.Context, iq *router.Stanza, req *xmpp.Element) error {
	return s.ownerAction(ctx, iq, req, "delete",
		func(c nodeConfig) bool { return c.NotifyDelete && c.DeliverNotifications },
		func(owner, node string) error {
			err := s.store.DeletePEPNode(ctx, owner, node)
			if errors.Is(err, storage.ErrNotFound) {
				return errNoNode
			}
			return err
		})
}

// purge handles <purge/>.
func (s *Service) purge(ctx context.Context, iq *router.Stanza, req *xmpp.Element) error {
	return s.ownerAction(ctx, iq, req, "purge",
		func(c nodeConfig) bool { return c.DeliverNotifications },
		func(owner, node string) error { return s.store.PurgePEPNode(ctx, owner, node) })
}

// ownerAction runs act on an existing node of the account, under the
// account's lock, then sends the <event/> child named event to the
// node's subscribers when notify says so, and answers the request.
func (s *Service) ownerAction(ctx context.Context, iq *router.Stanza, req *xmpp.Element, event string,
	notify func(nodeConfig) bool, act func(owner, node string) error) error {
	node := req.Attr("node")
	if err := validNode(node); err != nil {
		return err
	}
	owner := iq.To.Localpart()
	defer s.lock(owner)()
	c, exists, err := s.loadNode(ctx, owner, node)
	if err != nil {
		return err
	}
	if !exists {
		return errNoNode
	}
	if err := act(owner, node); err != nil {
		return err
	}
	if notify(c) {
		ev := xmpp.NewElement(NSEvent, "event")
		ev.AddChild(NSEvent, event, "node", node)
		s.notify(ctx, owner, node, c, ev)
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

// affiliations answers affiliation queries: the owner owns every node;
// others have no affiliation.
func (s *Service) affiliations(ctx context.Context, iq *router.Stanza, req *xmpp.Element, ns string) error {
	owner := iq.To.Localpart()
	node := req.Attr("node")
	res := xmpp.NewElement(ns, "pubsub")
	list := res.AddChild(ns, "affiliations", "node", node)
	if ns == NSOwner {
		// The affiliations of one node (XEP-0060 §8.9.1).
		if err := validNode(node); err != nil {
			return err
		}
		if _, exists, err := s.loadNode(ctx, owner, node); err != nil || !exists {
			if err != nil {
				return err
			}
			return errNoNode
		}
		list.AddChild(ns, "affiliation", "jid", s.bareJID(owner).String(), "affiliation", "owner")
		s.router.Result(ctx, iq, res)
		return nil
	}
	if isOwner(iq) {
		// The requester's own affiliations (XEP-0060 §5.7).
		nodes, err := s.store.PEPNodes(ctx, owner)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if node == "" || n.Name == node {
				list.AddChild(ns, "affiliation", "node", n.Name, "affiliation", "owner")
			}
		}
	}
	s.router.Result(ctx, iq, res)
	return nil
}
