package server

import (
	"context"
	"fmt"
	"net"
	"sync"

	"wren.im/wren/component"
	"wren.im/wren/router"
	"wren.im/wren/s2s"
	"wren.im/wren/xmpp"
)

// federation is the part of Server that talks to other servers and to
// external components.
type federation struct {
	svc       *s2s.Service       // nil when federation is off
	comp      *component.Service // nil without components
	listeners []fedListener
}

type fedListener struct {
	ln        net.Listener
	what      string
	directTLS bool
	component bool
}

// buildFederation wires server-to-server federation (s2s) and external
// components (XEP-0114) into the server: listeners bound, router Remote
// hook installed. It runs after every local feature is built.
func (s *Server) buildFederation() error {
	cfg := s.cfg
	limits := xmpp.Limits{MaxBytes: cfg.C2S.MaxStanzaBytes, MaxDepth: cfg.C2S.MaxDepth, MaxAttrs: cfg.C2S.MaxAttrs}
	f := &s.fed
	if cfg.S2S.Federates() {
		roots, err := s2s.LoadRoots(cfg.S2S.CAFile)
		if err != nil {
			return err
		}
		svc, err := s2s.New(s2s.Config{
			Domain: cfg.Domain,
			// s.certs is set after the features are built; a reload swaps
			// the certificate it holds.
			Certificate:       s.federationCertificate,
			Roots:             roots,
			RequireTLS:        cfg.S2S.RequireTLS,
			RequireValidCerts: cfg.S2S.RequireValidCertificates,
			Bidi:              cfg.S2S.Bidi,
			Limits:            limits,
			PreAuthBytes:      cfg.C2S.MaxPreAuthBytes,
			ConnectTimeout:    cfg.S2S.ConnectTimeout.Duration,
			NegotiateTimeout:  cfg.S2S.NegotiateTimeout.Duration,
			IdleTimeout:       cfg.S2S.IdleTimeout.Duration,
			KeepaliveInterval: cfg.C2S.KeepaliveInterval.Duration,
			SendQueue:         cfg.S2S.SendQueue,
			Allow:             cfg.S2S.Allow,
			Deny:              cfg.S2S.Deny,
			Addresses:         cfg.S2S.Addresses,
			Router:            s.router,
			Logger:            s.log,
		})
		if err != nil {
			return err
		}
		f.svc = svc
	}
	if len(cfg.Components) > 0 {
		secrets := make(map[string]string, len(cfg.Components))
		for d, c := range cfg.Components {
			secrets[d] = c.Secret
		}
		f.comp = component.New(component.Config{
			Secrets:          secrets,
			Limits:           limits,
			HandshakeTimeout: cfg.C2S.AuthTimeout.Duration,
			SendQueue:        cfg.C2S.SendQueue,
			Router:           s.router,
			Logger:           s.log,
		})
	}
	s.router.SetRemote(s.routeRemote)
	for _, l := range []struct {
		addr, what, option   string
		directTLS, component bool
	}{
		{cfg.S2S.Listen, "s2s STARTTLS", "s2s.listen or --s2s", false, false},
		{cfg.S2S.DirectTLS, "s2s direct TLS", "s2s.direct_tls", true, false},
		{cfg.S2S.ComponentListen, "components", "s2s.component_listen", false, true},
	} {
		if l.addr == "" || (l.component && f.comp == nil) {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			s.closeFederation()
			return fmt.Errorf("listen for %s on %s: %w (is another server running there? change %s)", l.what, l.addr, err, l.option)
		}
		f.listeners = append(f.listeners, fedListener{ln: ln, what: l.what, directTLS: l.directTLS, component: l.component})
		s.log.Info("listening", "service", l.what, "addr", ln.Addr().String())
	}
	return nil
}

// routeRemote is the router's Remote hook: stanzas for other domains go
// to the federation service; those for a configured component that is
// not connected are returned.
func (s *Server) routeRemote(ctx context.Context, st *router.Stanza) {
	domain := st.To.Domainpart()
	switch {
	case s.fed.comp != nil && s.fed.comp.Configured(domain):
		s.router.Bounce(ctx, st, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, "the component "+domain+" is not connected"))
	case s.fed.svc == nil:
		s.router.Bounce(ctx, st, xmpp.NewStanzaError(xmpp.CondRemoteServerNotFound, "federation with other servers is turned off on this server"))
	default:
		s.fed.svc.Route(ctx, st)
	}
}

// closeFederation closes the federation listeners (a start that failed).
func (s *Server) closeFederation() {
	for _, l := range s.fed.listeners {
		l.ln.Close()
	}
}

// FederationAddrs returns the addresses of the federation listeners by
// service name ("s2s STARTTLS", "s2s direct TLS", "components").
func (s *Server) FederationAddrs() map[string]net.Addr {
	out := map[string]net.Addr{}
	for _, l := range s.fed.listeners {
		out[l.what] = l.ln.Addr()
	}
	return out
}

// startFederation starts serving the federation listeners and outgoing
// connections; it stops when ctx ends (after client sessions have shut
// down) and the returned function waits for that.
func (s *Server) startFederation(ctx context.Context) (wait func()) {
	f := &s.fed
	var wg sync.WaitGroup
	for _, l := range f.listeners {
		wg.Go(func() {
			var err error
			if l.component {
				err = f.comp.Serve(ctx, l.ln)
			} else {
				err = f.svc.Serve(ctx, l.ln, l.directTLS)
			}
			if err != nil {
				s.log.Error("federation listener failed", "service", l.what, "err", err)
			}
		})
	}
	wg.Go(func() {
		<-ctx.Done()
		if f.svc != nil {
			f.svc.Close()
		}
		if f.comp != nil {
			f.comp.Close()
		}
	})
	return wg.Wait
}

// FederationStatus lists the streams with other servers.
func (s *Server) FederationStatus() s2s.Status {
	if s.fed.svc == nil {
		return s2s.Status{}
	}
	return s.fed.svc.Status()
}
