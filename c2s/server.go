// Package c2s serves client-to-server streams (RFC 6120): STARTTLS and
// direct TLS, SASL, resource binding, and the per-connection reader and
// writer that carry stanzas between a client and the router.
package c2s

import (
	"bufio"
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

	"wren.im/wren/auth"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Hooks connect c2s to the features that act on a session's life cycle.
// Every field is optional.
type Hooks struct {
	// Bound runs after a resource was bound, before the first stanza.
	Bound func(ctx context.Context, s *Session)
	// MessageOut runs for every message a bound client sends, with 'from'
	// stamped, before it is routed (carbons copy it, the archive keeps it).
	// A hook may replace st.El with a copy; it returns true when it
	// consumed the message.
	MessageOut []func(ctx context.Context, s *Session, st *router.Stanza) bool
	// Presence handles every presence stanza the client sends (with 'from'
	// stamped). Without it, presence is routed as is.
	Presence func(ctx context.Context, s *Session, st *router.Stanza)
	// Ended runs after a bound session was removed from the router, while
	// its presence state is still readable. replaced is true when another
	// connection took over the same full JID.
	Ended func(ctx context.Context, s *Session, replaced bool)
	// PreAuthIQ answers IQs sent before authentication (in-band
	// registration). It returns the reply, or nil to refuse the IQ.
	// remoteIP is the client's address, for per-address limits.
	PreAuthIQ func(ctx context.Context, iq *xmpp.Element, remoteIP string, secure bool) *xmpp.Element
	// RegisterFeature reports whether in-band registration is advertised.
	RegisterFeature bool
	// StreamFeatures returns extra elements for the stream features
	// offered after authentication (the server's entity capabilities).
	StreamFeatures func() []*xmpp.Element
	// Resumed runs after a hibernated or half-open session was resumed on
	// a new connection (s is the new connection's session).
	Resumed func(ctx context.Context, s *Session)
	// HibernateTimeout may lengthen the time a session whose connection
	// died is kept (push-enabled mobile clients): it returns the timeout
	// to use, or 0 for the session's own.
	HibernateTimeout func(s *Session) time.Duration
	// Hibernated runs when a session hibernates, with the stanzas its
	// client has not acknowledged. It must not block.
	Hibernated func(s *Session, queued []*xmpp.Element)
	// QueuedWhileHibernated runs for every stanza queued for a hibernated
	// session (push notifications wake the device). It runs on the
	// delivering goroutine and must not block.
	QueuedWhileHibernated func(s *Session, el *xmpp.Element)
}

// Config configures the c2s service.
type Config struct {
	Domain string
	// TLS is the server's TLS configuration (certificate, TLS 1.2 minimum).
	// With GetCertificate set, the certificate can change while the server
	// runs (a reload); each connection keeps the one it was served.
	TLS *tls.Config
	// Cert returns the leaf certificate currently served, for
	// tls-server-end-point channel binding on connections whose handshake
	// did not choose a certificate through TLS.GetCertificate (a static
	// certificate, or a resumed TLS session). Nil disables that binding
	// type unless GetCertificate provides the leaf.
	Cert func() *x509.Certificate
	// AllowPlaintextLoopback allows authentication without TLS from loopback.
	AllowPlaintextLoopback bool
	// AllowPlain offers SASL PLAIN over TLS.
	AllowPlain bool
	// NoChannelBinding disables SCRAM -PLUS (behind TLS-terminating proxies).
	NoChannelBinding bool
	// ScramIterations is the iteration count of new credentials; unknown
	// users are shown the same count so that they look like real ones.
	ScramIterations int
	// Limits after authentication; PreAuthBytes bounds elements before it.
	Limits       xmpp.Limits
	PreAuthBytes int
	// AuthTimeout bounds the time from connect to bound resource.
	AuthTimeout time.Duration
	// IdleTimeout closes streams that sent nothing for this long.
	IdleTimeout time.Duration
	// KeepaliveInterval is how often a quiet stream gets a whitespace ping.
	KeepaliveInterval time.Duration
	// SendQueue is the number of stanzas a session may have queued
	// (written but unacknowledged ones included) before it is ended.
	SendQueue int
	// ResumeTimeout is how long a stream-managed session whose connection
	// died is kept for resumption when the client asks for no maximum;
	// MaxResumeTimeout caps what a client may ask for. Zero ResumeTimeout
	// disables resumption.
	ResumeTimeout, MaxResumeTimeout time.Duration
	// AckTimeout is how long the server waits for an answer to its ack
	// request before it treats the connection as dead.
	AckTimeout time.Duration
	// MaxConnsPerIP caps simultaneous connections from one address (0: no
	// cap); further ones get a policy-violation stream error.
	MaxConnsPerIP int
	// StanzaRate and StanzaBurst limit how fast one session's stanzas are
	// read (per second, token bucket). A client above the rate is slowed
	// down, not cut off: its stanzas wait in TCP. 0 disables the limit.
	StanzaRate  float64
	StanzaBurst int
	// ByteRate limits the bytes per second read from one connection
	// (token bucket, burst of one maximum stanza or one second, whichever
	// is larger); a faster client waits. 0 disables the limit.
	ByteRate int
	// FailureDelay and MaxFailureDelay slow down repeated authentication
	// failures from one address.
	FailureDelay, MaxFailureDelay time.Duration

	// AfterWrites calls fn once every storage write queued so far is on
	// disk (writes such as archive copies are queued, not waited for).
	// Stream management acks wait for it, so that what the server
	// acknowledged is durable. Nil: every write is durable when it returns.
	AfterWrites func(fn func()) error

	Accounts storage.Accounts
	Router   *router.Router
	Hooks    Hooks
	Logger   *slog.Logger
	// Metrics receives counts of connections, authentications, stanzas
	// and stream management events. Nil counts nothing.
	Metrics Metrics
}

// Server accepts client connections on any number of listeners.
type Server struct {
	// unknownUserSecret keeps the fake SCRAM salt of a non-existent user
	// stable across attempts, so that probing does not reveal accounts.
	unknownUserSecret []byte
	cfg               Config
	log               *slog.Logger
	failures          *failureTracker

	// Buffers lent to sessions for the time of one read or write batch,
	// so that idle connections hold none.
	readBufs  *xmpp.BufferPool
	writeBufs sync.Pool // *bufio.Writer
	scratch   sync.Pool // *[]byte, one stanza's serialization

	// poller parks the sockets of idle sessions (nil where there is no
	// epoll); started by the first Serve, stopped by Shutdown.
	pollerOnce sync.Once
	poller     *poller

	mu       sync.Mutex
	sessions map[*Session]struct{}
	perIP    map[string]int
	wg       sync.WaitGroup

	smMu      sync.Mutex
	resumable map[string]*Session // stream management id -> session
	stale     map[string]staleSession
}

// staleSession remembers an ended resumable session for a while, so that
// a late resume gets <failed h='...'/> and the client can tell what of its
// last stanzas the server handled (XEP-0198 §5).
type staleSession struct {
	bare    string
	h       uint32
	expires time.Time
}

const (
	staleMemory = time.Hour
	staleMax    = 10000
)

// New returns a c2s server.
func New(cfg Config) (*Server, error) {
	if cfg.TLS == nil && !cfg.AllowPlaintextLoopback {
		return nil, errors.New("c2s: a TLS configuration is required")
	}
	if cfg.TLS != nil {
		t := cfg.TLS.Clone()
		if t.MinVersion < tls.VersionTLS12 {
			t.MinVersion = tls.VersionTLS12
		}
		if get := t.GetCertificate; get != nil {
			// Remember on the connection the certificate it is served:
			// tls-server-end-point channel binding must hash that one,
			// even if a reload swaps the server's certificate before
			// authentication. (Done here once rather than with a
			// configuration cloned for every connection.)
			t.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				c, err := get(hello)
				if dc, ok := hello.Conn.(*deadlineConn); ok && err == nil && c != nil {
					dc.served = c
				}
				return c, err
			}
		}
		cfg.TLS = t
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("c2s: random secret: %w", err)
	}
	srv := &Server{
		unknownUserSecret: secret,
		cfg:               cfg,
		log:               cfg.Logger.With("component", "c2s"),
		failures:          newFailureTracker(cfg.FailureDelay, cfg.MaxFailureDelay),
		readBufs:          xmpp.NewBufferPool(ioBufferSize),
		sessions:          map[*Session]struct{}{},
		perIP:             map[string]int{},
		resumable:         map[string]*Session{},
		stale:             map[string]staleSession{},
	}
	srv.writeBufs.New = func() any { return bufio.NewWriterSize(nil, ioBufferSize) }
	srv.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	return srv, nil
}

