// Package server wires Wren together: storage, router, listeners and the
// features that hook into them.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"wren.im/wren/avatar"
	"wren.im/wren/blocking"
	"wren.im/wren/c2s"
	"wren.im/wren/certs"
	"wren.im/wren/config"
	"wren.im/wren/disco"
	"wren.im/wren/offline"
	"wren.im/wren/presence"
	"wren.im/wren/privatexml"
	"wren.im/wren/push"
	"wren.im/wren/push/gateway"
	"wren.im/wren/register"
	"wren.im/wren/roster"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/storage/sqlite"
	"wren.im/wren/vcard"
	"wren.im/wren/xmpp"
)

// Version is the server version reported by XEP-0092 and `wren version`.
// It is set by the linker (-ldflags "-X wren.im/wren/server.Version=...").
var Version = "dev"

// Server is a running Wren instance.
type Server struct {
	cfg    *config.Config
	log    *slog.Logger
	store  storage.Store
	router *router.Router
	c2s    *c2s.Server
	disco  *disco.Service
	*ops   // admin socket, metrics, reload

	listeners []boundListener

	// history is carbons and the message archive (server/history.go).
	history *history
	// push is XEP-0357 on the server side (server/push.go); nil when off.
	push *push.Service
	// acme obtains certificates automatically (server/acme.go); nil when off.
	acme *acmeState
	// gateway is the built-in push app server (server/gateway.go); nil when off.
	gateway *gateway.Gateway
	// caps is the server's entity capabilities element (server/features.go).
	caps capsFeature
	// blocking is XEP-0191 (server/blocking.go).
	blocking *blocking.Service
	// presence and vcards are kept for the features that extend them
	// (avatar conversion, server/pep.go).
	presence *presence.Service
	vcards   *vcard.Service
	avatars  *avatar.Service
	// fed is federation and external components (server/s2s.go).
	fed federation
}

type boundListener struct {
	ln        net.Listener
	directTLS bool
}

// Run serves cfg until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts ...Option) error {
	s, err := New(ctx, cfg, logger, opts...)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// New opens storage, loads certificates, builds every feature and binds the
