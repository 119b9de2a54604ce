package s2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// Config configures federation.
type Config struct {
	// Domain is this server's domain.
	Domain string
	// Certificate returns the certificate presented to other servers, as
	// TLS server on incoming streams and as TLS client on outgoing ones
	// (for SASL EXTERNAL). It may change while the server runs (a reload).
	Certificate func() *tls.Certificate
	// Roots are the authorities trusted for other servers' certificates.
	Roots *x509.CertPool
	// RequireTLS refuses unencrypted streams in both directions.
	RequireTLS bool
	// RequireValidCerts accepts only servers whose certificate is valid
	// for their domain; otherwise dialback authenticates the others.
	RequireValidCerts bool
	// Bidi offers bidirectional streams (XEP-0288) to the servers that
	// connect, and asks for them on outgoing streams when the peer offers
	// them: one connection then carries stanzas both ways.
	Bidi bool
	// Limits bound stanzas from other servers; PreAuthBytes bounds
	// elements before a stream is authenticated.
	Limits       xmpp.Limits
	PreAuthBytes int
	// ConnectTimeout bounds one TCP connection attempt; NegotiateTimeout
	// the whole setup of an outgoing stream or a dialback verification.
	ConnectTimeout, NegotiateTimeout time.Duration
	// IdleTimeout closes streams that carried no stanza for this long.
	IdleTimeout time.Duration
	// KeepaliveInterval is how often a quiet outgoing stream gets a
	// whitespace keepalive.
	KeepaliveInterval time.Duration
	// SendQueue caps the stanzas waiting for one remote domain.
	SendQueue int
	// Allow, when not empty, lists the only domains federated with; Deny
	// the domains never federated with.
	Allow, Deny []string
	// Addresses maps domains to host:port, bypassing DNS.
	Addresses map[string]string
	// Resolver looks up SRV records, HostResolver host names; nil uses
	// the system's.
	Resolver     Resolver
	HostResolver *net.Resolver
	// Router routes stanzas received from other servers, and bounces.
	Router *router.Router
	Logger *slog.Logger
}

// Service carries stanzas to and from other servers. Route is its entry
// for outgoing stanzas (the router's Remote hook); Serve accepts incoming
// streams. Close ends every stream.
type Service struct {
	cfg    Config
	log    *slog.Logger
	secret []byte // dialback keys
	dialer net.Dialer
	allow  map[string]bool
	deny   map[string]bool

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	out    map[pair]*outStream
	in     map[*inStream]struct{}
	// bidi holds, per pair, the bidirectional incoming stream (XEP-0288)
	// that an outgoing stream for the pair uses instead of a connection
	// of its own.
	bidi map[pair]*inStream
}

// pair names the direction of an outgoing stream: from one of our domains
// (the server's, or a component's) to a remote one.
type pair struct{ local, remote string }

func (p pair) String() string { return p.local + " -> " + p.remote }

// New returns a federation service.
func New(cfg Config) (*Service, error) {
	if cfg.Router == nil || cfg.Certificate == nil {
		return nil, errors.New("s2s: Router and Certificate are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 1000
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.NegotiateTimeout <= 0 {
		cfg.NegotiateTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = time.Minute
	}
	if cfg.PreAuthBytes <= 0 {
		cfg.PreAuthBytes = 16384
	}
	if cfg.Roots == nil {
		roots, err := LoadRoots("")
		if err != nil {
			return nil, err
		}
		cfg.Roots = roots
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("s2s: dialback secret: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "s2s"),
		secret: secret,
		dialer: net.Dialer{Timeout: cfg.ConnectTimeout, Resolver: cfg.HostResolver},
		allow:  set(cfg.Allow),
		deny:   set(cfg.Deny),
		ctx:    ctx,
		cancel: cancel,
		out:    map[pair]*outStream{},
		in:     map[*inStream]struct{}{},
		bidi:   map[pair]*inStream{},
	}
	return s, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, d := range list {
		m[d] = true
	}
	return m
}

// permitted reports whether the policy allows federating with domain.
func (s *Service) permitted(domain string) bool {
	if s.deny[domain] {
		return false
	}
	return len(s.allow) == 0 || s.allow[domain]
}

// isLocal reports whether domain is served here: the server's domain or
// one of its services (components, the push gateway).
func (s *Service) isLocal(domain string) bool {
	return domain == s.cfg.Domain || s.cfg.Router.IsService(domain)
}

// Route sends a stanza to another server: it is queued on the stream to
// the recipient's domain, which is opened when needed. It never blocks;
// when the stanza cannot be sent its sender gets an error.
func (s *Service) Route(ctx context.Context, st *router.Stanza) {
	remote := st.To.Domainpart()
	if !s.permitted(remote) {
		s.bounce(ctx, st, xmpp.CondRemoteServerNotFound, "this server does not federate with "+remote)
		return
	}
	local := st.From.Domainpart()
	if !s.isLocal(local) {
		// A stanza of another server's user addressed to a third server:
		// nothing this server may relay.
		s.bounce(ctx, st, xmpp.CondNotAllowed, "this server does not relay stanzas between other servers")
		return
	}
	if st.El.Attr("from") == "" || st.El.Attr("to") == "" {
		// Server streams need both addresses on every stanza.
		el := st.El.ShallowCopy()
		el.SetAttr("from", st.From.String())
		el.SetAttr("to", st.To.String())
		st = &router.Stanza{El: el, From: st.From, To: st.To, Filtered: st.Filtered}
	}
	p := pair{local: local, remote: remote}
	for range 2 {
		switch s.enqueue(p, st) {
		case enqueued:
			return
		case queueFull:
			s.bounce(ctx, st, xmpp.CondResourceConstraint, "too many stanzas are waiting for "+remote)
			return
		case serviceClosed:
			s.bounce(ctx, st, xmpp.CondRemoteServerTimeout, "the server is shutting down")
			return
		}
		// The stream ended just now: take a new one.
	}
	s.bounce(ctx, st, xmpp.CondRemoteServerTimeout, "the stream to "+remote+" keeps closing")
}

// bounce returns a stanza to its sender with an error.
func (s *Service) bounce(ctx context.Context, st *router.Stanza, cond, text string) {
	s.cfg.Router.Bounce(ctx, st, xmpp.NewStanzaError(cond, text))
}

// enqueue queues st on the outgoing stream for p, starting one when there
// is none: over the peer's bidirectional stream for p when there is one,
// else over a new connection. A new stream starts with st in its queue,
// so that a stream failing at once still returns st to its sender.
func (s *Service) enqueue(p pair, st *router.Stanza) enqueueResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return serviceClosed
	}
	if o := s.out[p]; o != nil {
		r := o.enqueue(st)
		if r == streamDead {
			// Ending but not yet forgotten: drop it now, so that the
			// caller's retry starts a new stream instead of finding
			// this one again.
			delete(s.out, p)
		}
		return r
	}
	o := newOutStream(s, p)
	o.pending = append(o.pending, st)
	o.wake <- struct{}{}
	via := s.bidi[p]
	o.via = via
	s.out[p] = o
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if via != nil {
			o.runVia(s.ctx, via)
		} else {
			o.run(s.ctx)
		}
	}()
	return enqueued
}

