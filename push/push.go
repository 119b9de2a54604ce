// Package push implements push notifications on the server side (XEP-0357):
// clients register an app server and node, and when a stanza arrives for a
// device that has no live session (offline, or hibernated by stream
// management) the server publishes a notification to that app server, which
// wakes the device. The app server may be remote or Wren's own push gateway
// (package push/gateway).
package push

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Namespaces of XEP-0357 and the pubsub protocol it publishes with.
const (
	NS              = "urn:xmpp:push:0"
	NSSummary       = "urn:xmpp:push:summary"
	NSPubSub        = "http://jabber.org/protocol/pubsub"
	NSPublishOption = "http://jabber.org/protocol/pubsub#publish-options"
)

// Config holds the server-side push options.
type Config struct {
	// MaxRegistrations caps the registrations of one account (0: no cap).
	MaxRegistrations int
	// MaxErrors disables a registration after this many consecutive
	// non-temporary errors.
	MaxErrors int
	// IncludeSender and IncludeBody reveal the sender and the message text
	// in the summary; PlaceholderBody stands in for the text of important
	// stanzas otherwise.
	IncludeSender   bool
	IncludeBody     bool
	PlaceholderBody string
	// HibernateTimeout keeps push-enabled hibernated sessions this long
	// until their first important push.
	HibernateTimeout time.Duration
	// ReplyTimeout bounds the wait for the app server's answer.
	ReplyTimeout time.Duration
	// RetryInterval is the first wait before a notification that met a
	// temporary error is sent again (doubling, maxWaitRetries tries).
	RetryInterval time.Duration
}

// maxWaitRetries bounds the retries after temporary errors.
const maxWaitRetries = 5

// Metrics counts what the push service does. Outcomes: "sent", "error",
// "timeout", "wait", "disabled", "dropped".
type Metrics interface {
	Notification(outcome string)
}

type noMetrics struct{}

func (noMetrics) Notification(string) {}

// hibernatable is a router session that can be hibernated (a c2s session).
type hibernatable interface {
	Hibernated() bool
	ResumeTimeout() time.Duration
	LimitHibernation(d time.Duration)
}

// Service is the XEP-0357 service of one server.
type Service struct {
	cfg     Config
	store   storage.PushRegistrations
	router  *router.Router
	log     *slog.Logger
	metrics Metrics

	// events carries stanzas worth a push from the delivery hooks, which
	// must not block, to the worker.
	events chan event
	// ctrl carries replies and resets from callbacks (never dropped).
	ctrlMu  sync.Mutex
	ctrl    []func(ctx context.Context)
	ctrlSig chan struct{}

	// cache of registrations per user, shared with the IQ handlers.
	cacheMu sync.Mutex
	cache   map[string][]storage.PushRegistration

	// devices is the worker's per-registration state.
	devices map[devKey]*device
}

type event struct {
	user     string
	resource string // the hibernated session's resource; "" for offline
	info     stanzaInfo
	// sessionless limits the event to devices with no session at all:
	// the message reached other resources and waits in the archive.
	sessionless bool
}

type devKey struct{ user, service, node string }

// device is what the worker remembers of a registration between pushes.
// It is forgotten when the device comes back online.
type device struct {
	count         int // messages since the device was last online
	subscriptions int
	sender, body  string
	important     bool // an important stanza is waiting

	inflight          bool // a notification awaits the app server's reply
	inflightImportant bool
	retries           int  // temporary errors in a row
	retryPending      bool // a retry is scheduled
	pushed            bool // a notification reached the app server
	pushedImportant   bool
	dirty             bool // stanzas arrived while inflight
}

const (
	eventQueue = 8192
	// maxCachedUsers bounds the registration cache.
	maxCachedUsers = 10000
)