// listeners, so that errors (a port in use, a bad certificate) surface
// before serving starts.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger, opts ...Option) (_ *Server, err error) {
	c := *cfg // a reload changes the server's copy only
	cfg = &c
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	o, err := openOps(cfg, logger, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	cert, err := loadCertificate(cfg, logger)
	if err != nil {
		return nil, err
	}
	store, err := sqlite.Open(ctx, cfg.DatabasePath(), logger)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", cfg.DatabasePath(), err)
	}
	s := &Server{cfg: cfg, log: logger, store: store, ops: o}
	if err := s.build(cert); err != nil {
		store.Close()
		return nil, err
	}
	if err := s.listen(); err != nil {
		s.closeListeners()
		s.closeFederation()
		store.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) build(cert tls.Certificate) error {
	cfg := s.cfg
	r, err := router.New(cfg.Domain, s.log)
	if err != nil {
		return fmt.Errorf("domain %q: %w", cfg.Domain, err)
	}
	s.router = r
	s.disco = disco.New(r, "Wren")

	if err := s.buildPush(); err != nil {
		return err
	}
	pres := presence.New(r, s.store, s.log)
	rost := roster.New(s.store, r, pres, s.log)
	s.roster = rost
	pres.SetSubscriptions(rost)
	off := offline.New(s.store, cfg.Domain, cfg.Offline.MaxPerUser, s.log)
	off.SetMetrics(s.metrics.Offline)
	pres.OnInitialPresence(off.Deliver)
	s.vcards = vcard.New(s.store, r)
	s.presence = pres
	privatexml.New(s.store, r)
	reg := register.New(register.Config{
		Domain:            cfg.Domain,
		Open:              cfg.Registration.Enabled,
		MinPasswordLength: cfg.Registration.MinPasswordLength,
		MaxPerIP:          cfg.Registration.MaxPerIP,
		PerIPWindow:       cfg.Registration.PerIPWindow.Duration,
		ScramIterations:   cfg.Auth.ScramIterations,
		BeforeRemove:      rost.CancelAll,
		AfterRemove:       s.accountDeleted,
	}, s.store, r, s.log)
	r.HandleIQ(router.ToServer, xmpp.NSPing, s.ping)
	r.HandleIQ(router.ToAccount, xmpp.NSPing, s.ping)
	r.HandleIQ(router.ToServer, xmpp.NSVersion, s.version)

	r.SetHooks(router.Hooks{
		Offline:         s.pushOffline(off.Store),
		InboundPresence: s.pushSubscriptions(pres.InboundPresence),
		AccountExists: func(ctx context.Context, user string) bool {
			_, err := s.store.Account(ctx, user)
			return err == nil
		},
	})
	s.history = s.buildHistory()
	s.pushDelivered()
	if err := s.buildBlocking(); err != nil {
		return err
	}
	if err := s.buildPEP(); err != nil {
		return err
	}
	if err := s.buildPushGateway(); err != nil {
		return err
	}
	if err := s.buildFederation(); err != nil {
		return err
	}
	s.disco.AddServerFeature(xmpp.NSSM, xmpp.NSCSI, xmpp.NSPing, xmpp.NSVersion, xmpp.NSOffline, xmpp.NSVCard, xmpp.NSPrivate, xmpp.NSRegister, "urn:xmpp:delay")
	s.disco.AddAccountFeature(xmpp.NSPing, xmpp.NSVCard)

	if s.certs, err = certs.NewHolder(cert); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	if err := s.buildACME(); err != nil {
		return err
	}
	tlsCfg := &tls.Config{
		GetCertificate: s.getCertificate, // ACME, or the holder swapped by Reload
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"xmpp-client"},
	}
	hooks := c2s.Hooks{
		Presence:        pres.ClientPresence,
		Ended:           s.history.ended(pres.SessionEnded),
		Bound:           s.history.bound,
		MessageOut:      []func(context.Context, *c2s.Session, *router.Stanza) bool{s.history.messageOut},
		PreAuthIQ:       reg.PreAuthIQ,
		RegisterFeature: cfg.Registration.Enabled,
		StreamFeatures:  s.streamFeatures,
	}
	s.pushHooks(&hooks)
	c, err := c2s.New(c2s.Config{
		Domain:                 cfg.Domain,
		TLS:                    tlsCfg,
		Cert:                   s.certs.Leaf,
		AfterWrites:            s.store.AfterWrites,
		Metrics:                s.metrics.C2S,
		AllowPlaintextLoopback: cfg.C2S.AllowPlaintextLoopback,
		AllowPlain:             cfg.Auth.AllowPlain,
		NoChannelBinding:       !cfg.Auth.ChannelBinding,
		ScramIterations:        cfg.Auth.ScramIterations,
		Limits: xmpp.Limits{
			MaxBytes: cfg.C2S.MaxStanzaBytes,
			MaxDepth: cfg.C2S.MaxDepth,
			MaxAttrs: cfg.C2S.MaxAttrs,
		},
		PreAuthBytes:      cfg.C2S.MaxPreAuthBytes,
		AuthTimeout:       cfg.C2S.AuthTimeout.Duration,
		IdleTimeout:       cfg.C2S.IdleTimeout.Duration,
		KeepaliveInterval: cfg.C2S.KeepaliveInterval.Duration,
		SendQueue:         cfg.C2S.SendQueue,
		ResumeTimeout:     cfg.StreamManagement.ResumeTimeout.Duration,
		MaxResumeTimeout:  cfg.StreamManagement.MaxResumeTimeout.Duration,
		AckTimeout:        cfg.StreamManagement.AckTimeout.Duration,
		MaxConnsPerIP:     cfg.C2S.MaxConnectionsPerIP,
		StanzaRate:        cfg.C2S.StanzaRate,
		StanzaBurst:       cfg.C2S.StanzaBurst,
		ByteRate:          cfg.C2S.ByteRate,
		FailureDelay:      cfg.Auth.FailureDelay.Duration,
		MaxFailureDelay:   cfg.Auth.MaxFailureDelay.Duration,
		Accounts:          s.store,
		Router:            r,
		Hooks:             hooks,
		Logger:            s.log,
	})
	if err != nil {
		return err
	}
	s.c2s = c
	return s.registerGauges()
}

