// Package gateway is Wren's built-in push gateway: the "app server" of
// XEP-0357 that phone apps register their device with and that XMPP
// servers publish notifications to. It forwards each notification to
// Apple (APNs) or Google (FCM) through a provider.Sender, retries what
// failed temporarily, forgets devices whose token died, and keeps a
// delivery record of every push.
//
// The gateway is an internal service of the router at its own domain
// (push.example.org). Devices register with ad-hoc commands compatible
// with the p2 app server that Conversations uses (register-push-fcm,
// register-push-apns, unregister-push); servers publish with the pubsub
// publish of XEP-0357 and the secret the registration returned. See
// README.md for the protocol, the replies and the options.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/adhoc"
	"wren.im/wren/push/provider"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Namespaces the gateway speaks.
const (
	NSPush          = "urn:xmpp:push:0"
	NSPushSummary   = "urn:xmpp:push:summary"
	NSPubSub        = "http://jabber.org/protocol/pubsub"
	NSPublishOption = "http://jabber.org/protocol/pubsub#publish-options"
)

// Defaults used for zero Config fields.
const (
	DefaultQueueSize       = 10000
	DefaultWorkers         = 8
	DefaultMaxAttempts     = 6
	DefaultRetryBase       = time.Second
	DefaultRetryMax        = 5 * time.Minute
	DefaultRequestTimeout  = 10 * time.Second
	DefaultRecordRetention = 30 * 24 * time.Hour
	DefaultCleanupInterval = time.Hour
	DefaultMaxDevices      = 50
	DefaultTTL             = 24 * time.Hour
)

// trimBatch is how many delivery records one cleanup write removes at most.
const trimBatch = 1000

// storeTimeout bounds the storage writes the workers make.
const storeTimeout = 5 * time.Second

// Config configures the gateway. Zero fields take the Default values.
type Config struct {
	// Domain is the gateway's address, a subdomain of the server
	// (push.example.org).
	Domain string
	// QueueSize caps the devices with a push waiting or in flight; when
	// full, notifications for other devices are refused with a "wait"
	// error.
	QueueSize int
	// Workers is the number of pushes sent at the same time.
	Workers int
	// MaxAttempts is how often a push is tried before it is given up.
	MaxAttempts int
	// RetryBase and RetryMax bound the exponential backoff between
	// attempts; a provider's Retry-After wins when longer.
	RetryBase time.Duration
	RetryMax  time.Duration
	// RequestTimeout is the deadline of one call to a provider.
	RequestTimeout time.Duration
	// RecordRetention is how long delivery records are kept, and
	// CleanupInterval how often older ones are removed.
	RecordRetention time.Duration
	CleanupInterval time.Duration
	// MaxDevices caps the devices (registrations) of one owner.
	MaxDevices int
	// TTL is how long the provider may keep trying to deliver a push to
	// a device that is offline, and how long the gateway retries it.
	TTL time.Duration
	// APNsSandbox is the APNs environment of iOS devices that register
	// without saying (config push_gateway.apns.environment = "development").
	APNsSandbox bool
	// Metrics receives the gateway's counters; nil discards them.
	Metrics Metrics
}

// Metrics receives the gateway's counters. The server implements it with
// Prometheus.
type Metrics interface {
	// Pushed counts one outcome (storage.PushDelivered, PushRetrying,
	// PushDeadToken, PushFailed, PushDroppedQueueFull) of an attempt to
	// push through provider ("apns" or "fcm").
	Pushed(provider, outcome string)
	// Latency observes the time from a push's arrival to its delivery.
	Latency(provider string, d time.Duration)
	// QueueDepth reports the devices with a push waiting or in flight.
	QueueDepth(n int)
}

// NopMetrics discards the counters.
type NopMetrics struct{}

// Pushed implements Metrics.
func (NopMetrics) Pushed(provider, outcome string) {}

// Latency implements Metrics.
func (NopMetrics) Latency(provider string, d time.Duration) {}

// QueueDepth implements Metrics.
func (NopMetrics) QueueDepth(n int) {}

// Gateway is the push gateway service. Create it with New, start its
// workers with Start and stop them with Close.
type Gateway struct {
	cfg     Config
	router  *router.Router
	store   storage.PushGateway
	senders map[string]provider.Sender
	log     *slog.Logger
	metrics Metrics
	jid     jid.JID
	cmds    *adhoc.Server

	now    func() time.Time
	jitter func(time.Duration) time.Duration

	// ctx is cancelled by Close; it stops the goroutines and the calls to
	// the providers.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once

	work chan *job     // jobs ready for a worker; never fuller than jobs
	wake chan struct{} // the retry heap changed

	mu       sync.Mutex
	jobs     map[string]*job // by node: every push waiting or in flight
	retries  retryHeap
	closed   bool
	lastWarn time.Time // of the queue-full warning
}