// New returns the service and registers its IQ handler with r.
func New(cfg Config, store storage.PushRegistrations, r *router.Router, logger *slog.Logger) *Service {
	if cfg.MaxErrors < 1 {
		cfg.MaxErrors = 1
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = 30 * time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 30 * time.Second
	}
	s := &Service{
		cfg:     cfg,
		store:   store,
		router:  r,
		log:     logger,
		metrics: noMetrics{},
		events:  make(chan event, eventQueue),
		ctrlSig: make(chan struct{}, 1),
		cache:   map[string][]storage.PushRegistration{},
		devices: map[devKey]*device{},
	}
	r.HandleIQ(router.ToAccount, NS, s.handleIQ)
	return s
}

// SetMetrics installs the metrics sink.
func (s *Service) SetMetrics(m Metrics) {
	if m != nil {
		s.metrics = m
	}
}

// Run processes push events until ctx ends.
func (s *Service) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.events:
			// Resets and replies queued before this event come first.
			s.runControl(ctx)
			s.handleEvent(ctx, ev)
		case <-s.ctrlSig:
			s.runControl(ctx)
		}
	}
}

func (s *Service) runControl(ctx context.Context) {
	s.ctrlMu.Lock()
	fns := s.ctrl
	s.ctrl = nil
	s.ctrlMu.Unlock()
	for _, f := range fns {
		f(ctx)
	}
}

// later queues f to run on the worker; it never blocks.
func (s *Service) later(f func(ctx context.Context)) {
	s.ctrlMu.Lock()
	s.ctrl = append(s.ctrl, f)
	s.ctrlMu.Unlock()
	select {
	case s.ctrlSig <- struct{}{}:
	default:
	}
}

func (s *Service) enqueue(ev event) {
	select {
	case s.events <- ev:
	default:
		s.metrics.Notification("dropped")
		s.log.Warn("push event queue is full; a device may not be woken", "user", ev.user, "queue", eventQueue)
	}
}

// Offline is called after a message for user went to offline storage.
func (s *Service) Offline(ctx context.Context, user string, st *router.Stanza) {
	if info, ok := classify(st.El); ok && s.mayHaveRegistrations(user) {
		s.enqueue(event{user: user, info: info})
	}
}

// Delivered is called after a message for user was delivered to some of
// the user's sessions (and archived): devices with no session at all will
// fetch it from the archive, so they are woken too, as Prosody and
// ejabberd do. Devices with a hibernated session are woken by their queue.
func (s *Service) Delivered(ctx context.Context, st *router.Stanza, to []router.Session) {
	if len(to) == 0 {
		return // offline storage; Offline handles it
	}
	user := st.To.Localpart()
	if info, ok := classify(st.El); ok && info.important && s.mayHaveRegistrations(user) {
		s.enqueue(event{user: user, info: info, sessionless: true})
	}
}

// SubscriptionRequest is called after a subscription request for user
// arrived (and was stored when nobody was online to see it).
func (s *Service) SubscriptionRequest(ctx context.Context, user string, st *router.Stanza) {
	if s.mayHaveRegistrations(user) {
		s.enqueue(event{user: user, info: stanzaInfo{subscription: true, sender: st.From.Bare().String()}})
	}
}

// QueuedWhileHibernated is the c2s hook for stanzas queued for a
// hibernated session.
func (s *Service) QueuedWhileHibernated(sess router.Session, el *xmpp.Element) {
	j := sess.JID()
	if info, ok := classify(el); ok && s.mayHaveRegistrations(j.Localpart()) {
		s.enqueue(event{user: j.Localpart(), resource: j.Resourcepart(), info: info})
	}
}

// Hibernated is the c2s hook for a session that just hibernated with
// stanzas its client never acknowledged: they are the first burst.
func (s *Service) Hibernated(sess router.Session, queued []*xmpp.Element) {
	j := sess.JID()
	if !s.mayHaveRegistrations(j.Localpart()) {
		return
	}
	var sum stanzaInfo
	found := false
	for _, el := range queued {
		info, ok := classify(el)
		if !ok {
			continue
		}
		found = true
		if info.important || !sum.important {
			imp := sum.important || info.important
			sum = info
			sum.important = imp
		}
	}
	if found {
		s.enqueue(event{user: j.Localpart(), resource: j.Resourcepart(), info: sum})
	}
}

