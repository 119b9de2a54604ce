package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"strconv"

	"mellium.im/xmpp/jid"

	"wren.im/wren/adhoc"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// publish handles a XEP-0357 notification: a pubsub publish to a device's
// node with the device's secret in the publish options. Error replies do
// not repeat the request (and its secret).
func (g *Gateway) publish(ctx context.Context, s *router.Stanza, ps *xmpp.Element) {
	pub := ps.Child(NSPubSub, "publish")
	node := ""
	if pub != nil {
		node = pub.Attr("node")
	}
	if node == "" {
		g.replyError(ctx, s, nil, xmpp.NewStanzaError(xmpp.CondBadRequest, "expected <publish node='...'/> with the node of a registered device"))
		return
	}
	dev, err := g.store.PushDevice(ctx, node)
	if errors.Is(err, storage.ErrNotFound) {
		g.log.Debug("push to an unknown node refused", "from", s.From.String(), "node", node)
		g.replyError(ctx, s, nil, xmpp.NewStanzaError(xmpp.CondItemNotFound, "no device is registered at this node; the device must register again"))
		return
	}
	if err != nil {
		g.log.Error("cannot look up a push device; the publisher will retry", "node", node, "err", err)
		g.replyError(ctx, s, nil, &xmpp.StanzaError{Type: xmpp.ErrTypeWait, Condition: xmpp.CondInternalServerError, Text: "the push gateway cannot read its database; try again later"})
		return
	}
	if !publisherAllowed(s.From, dev) {
		g.log.Info("push refused: the publisher is not the server of the device's owner",
			"from", s.From.String(), "owner", dev.Owner, "node", node)
		g.replyError(ctx, s, nil, xmpp.NewStanzaError(xmpp.CondForbidden, "only the server of the account that registered this device may publish to it"))
		return
	}
	secret := ""
	if po := ps.Child(NSPubSub, "publish-options"); po != nil {
		secret = adhoc.FindForm(po).Value("secret")
	}
	if secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(dev.Secret)) != 1 {
		g.log.Info("push refused: missing or wrong secret", "from", s.From.String(), "owner", dev.Owner, "node", node)
		g.replyError(ctx, s, nil, xmpp.NewStanzaError(xmpp.CondForbidden, "missing or wrong secret in the publish options"))
		return
	}
	if g.senders[dev.Provider] == nil {
		g.replyError(ctx, s, nil, xmpp.NewStanzaError(xmpp.CondFeatureNotImplemented,
			"the operator of this push gateway has not configured "+providerName(dev.Provider)))
		return
	}
	c := parseSummary(pub)
	replyCtx := context.WithoutCancel(ctx)
	accepted := g.enqueue(dev, c, func(o outcome) {
		if o.serr != nil {
			g.replyError(replyCtx, s, nil, o.serr)
			return
		}
		g.reply(replyCtx, s, nil)
	})
	if !accepted {
		g.dropped(ctx, dev, c)
		g.replyError(ctx, s, nil, &xmpp.StanzaError{Type: xmpp.ErrTypeWait, Condition: xmpp.CondResourceConstraint,
			Text: "the push gateway's queue is full; try again later"})
	}
}

// dropped records a push refused because the queue was full.
func (g *Gateway) dropped(ctx context.Context, dev storage.PushDevice, c content) {
	now := g.now()
	g.mu.Lock()
	warn := now.Sub(g.lastWarn) >= warnInterval
	if warn {
		g.lastWarn = now
	}
	g.mu.Unlock()
	if warn {
		g.log.Warn("push gateway queue is full: notifications are refused (publishers retry); raise push_gateway.queue_size or push_gateway.workers, or check that APNs and FCM answer quickly",
			"queue_size", g.cfg.QueueSize, "workers", g.cfg.Workers)
	}
	g.metrics.Pushed(dev.Provider, storage.PushDroppedQueueFull)
	if _, err := g.store.AddPushDelivery(ctx, storage.PushDelivery{
		Time: now, Owner: dev.Owner, DeviceID: dev.DeviceID, Provider: dev.Provider, Node: dev.Node,
		Outcome: storage.PushDroppedQueueFull, Reason: "queue full", Important: c.important,
	}); err != nil {
		g.log.Error("cannot store a push delivery record", "owner", dev.Owner, "device", dev.DeviceID, "err", err)
	}
}

// publisherAllowed reports whether from may publish to dev: it must be of
// the domain of the device's owner (of the group chat's, for a group chat
// registration), which is where the owner enabled push.
func publisherAllowed(from jid.JID, dev storage.PushDevice) bool {
	owner := dev.Owner
	if dev.MUC != "" {
		owner = dev.MUC
	}
	o, err := jid.Parse(owner)
	return err == nil && from.Domainpart() != "" && from.Domainpart() == o.Domainpart()
}

// parseSummary reads the XEP-0357 summary form of a publish. A push is
// important when the summary has a last-message-body: that is how
// Prosody's mod_cloud_notify and Wren mark the stanzas that deserve an
// alert (with a placeholder body when the real one is withheld).
func parseSummary(pub *xmpp.Element) content {
	var n *xmpp.Element
	if item := pub.Child(NSPubSub, "item"); item != nil {
		n = item.Child(NSPush, "notification")
	}
	if n == nil {
		return content{}
	}
	for _, x := range n.Elements() {
		f := adhoc.ParseForm(x)
		if f == nil || f.FormType() != NSPushSummary {
			continue
		}
		c := content{sender: f.Value("last-message-sender"), body: f.Value("last-message-body")}
		if v, err := strconv.Atoi(f.Value("message-count")); err == nil && v > 0 {
			c.count = v
		}
		c.important = c.body != ""
		return c
	}
	return content{}
}