// New returns the gateway and makes the router deliver the stanzas for
// cfg.Domain to it. senders maps provider names (provider.APNs,
// provider.FCM) to the configured senders; a provider without a sender
// accepts no registrations. Call Start to send pushes and Close to stop.
func New(cfg Config, r *router.Router, store storage.PushGateway, senders map[string]provider.Sender, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = withDefaults(cfg)
	d, err := jid.New("", cfg.Domain, "")
	if err != nil {
		return nil, fmt.Errorf("push gateway domain %q: %w", cfg.Domain, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:     cfg,
		router:  r,
		store:   store,
		senders: map[string]provider.Sender{},
		log:     logger.With("service", "push gateway"),
		metrics: cfg.Metrics,
		jid:     d,
		cmds:    &adhoc.Server{},
		now:     time.Now,
		jitter:  equalJitter,
		ctx:     ctx,
		cancel:  cancel,
		work:    make(chan *job, cfg.QueueSize),
		wake:    make(chan struct{}, 1),
		jobs:    map[string]*job{},
	}
	for name, s := range senders {
		if s == nil {
			continue
		}
		if name != provider.APNs && name != provider.FCM {
			cancel()
			return nil, fmt.Errorf("push gateway: unknown provider %q (want %q or %q)", name, provider.APNs, provider.FCM)
		}
		g.senders[name] = s
	}
	g.addCommands()
	if err := r.AddService(d.Domainpart(), g.HandleStanza); err != nil {
		cancel()
		return nil, fmt.Errorf("push gateway: %w", err)
	}
	return g, nil
}

func withDefaults(c Config) Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.QueueSize, DefaultQueueSize)
	def(&c.Workers, DefaultWorkers)
	def(&c.MaxAttempts, DefaultMaxAttempts)
	def(&c.MaxDevices, DefaultMaxDevices)
	defD(&c.RetryBase, DefaultRetryBase)
	defD(&c.RetryMax, DefaultRetryMax)
	if c.RetryMax < c.RetryBase {
		c.RetryMax = c.RetryBase
	}
	defD(&c.RequestTimeout, DefaultRequestTimeout)
	defD(&c.RecordRetention, DefaultRecordRetention)
	defD(&c.CleanupInterval, DefaultCleanupInterval)
	defD(&c.TTL, DefaultTTL)
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	return c
}

// JID returns the gateway's address.
func (g *Gateway) JID() jid.JID { return g.jid }

// Configured reports whether the gateway has a sender for the provider.
func (g *Gateway) Configured(providerName string) bool { return g.senders[providerName] != nil }

// Start runs the workers, the retry scheduler and the record retention,
// in goroutines owned by the gateway until Close. Calling it again does
// nothing.
func (g *Gateway) Start() {
	g.startOnce.Do(func() {
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return
		}
		for range g.cfg.Workers {
			g.wg.Add(1)
			go g.worker()
		}
		g.wg.Add(2)
		go g.retryLoop()
		go g.cleanupLoop()
		var configured []string
		for _, p := range []string{provider.APNs, provider.FCM} {
			if g.senders[p] != nil {
				configured = append(configured, p)
			}
		}
		if len(configured) == 0 {
			g.log.Warn("push gateway has neither APNs nor FCM credentials: no device can register; set push_gateway.apns or push_gateway.fcm",
				"domain", g.jid.String())
		} else {
			g.log.Info("push gateway started", "domain", g.jid.String(), "providers", strings.Join(configured, ","),
				"workers", g.cfg.Workers, "queue_size", g.cfg.QueueSize)
		}
	})
}

// Close stops the workers and waits for them: a push in flight is
// abandoned (its provider call is cancelled), pushes waiting for a retry
// are dropped and recorded as failed, and the publishers still waiting
// for an answer get a "wait" error. Later notifications get the same
// error. Close is idempotent.
func (g *Gateway) Close() {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		g.cancel()
		g.wg.Wait()

		g.mu.Lock()
		jobs := g.jobs
		g.jobs = map[string]*job{}
		g.retries = nil
		g.mu.Unlock()
		for drained := false; !drained; {
			select {
			case <-g.work:
			default:
				drained = true
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		dropped := 0
		for _, j := range jobs {
			for _, w := range append(j.waiters, j.next...) {
				w(stoppedOutcome())
			}
			if j.record != 0 {
				rec := j.recordAt(j.dev, j.c.important, g.now(), storage.PushFailed, "", "the gateway stopped before the push could be retried")
				if err := g.store.UpdatePushDelivery(ctx, rec); err != nil {
					g.log.Warn("cannot record a push dropped at shutdown", "node", j.node, "err", err)
				}
			}
			dropped++
		}
		g.metrics.QueueDepth(0)
		if dropped > 0 {
			g.log.Warn("push gateway stopped with pushes not yet delivered; they are lost", "pushes", dropped)
		}
	})
}