// ioBufferSize is the size of the read and write buffers lent to sessions.
const ioBufferSize = 4096

// Serve accepts connections on ln until ctx is cancelled or ln fails.
// directTLS selects XEP-0368 direct TLS instead of STARTTLS.
func (srv *Server) Serve(ctx context.Context, ln net.Listener, directTLS bool) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	srv.pollerOnce.Do(func() {
		p, err := newPoller(srv.log)
		if err != nil {
			srv.log.Debug("idle connections keep a goroutine each", "err", err)
			return
		}
		srv.mu.Lock()
		srv.poller = p
		srv.mu.Unlock()
	})
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors or a transient network error: keep
			// the listener, back off, try again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			srv.log.Warn("accepting a client connection failed; retrying (raise the open-files limit if this is EMFILE)", "listener", ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		srv.cfg.Metrics.ConnectionAccepted(directTLS)
		s := newSession(srv, conn, directTLS)
		ip := remoteIP(conn.RemoteAddr())
		srv.mu.Lock()
		srv.sessions[s] = struct{}{}
		srv.perIP[ip]++
		s.overLimit = srv.cfg.MaxConnsPerIP > 0 && srv.perIP[ip] > srv.cfg.MaxConnsPerIP
		srv.wg.Add(1)
		srv.mu.Unlock()
		s.onEnd = func() {
			srv.mu.Lock()
			delete(srv.sessions, s)
			if srv.perIP[ip]--; srv.perIP[ip] <= 0 {
				delete(srv.perIP, ip)
			}
			srv.mu.Unlock()
		}
		// srv.wg counts the connection until Session.finish.
		go s.serve(ctx)
	}
}