// Online is called when a session of user binds or resumes: the device
// behind that resource is awake, and its push state starts afresh.
func (s *Service) Online(ctx context.Context, user, resource string) {
	s.later(func(context.Context) {
		for k := range s.devices {
			if k.user != user {
				continue
			}
			if reg, ok := s.cachedRegistration(k); !ok || reg.Resource == resource {
				delete(s.devices, k)
			}
		}
	})
}

// HibernateTimeout is the c2s hook that keeps push-enabled sessions longer.
func (s *Service) HibernateTimeout(sess router.Session) time.Duration {
	if s.cfg.HibernateTimeout <= 0 {
		return 0
	}
	j := sess.JID()
	regs, err := s.registrations(context.Background(), j.Localpart())
	if err != nil {
		return 0
	}
	for _, r := range regs {
		if r.Resource == j.Resourcepart() {
			return s.cfg.HibernateTimeout
		}
	}
	return 0
}

// mayHaveRegistrations is a cheap check before queueing work: false only
// when the cache knows the user has none.
func (s *Service) mayHaveRegistrations(user string) bool {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	regs, ok := s.cache[user]
	return !ok || len(regs) > 0
}

// registrations returns the user's registrations through the cache.
func (s *Service) registrations(ctx context.Context, user string) ([]storage.PushRegistration, error) {
	s.cacheMu.Lock()
	regs, ok := s.cache[user]
	s.cacheMu.Unlock()
	if ok {
		return regs, nil
	}
	regs, err := s.store.PushRegistrations(ctx, user)
	if err != nil {
		return nil, err
	}
	s.cacheMu.Lock()
	if len(s.cache) >= maxCachedUsers {
		for k := range s.cache { // evict an arbitrary entry
			delete(s.cache, k)
			break
		}
	}
	s.cache[user] = regs
	s.cacheMu.Unlock()
	return regs, nil
}

// Forget drops what the service remembers of user's registrations (the
// account was deleted).
func (s *Service) Forget(user string) {
	s.forget(user)
	s.later(func(context.Context) {
		for k := range s.devices {
			if k.user == user {
				delete(s.devices, k)
			}
		}
	})
}

func (s *Service) forget(user string) {
	s.cacheMu.Lock()
	delete(s.cache, user)
	s.cacheMu.Unlock()
}

func (s *Service) cachedRegistration(k devKey) (storage.PushRegistration, bool) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	for _, r := range s.cache[k.user] {
		if r.Service == k.service && r.Node == k.node {
			return r, true
		}
	}
	return storage.PushRegistration{}, false
}

// live reports whether the device behind a registration has a connected
// (not hibernated) session.
func (s *Service) live(user, resource string) bool {
	full, err := jid.New(user, s.router.Domain(), resource)
	if err != nil {
		return false
	}
	sess := s.router.Session(full)
	if sess == nil {
		return false
	}
	if h, ok := sess.(hibernatable); ok && h.Hibernated() {
		return false
	}
	return true
}

// hasSession reports whether a resource of user has a session, live or
// hibernated.
func (s *Service) hasSession(user, resource string) bool {
	full, err := jid.New(user, s.router.Domain(), resource)
	return err == nil && s.router.Session(full) != nil
}

