package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"wren.im/wren/admin"
	"wren.im/wren/certs"
	"wren.im/wren/config"
	"wren.im/wren/metrics"
	"wren.im/wren/roster"
)

// This file holds what operators use to watch and steer a running server:
// the admin socket, the metrics and health endpoint, and the options that
// make a reload possible.

// Option adjusts how a server is run.
type Option func(*options)

type options struct {
	loadConfig   func() (*config.Config, error)
	configSource string
	logLevel     *slog.LevelVar
}

// WithConfigLoader lets a reload (wren reload, SIGHUP) re-read the
// configuration with load; source names where it comes from in messages.
// Without it a reload re-reads the certificate files only.
func WithConfigLoader(source string, load func() (*config.Config, error)) Option {
	return func(o *options) { o.configSource, o.loadConfig = source, load }
}

// WithLogLevel lets a reload change log.level: level must be the level
// the server's logger filters with.
func WithLogLevel(level *slog.LevelVar) Option {
	return func(o *options) { o.logLevel = level }
}

// ops is the part of Server that serves operators.
type ops struct {
	opts      options
	admin     *admin.Server
	metrics   *metrics.Metrics
	metricsLn net.Listener
	certs     *certs.Holder
	roster    *roster.Service
	started   time.Time
	serving   atomic.Bool
	reloadMu  sync.Mutex
}

// openOps creates the admin socket (failing when another server runs
// with the same data directory) and the metrics registry.
func openOps(cfg *config.Config, logger *slog.Logger, opts []Option) (*ops, error) {
	o := &ops{metrics: metrics.New(Version)}
	for _, opt := range opts {
		opt(&o.opts)
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("the data directory is accessible to other users; restrict it with chmod 700",
			"path", cfg.DataDir, "mode", fi.Mode().Perm().String())
	}
	adm, err := admin.Listen(cfg.Path(admin.SocketName), logger)
	switch {
	case errors.Is(err, admin.ErrPathTooLong):
		logger.Error("the admin socket is disabled: 'wren status', 'wren session', 'wren reload' cannot reach this server", "err", err)
	case err != nil:
		return nil, err
	}
	o.admin = adm
	return o, nil
}

// close releases what openOps and listenMetrics opened, when start-up fails.
func (o *ops) close() {
	if o.admin != nil {
		o.admin.Close()
	}
	if o.metricsLn != nil {
		o.metricsLn.Close()
	}
}

// listenMetrics binds the metrics endpoint, if configured.
func (s *Server) listenMetrics() error {
	addr := s.cfg.Metrics.Listen
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w (is another program using the port? change metrics.listen or --metrics; \"\" disables the endpoint)", addr, err)
	}
	s.metricsLn = ln
	s.log.Info("listening", "service", "metrics", "addr", ln.Addr().String())
	return nil
}

// MetricsAddr returns the bound address of the metrics endpoint, or nil.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// AdminSocket returns the path of the admin socket, or "" when it is disabled.
func (s *Server) AdminSocket() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.Path()
}

// registerGauges exposes numbers the server already keeps.
func (s *Server) registerGauges() error {
	return errors.Join(
		s.metrics.GaugeFunc("c2s_connections", "Open client connections (authenticated or not).",
			func() float64 { return float64(s.c2s.Connections()) }),
		s.metrics.GaugeFunc("c2s_connections_parked", "Idle client connections parked with the server's poller (no goroutine of their own).",
			func() float64 { return float64(s.c2s.Parked()) }),
		s.metrics.GaugeFunc("c2s_sessions", "Bound client sessions, hibernated ones included.",
			func() float64 { return float64(s.router.Count()) }),
		s.metrics.GaugeFunc("c2s_sessions_hibernated", "Client sessions whose connection is gone, kept for a stream management resume.",
			func() float64 { return float64(s.c2s.Hibernated()) }),
		s.metrics.GaugeVecFunc("s2s_streams", "Streams with other servers, by direction (in, out) and peer domain.",
			[]string{"direction", "peer"}, s.s2sStreams),
	)
}

// s2sStreams counts the federation streams per direction and peer.
func (s *Server) s2sStreams() []metrics.LabeledValue {
	st := s.FederationStatus()
	count := map[[2]string]float64{}
	for _, o := range st.Outgoing {
		count[[2]string{"out", o.Remote}]++
	}
	for _, in := range st.Incoming {
		count[[2]string{"in", in.Remote}]++
	}
	out := make([]metrics.LabeledValue, 0, len(count))
	for k, v := range count {
		out = append(out, metrics.LabeledValue{Labels: []string{k[0], k[1]}, Value: v})
	}
	return out
}

// startOps serves the admin socket and the metrics endpoint until ctx is
// cancelled. The returned function waits for both to stop.
func (s *Server) startOps(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	if s.admin != nil {
		wg.Go(func() {
			if err := s.admin.Serve(ctx, backend{s}); err != nil {
				s.log.Error("the admin socket stopped", "err", err)
			}
		})
	}
	s.reloadMu.Lock()
	every := s.cfg.TLS.WatchInterval.Duration
	s.reloadMu.Unlock()
	if every > 0 {
		wg.Go(func() { s.watchCertificate(ctx, every) })
	}
	if s.metricsLn != nil {
		hs := &http.Server{
			Handler:           s.metrics.Handler(s.health, s.cfg.Metrics.Profiling),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		wg.Go(func() {
			if err := hs.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("the metrics endpoint stopped", "err", err)
			}
		})
		wg.Go(func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil {
				hs.Close()
			}
		})
	}
	return wg.Wait
}

// pinger is a store that can answer a trivial query.
type pinger interface {
	Ping(ctx context.Context) error
}

// health reports whether the server serves clients and its database
// answers.
func (s *Server) health(ctx context.Context) error {
	if !s.serving.Load() {
		return errors.New("not serving clients (starting or shutting down)")
	}
	if p, ok := s.store.(pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("the database does not answer: %w", err)
		}
	} else if _, err := s.store.ListAccounts(ctx); err != nil {
		return fmt.Errorf("the database does not answer: %w", err)
	}
	return nil
}

// certSource names where the certificate of cfg comes from.
func certSource(cfg *config.Config) string {
	if c, _, err := certPaths(cfg); err == nil && c != "" {
		return c
	}
	return filepath.Join(cfg.DataDir, "tls", cfg.Domain+".crt") + " (self-signed)"
}
