package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// knownMechanisms are the SASL mechanism names kept as label values; any
// other name is counted as "other", so that clients cannot create
// unbounded label values.
var knownMechanisms = []string{
	"PLAIN",
	"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
	"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
}

// authOutcomes are the outcome label values of wren_c2s_auth_attempts_total.
var authOutcomes = []string{"success", "failure", "error"}

// stanzaKind indexes the three stanza kinds; -1 for anything else.
func stanzaKind(kind string) int {
	switch kind {
	case "message":
		return 0
	case "presence":
		return 1
	case "iq":
		return 2
	}
	return -1
}

var stanzaKinds = [3]string{"message", "presence", "iq"}

// C2S implements c2s.Metrics.
type C2S struct {
	accepted   [2]prometheus.Counter // STARTTLS, direct TLS
	auth       map[string]map[string]prometheus.Counter
	authOther  map[string]prometheus.Counter
	in, out    [3]prometheus.Counter
	route      prometheus.Histogram
	smEnabled  prometheus.Counter
	smResumed  prometheus.Counter
	smFailed   prometheus.Counter
	smHibern   prometheus.Counter
	smTimedOut prometheus.Counter
}

func newC2S(reg prometheus.Registerer) *C2S {
	m := &C2S{}
	accepted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "c2s", Name: "connections_accepted_total",
		Help: "Client connections accepted, by transport (starttls or direct_tls).",
	}, []string{"transport"})
	m.accepted[0] = accepted.WithLabelValues("starttls")
	m.accepted[1] = accepted.WithLabelValues("direct_tls")

	auth := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "c2s", Name: "auth_attempts_total",
		Help: "SASL authentication attempts of clients, by mechanism and outcome (success; failure: wrong credentials or a broken exchange; error: the server could not check them).",
	}, []string{"mechanism", "outcome"})
	m.auth = map[string]map[string]prometheus.Counter{}
	for _, mech := range knownMechanisms {
		m.auth[mech] = map[string]prometheus.Counter{}
		for _, o := range authOutcomes {
			m.auth[mech][o] = auth.WithLabelValues(mech, o)
		}
	}
	m.authOther = map[string]prometheus.Counter{}
	for _, o := range authOutcomes {
		m.authOther[o] = auth.WithLabelValues("other", o)
	}

	in := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "c2s", Name: "stanzas_in_total",
		Help: "Stanzas received from bound clients, by kind (message, presence, iq).",
	}, []string{"kind"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "c2s", Name: "stanzas_out_total",
		Help: "Stanzas written to bound clients, by kind (message, presence, iq); stanzas resent after a stream resumption count again.",
	}, []string{"kind"})
	for i, k := range stanzaKinds {
		m.in[i] = in.WithLabelValues(k)
		m.out[i] = out.WithLabelValues(k)
	}

	m.route = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "route_duration_seconds",
		Help:    "Time to route one stanza from a client: handlers, queueing for local sessions, offline storage writes.",
		Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
	})

	sm := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "sm", Name: "events_total",
		Help: "Stream management (XEP-0198) events: enabled, resumed, resume_failed, hibernated (connection lost, session kept), timed_out (not resumed in time).",
	}, []string{"event"})
	m.smEnabled = sm.WithLabelValues("enabled")
	m.smResumed = sm.WithLabelValues("resumed")
	m.smFailed = sm.WithLabelValues("resume_failed")
	m.smHibern = sm.WithLabelValues("hibernated")
	m.smTimedOut = sm.WithLabelValues("timed_out")

	reg.MustRegister(accepted, auth, in, out, m.route, sm)
	return m
}

// ConnectionAccepted implements c2s.Metrics.
func (m *C2S) ConnectionAccepted(directTLS bool) {
	if directTLS {
		m.accepted[1].Inc()
	} else {
		m.accepted[0].Inc()
	}
}

// Auth implements c2s.Metrics.
func (m *C2S) Auth(mechanism, outcome string) {
	byOutcome, ok := m.auth[mechanism]
	if !ok {
		byOutcome = m.authOther
	}
	if c, ok := byOutcome[outcome]; ok {
		c.Inc()
	}
}

// StanzaIn implements c2s.Metrics.
func (m *C2S) StanzaIn(kind string) {
	if i := stanzaKind(kind); i >= 0 {
		m.in[i].Inc()
	}
}