// handleEvent runs on the worker: one stanza for a user's devices.
func (s *Service) handleEvent(ctx context.Context, ev event) {
	regs, err := s.registrations(ctx, ev.user)
	if err != nil {
		s.log.Error("cannot read push registrations; device not woken", "user", ev.user, "err", err)
		return
	}
	for _, reg := range regs {
		if ev.resource != "" && reg.Resource != ev.resource {
			// A hibernated session's stanzas wake only its own device.
			continue
		}
		if s.live(ev.user, reg.Resource) {
			continue
		}
		if ev.sessionless && s.hasSession(ev.user, reg.Resource) {
			continue
		}
		k := devKey{ev.user, reg.Service, reg.Node}
		d := s.devices[k]
		if d == nil {
			d = &device{}
			s.devices[k] = d
		}
		if ev.info.subscription {
			d.subscriptions++
		} else {
			d.count++
		}
		if ev.info.sender != "" {
			d.sender = ev.info.sender
		}
		if ev.info.body != "" || ev.info.important {
			d.body = ev.info.body
		}
		if ev.info.important {
			d.important = true
		}
		s.maybePublish(ctx, k, reg, d)
	}
}

// maybePublish sends a notification unless one is in flight or the device
// was already woken for this burst (an important stanza after a silent
// push still gets its alert).
func (s *Service) maybePublish(ctx context.Context, k devKey, reg storage.PushRegistration, d *device) {
	if d.inflight {
		d.dirty = true
		return
	}
	if d.pushed && !(d.important && !d.pushedImportant) {
		return
	}
	s.publish(ctx, k, reg, d)
}

func (s *Service) publish(ctx context.Context, k devKey, reg storage.PushRegistration, d *device) {
	to, err := jid.Parse(reg.Service)
	if err != nil {
		s.log.Warn("push registration names an invalid app server; removing it", "user", k.user, "service", reg.Service)
		s.disable(ctx, k, "invalid app server address")
		return
	}
	from, err := jid.New(k.user, s.router.Domain(), "")
	if err != nil {
		return
	}
	important := d.important
	iq := xmpp.NewElement(xmpp.NSClient, "iq", "type", "set", "from", from.String(), "to", to.String())
	pubsub := iq.AddChild(NSPubSub, "pubsub")
	item := pubsub.AddChild(NSPubSub, "publish", "node", reg.Node).AddChild(NSPubSub, "item")
	item.AddChild(NS, "notification").Append(s.summary(d))
	if len(reg.Options) > 0 {
		if opts, err := xmpp.ParseElement(reg.Options); err == nil {
			pubsub.AddChild(NSPubSub, "publish-options").Append(opts)
		}
	}
	d.inflight, d.inflightImportant, d.dirty = true, important, false
	start := time.Now()
	s.router.SendIQ(ctx, &router.Stanza{El: iq, From: from, To: to}, s.cfg.ReplyTimeout, func(reply *router.Stanza) {
		s.later(func(ctx context.Context) { s.handleReply(ctx, k, reply, time.Since(start)) })
	})
}

// summary builds the urn:xmpp:push:summary form.
func (s *Service) summary(d *device) *xmpp.Element {
	x := xmpp.NewElement(xmpp.NSDataForms, "x", "type", "submit")
	field := func(name, value string) {
		x.AddChild(xmpp.NSDataForms, "field", "var", name).AddChild(xmpp.NSDataForms, "value").AppendText(value)
	}
	field("FORM_TYPE", NSSummary)
	field("message-count", strconv.Itoa(d.count))
	if d.subscriptions > 0 {
		field("pending-subscription-count", strconv.Itoa(d.subscriptions))
	}
	if s.cfg.IncludeSender && d.sender != "" {
		field("last-message-sender", d.sender)
	}
	switch {
	case s.cfg.IncludeBody && d.body != "":
		field("last-message-body", d.body)
	case d.important && s.cfg.PlaceholderBody != "":
		field("last-message-body", s.cfg.PlaceholderBody)
	}
	return x
}