// Shutdown ends every session, live or hibernated, with system-shutdown:
// stanzas their clients have not acknowledged go to offline storage. It
// waits for them to end or for ctx to expire.
func (srv *Server) Shutdown(ctx context.Context) error {
	shutdown := xmpp.NewStreamError(xmpp.StreamSystemShutdown, "the server is shutting down")
	srv.mu.Lock()
	for s := range srv.sessions {
		s.terminate(shutdown)
	}
	srv.mu.Unlock()
	srv.smMu.Lock()
	var hibernated []*Session
	for _, s := range srv.resumable {
		hibernated = append(hibernated, s)
	}
	srv.smMu.Unlock()
	for _, s := range hibernated {
		s.terminate(shutdown)
	}
	done := make(chan struct{})
	go func() { srv.wg.Wait(); close(done) }()
	select {
	case <-done:
		srv.mu.Lock()
		p := srv.poller
		srv.mu.Unlock()
		if p != nil {
			p.close()
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Parked returns the number of connections whose sessions are parked:
// idle, with no goroutine, their sockets watched by the server's poller.
func (srv *Server) Parked() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	n := 0
	for s := range srv.sessions {
		if s.parked.Load() {
			n++
		}
	}
	return n
}

// Connections returns the number of open client connections.
func (srv *Server) Connections() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}

// saslServer returns the SASL server for a connection; leaf is the
// certificate that connection was served, or nil when unknown.
func (srv *Server) saslServer(state *tls.ConnectionState, leaf *x509.Certificate) *auth.Server {
	if leaf == nil && state != nil && srv.cfg.Cert != nil {
		leaf = srv.cfg.Cert()
	}
	return &auth.Server{
		Domain:     srv.cfg.Domain,
		Lookup:     srv.cfg.Accounts.Account,
		TLS:        state,
		ServerCert: leaf,
		AllowPlain: srv.cfg.AllowPlain,

		NoChannelBinding:      srv.cfg.NoChannelBinding,
		UnknownUserSecret:     srv.unknownUserSecret,
		UnknownUserIterations: srv.cfg.ScramIterations,
	}
}

// failureTracker slows down repeated authentication failures per address.
type failureTracker struct {
	base, max time.Duration
	mu        sync.Mutex
	byAddr    map[string]failureRecord
}

type failureRecord struct {
	count int
	last  time.Time
}

const failureMemory = 10 * time.Minute

func newFailureTracker(base, maxDelay time.Duration) *failureTracker {
	return &failureTracker{base: base, max: maxDelay, byAddr: map[string]failureRecord{}}
}

// fail records a failure from addr and returns how long to wait before
// answering it.
func (f *failureTracker) fail(addr string, now time.Time) time.Duration {
	if f.base <= 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.byAddr) > 4096 {
		for a, r := range f.byAddr {
			if now.Sub(r.last) > failureMemory {
				delete(f.byAddr, a)
			}
		}
	}
	r := f.byAddr[addr]
	if now.Sub(r.last) > failureMemory {
		r.count = 0
	}
	r.count++
	r.last = now
	f.byAddr[addr] = r
	if r.count == 1 {
		// A single typo costs nothing; repeated failures do.
		return 0
	}
	d := f.base
	for i := 2; i < r.count && d < f.max; i++ {
		d *= 2
	}
	return min(d, f.max)
}