func (s *Server) listen() error {
	for _, l := range []struct {
		addr      string
		directTLS bool
		what      string
	}{
		{s.cfg.C2S.Listen, false, "c2s STARTTLS"},
		{s.cfg.C2S.DirectTLS, true, "c2s direct TLS"},
	} {
		if l.addr == "" {
			continue
		}
		// No TCP keepalive probes on client connections (Go's default
		// probes every 15 s): the server's whitespace keepalives and idle
		// timeout find dead clients, and probes would wake sleeping phones.
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err := lc.Listen(context.Background(), "tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen for %s on %s: %w (is another server running there? change c2s.listen/c2s.direct_tls or the --c2s/--c2s-tls flags)", l.what, l.addr, err)
		}
		s.listeners = append(s.listeners, boundListener{ln: ln, directTLS: l.directTLS})
		s.log.Info("listening", "service", l.what, "addr", ln.Addr().String())
	}
	if len(s.listeners) == 0 {
		return errors.New("no listener configured: set c2s.listen or c2s.direct_tls")
	}
	if err := s.listenACME(); err != nil {
		return err
	}
	return s.listenMetrics()
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
	if s.acme != nil && s.acme.ln != nil {
		s.acme.ln.Close()
	}
}

// Addrs returns the bound listener addresses (STARTTLS first, then direct TLS).
func (s *Server) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.ln.Addr())
	}
	return out
}

// Serve runs until ctx is cancelled, then closes all sessions and storage.
func (s *Server) Serve(ctx context.Context) error {
	s.started = time.Now()
	s.log.Info("wren started", "version", Version, "domain", s.cfg.Domain, "data", s.cfg.DataDir, "admin_socket", s.AdminSocket())
	var wg sync.WaitGroup
	errc := make(chan error, len(s.listeners))
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, l := range s.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.c2s.Serve(lctx, l.ln, l.directTLS); err != nil {
				errc <- fmt.Errorf("listener %s: %w", l.ln.Addr(), err)
				cancel()
			}
		}()
	}
	waitOps := s.startOps(lctx)
	waitACME := s.serveACME(lctx)
	// Services keep running while sessions shut down (their queues go to
	// offline storage and may wake devices); they stop afterwards.
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	var services sync.WaitGroup
	if s.gateway != nil {
		s.gateway.Start()
	}
	if s.push != nil {
		services.Go(func() { s.push.Run(svcCtx) })
	}
	waitFederation := s.startFederation(svcCtx)
	s.serving.Store(true)
	s.history.start()
	<-lctx.Done()
	s.serving.Store(false)
	wg.Wait()
	waitOps()
	waitACME()
	s.log.Info("shutting down", "sessions", s.router.Count())
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := s.c2s.Shutdown(sctx); err != nil {
		s.log.Warn("some sessions did not end in time", "err", err)
	}
	stopServices()
	services.Wait()
	if s.gateway != nil {
		s.gateway.Close() // writes the records of pushes still pending
	}
	waitFederation()
	s.history.close()
	if err := s.store.Close(); err != nil {
		s.log.Error("closing the database failed", "err", err)
	}
	s.log.Info("wren stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (s *Server) ping(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "get" {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "")
	}
	s.router.Result(ctx, iq, nil)
	return nil
}

func (s *Server) version(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "get" {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "")
	}
	q := xmpp.NewElement(xmpp.NSVersion, "query")
	q.AddChild(xmpp.NSVersion, "name").AppendText("Wren")
	q.AddChild(xmpp.NSVersion, "version").AppendText(Version)
	q.AddChild(xmpp.NSVersion, "os").AppendText(runtime.GOOS)
	s.router.Result(ctx, iq, q)
	return nil
}