// handleReply runs on the worker with the app server's answer (nil: none
// in time).
func (s *Service) handleReply(ctx context.Context, k devKey, reply *router.Stanza, took time.Duration) {
	d := s.devices[k]
	if d == nil {
		// The device came online meanwhile; its state was reset.
		d = &device{}
	}
	important := d.inflightImportant
	d.inflight = false
	reg, ok := s.cachedRegistration(k)
	switch {
	case reply == nil:
		s.metrics.Notification("timeout")
		s.log.Warn("push app server did not answer in time; will try again", "user", k.user, "service", k.service, "timeout", s.cfg.ReplyTimeout)
		s.retryLater(k, d)
		return
	case reply.Type() == "result":
		s.metrics.Notification("sent")
		s.log.Debug("push notification sent", "user", k.user, "service", k.service, "important", important, "took", took)
		d.pushed = true
		d.retries = 0
		if important {
			d.pushedImportant = true
			d.important = false
			s.shortenHibernation(k.user, reg.Resource)
		}
		if ok && reg.Errors > 0 {
			s.setErrors(ctx, k, 0)
		}
		if d.dirty {
			s.maybePublish(ctx, k, reg, d)
		}
		return
	}
	serr := errorOf(reply.El)
	if serr.Type == "wait" {
		s.metrics.Notification("wait")
		s.log.Info("push app server asked to wait; will try again", "user", k.user, "service", k.service, "condition", serr.Condition)
		s.retryLater(k, d)
		return
	}
	s.metrics.Notification("error")
	if serr.Condition == xmpp.CondItemNotFound {
		// The app server forgot the node (e.g. the device's token died).
		s.disable(ctx, k, "the app server does not know the node any more")
		return
	}
	if !ok {
		return
	}
	n := reg.Errors + 1
	if n >= s.cfg.MaxErrors {
		s.disable(ctx, k, "too many errors from the app server: "+serr.Condition)
		return
	}
	s.log.Warn("push app server refused a notification", "user", k.user, "service", k.service, "condition", serr.Condition, "text", serr.Text, "errors", n, "max_errors", s.cfg.MaxErrors)
	s.setErrors(ctx, k, n)
}

// retryLater sends the device's notification again after a temporary
// error, waiting RetryInterval and doubling it with each try. A new stanza
// for the device may send it sooner.
func (s *Service) retryLater(k devKey, d *device) {
	if d.retryPending || d.retries >= maxWaitRetries {
		if d.retries >= maxWaitRetries {
			s.log.Warn("push app server kept failing temporarily; giving up until the next stanza", "user", k.user, "service", k.service, "tries", d.retries)
			d.retries = 0
		}
		return
	}
	wait := s.cfg.RetryInterval << d.retries
	d.retries++
	d.retryPending = true
	time.AfterFunc(wait, func() {
		s.later(func(ctx context.Context) { s.retry(ctx, k) })
	})
}

// retry runs on the worker when a scheduled retry is due.
func (s *Service) retry(ctx context.Context, k devKey) {
	d := s.devices[k]
	if d == nil {
		return // the device came online meanwhile
	}
	d.retryPending = false
	if d.inflight || d.pushed {
		return
	}
	regs, err := s.registrations(ctx, k.user)
	if err != nil {
		return
	}
	for _, reg := range regs {
		if reg.Service == k.service && reg.Node == k.node {
			if !s.live(k.user, reg.Resource) {
				s.publish(ctx, k, reg, d)
			}
			return
		}
	}
}

func (s *Service) shortenHibernation(user, resource string) {
	full, err := jid.New(user, s.router.Domain(), resource)
	if err != nil {
		return
	}
	if h, ok := s.router.Session(full).(hibernatable); ok && h.Hibernated() {
		if d := h.ResumeTimeout(); d > 0 {
			h.LimitHibernation(d)
		}
	}
}

func (s *Service) setErrors(ctx context.Context, k devKey, n int) {
	if err := s.store.SetPushErrors(ctx, k.user, k.service, k.node, n); err != nil {
		s.log.Error("cannot record push errors", "user", k.user, "service", k.service, "err", err)
	}
	s.forget(k.user)
}

