// Package metrics collects Wren's Prometheus metrics in a registry of its
// own (never the global default one) and serves them over HTTP together
// with a health check.
//
// The features report events through small interfaces they define
// (c2s.Metrics, offline.Metrics); the types here implement them with
// counters resolved once at start, so that counting a stanza costs an
// atomic add and no label lookup.
package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Wren metric name.
const Namespace = "wren"

// Metrics is the registry of one server and the collectors the features
// report to.
type Metrics struct {
	reg *prometheus.Registry
	// C2S receives the events of client connections.
	C2S *C2S
	// Offline receives offline storage writes.
	Offline *Offline
	// Push receives XEP-0357 notification outcomes.
	Push *Push
	// PushGateway receives the push gateway's deliveries.
	PushGateway *PushGateway
}

// New returns the metrics of a server of the given version, with the Go
// runtime and process collectors registered.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "Always 1; the labels tell the Wren version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)
	return &Metrics{reg: reg, C2S: newC2S(reg), Offline: newOffline(reg), Push: newPush(reg), PushGateway: newPushGateway(reg)}
}

// Registry returns the registry holding every metric of the server.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// GaugeFunc registers a gauge whose value fn computes at each scrape, for
// numbers the server already knows (open connections, bound sessions).
// name is prefixed with "wren_".
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, fn)
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("metrics: registering %s_%s: %w", Namespace, name, err)
	}
	return nil
}

// HealthFunc reports whether the server is healthy: nil, or what is wrong.
type HealthFunc func(ctx context.Context) error

// healthTimeout bounds one health check.
const healthTimeout = 5 * time.Second

// Handler serves /metrics in the Prometheus text format and /healthz,
// which answers 200 "ok" when health returns nil and 503 with the reason
// otherwise.
// With profiling it also serves the runtime profiles of net/http/pprof at
// /debug/pprof/.
func (m *Metrics) Handler(health HealthFunc, profiling bool) http.Handler {
	mux := http.NewServeMux()
	if profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg, // count the scrapes and their errors too
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: false,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := health(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %v\n", err)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Wren monitoring endpoint.\n/metrics  Prometheus metrics\n/healthz  health check (200 healthy, 503 not)\n")
	})
	return mux
}

// LabeledValue is one sample of a gauge with labels.
type LabeledValue struct {
	Labels []string
	Value  float64
}

// GaugeVecFunc registers a gauge with labels whose samples fn computes at
// each scrape (streams per federated peer). name is prefixed with "wren_".
func (m *Metrics) GaugeVecFunc(name, help string, labels []string, fn func() []LabeledValue) error {
	c := &gaugeVecFunc{
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil),
		fn:   fn,
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: registering %s_%s: %w", Namespace, name, err)
	}
	return nil
}

type gaugeVecFunc struct {
	desc *prometheus.Desc
	fn   func() []LabeledValue
}

func (g *gaugeVecFunc) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gaugeVecFunc) Collect(ch chan<- prometheus.Metric) {
	for _, v := range g.fn() {
		if m, err := prometheus.NewConstMetric(g.desc, prometheus.GaugeValue, v.Value, v.Labels...); err == nil {
			ch <- m
		}
	}
}