// HandleStanza handles a stanza addressed to the gateway's domain: service
// discovery, ad-hoc commands, publishes and pings. It is the gateway's
// router.ServiceHandler; New registers it.
func (g *Gateway) HandleStanza(ctx context.Context, s *router.Stanza) {
	switch s.Kind() {
	case "iq":
	case "message":
		if s.Type() != "error" {
			g.router.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, "the push gateway takes no messages"))
		}
		return
	default:
		return
	}
	typ := s.Type()
	if typ != "get" && typ != "set" {
		return // no IQ of ours awaits an answer
	}
	if s.To.Localpart() != "" || s.To.Resourcepart() != "" {
		g.router.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
		return
	}
	els := s.El.Elements()
	if len(els) != 1 {
		g.router.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondBadRequest, "an IQ get or set must have exactly one child element"))
		return
	}
	p := els[0]
	switch {
	case typ == "get" && p.Is(xmpp.NSDiscoInfo, "query"):
		g.discoInfo(ctx, s, p.Attr("node"))
	case typ == "get" && p.Is(xmpp.NSDiscoItems, "query"):
		g.discoItems(ctx, s, p.Attr("node"))
	case typ == "set" && p.Is(adhoc.NS, "command"):
		resp, serr := g.cmds.Execute(ctx, s.From, p)
		if serr != nil {
			g.replyError(ctx, s, resp, serr)
			return
		}
		g.reply(ctx, s, resp)
	case typ == "set" && p.Is(NSPubSub, "pubsub"):
		g.publish(ctx, s, p)
	case typ == "get" && p.Is(xmpp.NSPing, "ping"):
		g.reply(ctx, s, nil)
	default:
		g.router.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, ""))
	}
}

func (g *Gateway) discoInfo(ctx context.Context, s *router.Stanza, node string) {
	if node != "" {
		q, ok := g.cmds.Info(node)
		if !ok {
			g.router.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondItemNotFound, ""))
			return
		}
		g.reply(ctx, s, q)
		return
	}
	q := xmpp.NewElement(xmpp.NSDiscoInfo, "query")
	q.AddChild(xmpp.NSDiscoInfo, "identity", "category", "pubsub", "type", "push", "name", "Wren push gateway")
	for _, f := range []string{adhoc.NS, xmpp.NSDiscoInfo, xmpp.NSDiscoItems, xmpp.NSPing, NSPush} {
		q.AddChild(xmpp.NSDiscoInfo, "feature", "var", f)
	}
	g.reply(ctx, s, q)
}

func (g *Gateway) discoItems(ctx context.Context, s *router.Stanza, node string) {
	switch node {
	case "":
		g.reply(ctx, s, xmpp.NewElement(xmpp.NSDiscoItems, "query"))
	case adhoc.NS:
		g.reply(ctx, s, g.cmds.Items(g.jid.String()))
	default:
		g.router.Bounce(ctx, s, xmpp.NewStanzaError(xmpp.CondItemNotFound, ""))
	}
}

// reply routes an IQ result with an optional payload to the requester.
func (g *Gateway) reply(ctx context.Context, req *router.Stanza, payload *xmpp.Element) {
	el := xmpp.NewElement(xmpp.NSClient, "iq", "type", "result", "id", req.El.Attr("id"),
		"from", g.jid.String(), "to", req.From.String())
	if payload != nil {
		el.Append(payload)
	}
	g.router.Route(ctx, &router.Stanza{El: el, From: g.jid, To: req.From, Filtered: true})
}

// replyError routes an IQ error holding payload (or nothing) and serr.
func (g *Gateway) replyError(ctx context.Context, req *router.Stanza, payload *xmpp.Element, serr *xmpp.StanzaError) {
	el := xmpp.NewElement(xmpp.NSClient, "iq", "type", "error", "id", req.El.Attr("id"),
		"from", g.jid.String(), "to", req.From.String())
	if payload != nil {
		el.Append(payload)
	}
	e := serr.Element()
	if serr.By == "" {
		e.SetAttr("by", g.jid.String())
	}
	el.Append(e)
	g.router.Route(ctx, &router.Stanza{El: el, From: g.jid, To: req.From, Filtered: true})
}

// equalJitter returns a random duration between d/2 and d.
func equalJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + mrand.N(d-half+1)
}

// backoff returns the delay before attempt n+1 after n failed attempts.
func (g *Gateway) backoff(n int, retryAfter time.Duration) time.Duration {
	d := g.cfg.RetryBase
	for i := 1; i < n && d < g.cfg.RetryMax; i++ {
		d *= 2
	}
	d = g.jitter(min(d, g.cfg.RetryMax))
	return max(d, retryAfter)
}

// randomNode returns a new unguessable node name (128 bits).
func randomNode() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// randomSecret returns a new publish secret (192 bits).
func randomSecret() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newPushID returns a random (version 4) UUID.
func newPushID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// providerName returns the provider's name for people.
func providerName(p string) string {
	switch p {
	case provider.APNs:
		return "APNs (Apple)"
	case provider.FCM:
		return "FCM (Firebase Cloud Messaging)"
	}
	return p
}

// bareOwner normalises an owner given as a JID to its bare JID.
func bareOwner(owner string) (string, error) {
	j, err := jid.Parse(owner)
	if err != nil {
		return "", fmt.Errorf("owner %q is not a valid JID: %w", owner, err)
	}
	return j.Bare().String(), nil
}