// forget removes o from the pool if it is still there.
func (s *Service) forget(o *outStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out[o.pair] == o {
		delete(s.out, o.pair)
	}
}

// Serve accepts streams from other servers on ln until ctx ends, Close is
// called or ln fails. directTLS selects XEP-0368 direct TLS instead of
// STARTTLS.
func (s *Service) Serve(ctx context.Context, ln net.Listener, directTLS bool) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	stopSvc := context.AfterFunc(s.ctx, func() { ln.Close() })
	defer stopSvc()
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accepting a server connection failed; retrying (raise the open-files limit if this is EMFILE)", "listener", ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		in := newInStream(s, raw, directTLS)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			raw.Close()
			return nil
		}
		s.in[in] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			in.serve(s.ctx)
			s.mu.Lock()
			delete(s.in, in)
			s.mu.Unlock()
		}()
	}
}

// Close ends every stream: outgoing ones are closed, their waiting stanzas
// returned to their senders, incoming ones get a system-shutdown stream
// error. It waits for the streams' goroutines to finish.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// Stream describes one stream for operators.
type Stream struct {
	// Local and Remote are the domains the stream is between.
	Local, Remote string
	// Auth is how the sending side was authenticated: "SASL EXTERNAL",
	// "dialback", "dialback with a valid certificate"; empty while an
	// outgoing stream is being set up.
	Auth string
	// Bidi reports a bidirectional stream (XEP-0288): it also carries the
	// stanzas of the other direction, which then needs no stream of its
	// own.
	Bidi bool
}

// Status lists the streams with other servers.
type Status struct {
	// Outgoing are the streams this server opened to other servers, with
	// those still being set up; Incoming the domains authenticated on
	// streams other servers opened. A bidirectional stream is listed once,
	// on the side that opened it.
	Outgoing, Incoming []Stream
}

// Status returns the current streams.
func (s *Service) Status() Status {
	var st Status
	s.mu.Lock()
	outs := make([]*outStream, 0, len(s.out))
	for _, o := range s.out {
		if o.via == nil { // else listed with the incoming stream it uses
			outs = append(outs, o)
		}
	}
	ins := make([]*inStream, 0, len(s.in))
	for in := range s.in {
		ins = append(ins, in)
	}
	s.mu.Unlock()
	for _, o := range outs {
		auth, bidi := o.authMethod()
		st.Outgoing = append(st.Outgoing, Stream{Local: o.pair.local, Remote: o.pair.remote, Auth: auth, Bidi: bidi})
	}
	for _, in := range ins {
		st.Incoming = append(st.Incoming, in.streams()...)
	}
	return st
}

// tlsClientConfig is the TLS configuration of an outgoing stream to
// domain. The peer's certificate is verified after the handshake, so
// that the policy (EXTERNAL, dialback, refusal) can decide.
func (s *Service) tlsClientConfig(domain string, directTLS bool) *tls.Config {
	cfg := &tls.Config{
		ServerName:         domain,
		InsecureSkipVerify: true, // verified by verifyPeer against the domain
		MinVersion:         tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.cfg.Certificate(), nil
		},
	}
	if directTLS {
		cfg.NextProtos = []string{"xmpp-server"}
	}
	return cfg
}

// tlsServerConfig is the TLS configuration of incoming streams: the
// peer's certificate is requested, and verified later against the domain
// it claims.
func (s *Service) tlsServerConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cfg.Certificate(), nil },
		ClientAuth:     tls.RequestClientCert,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"xmpp-server"},
	}
}

func (s *Service) preAuthLimits() xmpp.Limits {
	l := s.cfg.Limits
	l.MaxBytes = min(max(s.cfg.PreAuthBytes, 4096), max(l.MaxBytes, 4096))
	return l
}