// disable removes a registration the app server no longer accepts.
func (s *Service) disable(ctx context.Context, k devKey, why string) {
	if _, err := s.store.DeletePushRegistrations(ctx, k.user, k.service, k.node); err != nil {
		s.log.Error("cannot remove push registration", "user", k.user, "service", k.service, "err", err)
		return
	}
	s.forget(k.user)
	delete(s.devices, k)
	s.metrics.Notification("disabled")
	s.log.Warn("push registration disabled; the device must enable push again", "user", k.user, "service", k.service, "node", k.node, "reason", why)
}

// errorOf extracts the condition and type of an error reply.
func errorOf(el *xmpp.Element) *xmpp.StanzaError {
	e := el.Child(xmpp.NSClient, "error")
	if e == nil {
		return &xmpp.StanzaError{Condition: xmpp.CondUndefinedCondition, Type: "cancel"}
	}
	serr := &xmpp.StanzaError{Type: e.Attr("type"), Condition: xmpp.CondUndefinedCondition}
	for _, c := range e.Elements() {
		if c.Space == xmpp.NSStanzas {
			if c.Local == "text" {
				serr.Text = c.Text()
			} else {
				serr.Condition = c.Local
			}
		}
	}
	return serr
}

// handleIQ answers <enable/> and <disable/> from the account's own clients.
func (s *Service) handleIQ(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "set" {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "push is enabled and disabled with IQ set")
	}
	if !iq.From.Bare().Equal(iq.To.Bare()) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "only the account's own clients may enable push")
	}
	user := iq.To.Localpart()
	el := iq.El.FirstElement()
	service, err := jid.Parse(el.Attr("jid"))
	if err != nil || el.Attr("jid") == "" {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "'jid' must be the app server's address")
	}
	node := el.Attr("node")
	switch el.Local {
	case "enable":
		if node == "" {
			return xmpp.NewStanzaError(xmpp.CondBadRequest, "<enable/> needs the node the app server gave the device")
		}
		var opts []byte
		if x := el.Child(xmpp.NSDataForms, "x"); x != nil {
			if formType(x) != NSPublishOption {
				return xmpp.NewStanzaError(xmpp.CondBadRequest, "the form of <enable/> must be of type "+NSPublishOption)
			}
			opts = x.Bytes()
		}
		reg := storage.PushRegistration{Service: service.String(), Node: node, Options: opts, Resource: iq.From.Resourcepart()}
		if err := s.store.PutPushRegistration(ctx, user, reg, s.cfg.MaxRegistrations); err != nil {
			if errors.Is(err, storage.ErrQuotaExceeded) {
				return xmpp.NewStanzaError(xmpp.CondNotAllowed, "this account has the most push registrations allowed ("+strconv.Itoa(s.cfg.MaxRegistrations)+"); disable one first")
			}
			return err
		}
		s.forget(user)
		k := devKey{user, reg.Service, node}
		s.later(func(context.Context) { delete(s.devices, k) })
		s.log.Info("push enabled", "user", user, "resource", reg.Resource, "service", reg.Service)
	case "disable":
		n, err := s.store.DeletePushRegistrations(ctx, user, service.String(), node)
		if err != nil {
			return err
		}
		s.forget(user)
		s.later(func(context.Context) {
			for k := range s.devices {
				if k.user == user && k.service == service.String() && (node == "" || k.node == node) {
					delete(s.devices, k)
				}
			}
		})
		s.log.Info("push disabled", "user", user, "service", service.String(), "node", node, "removed", n)
	default:
		return xmpp.NewStanzaError(xmpp.CondFeatureNotImplemented, "")
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

func formType(x *xmpp.Element) string {
	for _, f := range x.Elements() {
		if f.Local == "field" && f.Attr("var") == "FORM_TYPE" {
			return f.ChildText(xmpp.NSDataForms, "value")
		}
	}
	return ""
}