// succeed forgets the failures of addr.
func (f *failureTracker) succeed(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byAddr, addr)
}

// registerResumable makes a session findable by its stream management id.
func (srv *Server) registerResumable(s *Session) {
	srv.smMu.Lock()
	defer srv.smMu.Unlock()
	srv.resumable[s.smID] = s
}

// forgetResumable removes an ended session and remembers its final count.
func (srv *Server) forgetResumable(s *Session) {
	if s.smID == "" {
		return
	}
	now := time.Now()
	srv.smMu.Lock()
	defer srv.smMu.Unlock()
	if srv.resumable[s.smID] != s {
		return
	}
	delete(srv.resumable, s.smID)
	if len(srv.stale) >= staleMax {
		for id, st := range srv.stale {
			if now.After(st.expires) || len(srv.stale) >= staleMax {
				delete(srv.stale, id)
			}
		}
	}
	srv.stale[s.smID] = staleSession{bare: s.jid.Bare().String(), h: s.handledIn, expires: now.Add(staleMemory)}
}

// lookupResumable finds the session with that id if it belongs to bare.
// Otherwise it returns nil and, when an ended session of the same user is
// remembered, its final h (else -1). Sessions of other users are never
// returned nor disturbed.
func (srv *Server) lookupResumable(id, bare string) (*Session, int64) {
	srv.smMu.Lock()
	defer srv.smMu.Unlock()
	if s := srv.resumable[id]; s != nil && s.jid.Bare().String() == bare {
		return s, -1
	}
	if st, ok := srv.stale[id]; ok && st.bare == bare && time.Now().Before(st.expires) {
		return nil, int64(st.h)
	}
	return nil, -1
}

// Hibernated returns the number of sessions waiting for a resume.
func (srv *Server) Hibernated() int {
	srv.smMu.Lock()
	defer srv.smMu.Unlock()
	n := 0
	for _, s := range srv.resumable {
		if s.Hibernated() {
			n++
		}
	}
	return n
}