// StanzaOut implements c2s.Metrics.
func (m *C2S) StanzaOut(kind string) {
	if i := stanzaKind(kind); i >= 0 {
		m.out[i].Inc()
	}
}

// Routed implements c2s.Metrics.
func (m *C2S) Routed(d time.Duration) { m.route.Observe(d.Seconds()) }

// SMEnabled implements c2s.Metrics.
func (m *C2S) SMEnabled() { m.smEnabled.Inc() }

// SMResumed implements c2s.Metrics.
func (m *C2S) SMResumed() { m.smResumed.Inc() }

// SMResumeFailed implements c2s.Metrics.
func (m *C2S) SMResumeFailed() { m.smFailed.Inc() }

// SMHibernated implements c2s.Metrics.
func (m *C2S) SMHibernated() { m.smHibern.Inc() }

// SMTimedOut implements c2s.Metrics.
func (m *C2S) SMTimedOut() { m.smTimedOut.Inc() }

// Offline implements offline.Metrics.
type Offline struct {
	outcomes map[string]prometheus.Counter
}

// offlineOutcomes are the outcome label values of wren_offline_writes_total.
var offlineOutcomes = []string{"stored", "full", "no_account", "error"}

func newOffline(reg prometheus.Registerer) *Offline {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "offline", Name: "writes_total",
		Help: "Messages for offline users, by outcome: stored; full (the user's queue was at its cap, bounced); no_account (bounced); error (storage failed, bounced).",
	}, []string{"outcome"})
	o := &Offline{outcomes: map[string]prometheus.Counter{}}
	for _, out := range offlineOutcomes {
		o.outcomes[out] = v.WithLabelValues(out)
	}
	reg.MustRegister(v)
	return o
}

// OfflineWrite implements offline.Metrics. Unknown outcomes count as error.
func (o *Offline) OfflineWrite(outcome string) {
	c, ok := o.outcomes[outcome]
	if !ok {
		c = o.outcomes["error"]
	}
	c.Inc()
}

// Push counts XEP-0357 notifications the server published for its users.
type Push struct {
	outcomes map[string]prometheus.Counter
}

// pushOutcomes are the outcome label values of wren_push_notifications_total.
var pushOutcomes = []string{"sent", "error", "timeout", "wait", "disabled", "dropped"}

func newPush(reg prometheus.Registerer) *Push {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "push", Name: "notifications_total",
		Help: "Push notifications published to app servers, by outcome: sent (accepted by the app server); error (refused); timeout (no answer in push.reply_timeout); wait (app server asked to retry later); disabled (a registration was removed after errors); dropped (the push event queue was full).",
	}, []string{"outcome"})
	p := &Push{outcomes: map[string]prometheus.Counter{}}
	for _, out := range pushOutcomes {
		p.outcomes[out] = v.WithLabelValues(out)
	}
	reg.MustRegister(v)
	return p
}

// Notification implements push.Metrics. Unknown outcomes count as error.
func (p *Push) Notification(outcome string) {
	c, ok := p.outcomes[outcome]
	if !ok {
		c = p.outcomes["error"]
	}
	c.Inc()
}

// PushGateway counts the built-in push gateway's deliveries to APNs and FCM.
type PushGateway struct {
	pushed  *prometheus.CounterVec
	latency *prometheus.HistogramVec
	queue   prometheus.Gauge
}

func newPushGateway(reg prometheus.Registerer) *PushGateway {
	g := &PushGateway{
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "push_gateway", Name: "pushes_total",
			Help: "Push attempts by provider (apns, fcm) and outcome (delivered, retrying, dead-token, failed, dropped-queue-full).",
		}, []string{"provider", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "push_gateway", Name: "delivery_seconds",
			Help:    "Time from a notification's arrival at the gateway to its delivery to the provider, retries included.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"provider"}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "push_gateway", Name: "queued_devices",
			Help: "Devices with a push waiting or in flight.",
		}),
	}
	reg.MustRegister(g.pushed, g.latency, g.queue)
	return g
}

// Pushed implements gateway.Metrics.
func (g *PushGateway) Pushed(provider, outcome string) {
	g.pushed.WithLabelValues(provider, outcome).Inc()
}

// Latency implements gateway.Metrics.
func (g *PushGateway) Latency(provider string, d time.Duration) {
	g.latency.WithLabelValues(provider).Observe(d.Seconds())
}

// QueueDepth implements gateway.Metrics.
func (g *PushGateway) QueueDepth(n int) { g.queue.Set(float64(n)) }
