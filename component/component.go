// Package component is the accept side of external components (XEP-0114,
// Jabber Component Protocol): separate services, such as gateways and
// bots, connect to the server with a shared secret and then receive every
// stanza addressed to their own domain, and send stanzas from it.
package component

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// NS is the namespace of component streams.
const NS = "jabber:component:accept"

// writeTimeout bounds one write to a component.
const writeTimeout = 30 * time.Second

// Config configures the component listener.
type Config struct {
	// Secrets maps each component's domain to its shared secret.
	Secrets map[string]string
	// Limits bound the stanzas a component sends.
	Limits xmpp.Limits
	// HandshakeTimeout bounds the time from connect to a successful handshake.
	HandshakeTimeout time.Duration
	// SendQueue caps the stanzas waiting to be written to one component;
	// when it is full the component is disconnected (it does not keep up).
	SendQueue int
	Router    *router.Router
	Logger    *slog.Logger
}

// Service accepts component connections.
type Service struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	connected map[string]*session
}

// New returns a component service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 10000
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "xep0114"),
		ctx:       ctx,
		cancel:    cancel,
		connected: map[string]*session{},
	}
}

// Configured reports whether domain is a configured component's.
func (s *Service) Configured(domain string) bool {
	_, ok := s.cfg.Secrets[domain]
	return ok
}

// Connected reports whether the component for domain is connected.
func (s *Service) Connected(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected[domain] != nil
}

// Serve accepts component connections on ln until ctx ends, Close is
// called or ln fails.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
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
			s.log.Warn("accepting a component connection failed; retrying", "listener", ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			raw.Close()
			return nil
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			newSession(s, raw).serve(s.ctx)
		}()
	}
}

// Close disconnects every component and waits for their connections to end.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// session is one component connection: a reader (serve) and, once
// authenticated, a writer goroutine fed by a bounded queue.
type session struct {
	svc    *Service
	raw    net.Conn
	reader *xmpp.Reader
	writer *bufio.Writer
	log    *slog.Logger
	domain string

	q         chan *xmpp.Element
	done      chan struct{} // closed by close
	closeOnce sync.Once
	closeErr  *xmpp.StreamError
}

func newSession(s *Service, raw net.Conn) *session {
	return &session{
		svc:    s,
		raw:    raw,
		reader: xmpp.NewReader(raw, xmpp.Limits{MaxBytes: 8192, MaxDepth: 4, MaxAttrs: 16}),
		writer: bufio.NewWriterSize(raw, 4096),
		log:    s.log.With("addr", raw.RemoteAddr().String()),
		q:      make(chan *xmpp.Element, s.cfg.SendQueue),
		done:   make(chan struct{}),
	}
}

func (c *session) close(se *xmpp.StreamError) {
	c.closeOnce.Do(func() {
		c.closeErr = se
		close(c.done)
	})
}

func (c *session) writeNow(b []byte) error {
	c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.writer.Write(b); err != nil {
		return err
	}
	return c.writer.Flush()
}

func (c *session) writeClose(se *xmpp.StreamError) {
	c.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if se != nil {
		c.writer.Write(xmpp.AppendStreamElement(nil, se.Element()))
	}
	c.writer.WriteString("</stream:stream>")
	c.writer.Flush()
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// handshakeDigest is what a component proves its secret with:
// hex(SHA-1(stream id + secret)).
func handshakeDigest(id, secret string) string {
	sum := sha1.Sum([]byte(id + secret))
	return hex.EncodeToString(sum[:])
}

func (c *session) serve(ctx context.Context) {
	defer c.raw.Close()
	c.raw.SetReadDeadline(time.Now().Add(c.svc.cfg.HandshakeTimeout))
	if err := c.handshake(); err != nil {
		se, ok := xmpp.AsStreamError(err)
		if ok {
			c.log.Warn("refused external component", "domain", c.domain, "condition", se.Condition, "reason", se.Text)
			c.writeClose(se)
		} else {
			c.log.Info("external component connection failed before its handshake", "err", err)
		}
		return
	}
	c.raw.SetReadDeadline(time.Time{})
	defer c.unregister()
	stop := context.AfterFunc(ctx, func() {
		c.close(xmpp.NewStreamError(xmpp.StreamSystemShutdown, "the server is shutting down"))
	})
	defer stop()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop(ctx)
	switch se, ok := xmpp.AsStreamError(err); {
	case ok:
		c.log.Info("closing external component stream", "domain", c.domain, "condition", se.Condition, "reason", se.Text)
		c.close(se)
	default:
		if err != nil && !isNetClosed(err) {
			c.log.Info("external component connection failed", "domain", c.domain, "err", err)
		}
		c.close(nil)
	}
	<-writerDone
	c.bounceQueued(context.WithoutCancel(ctx))
}

// bounceQueued answers the stanzas still queued for a component that went
// away, so that their senders learn they were not delivered.
func (c *session) bounceQueued(ctx context.Context) {
	for {
		select {
		case el := <-c.q:
			from, errF := jid.Parse(el.Attr("from"))
			to, errT := jid.Parse(el.Attr("to"))
			if errF != nil || errT != nil {
				continue
			}
			c.svc.cfg.Router.Bounce(ctx, &router.Stanza{El: el, From: from, To: to},
				xmpp.NewStanzaError(xmpp.CondServiceUnavailable, c.domain+" disconnected before receiving this"))
		default:
			return
		}
	}
}

// handshake reads the stream header and <handshake/> and registers the
// component's domain with the router.
func (c *session) handshake() error {
	h, err := c.reader.ReadHeader()
	id := randomID()
	if err != nil {
		if se, ok := xmpp.AsStreamError(err); ok {
			c.writeNow(xmpp.Header(xmpp.StreamHeader{NS: NS, ID: id}))
			return se
		}
		return err
	}
	if j, err := jid.Parse(h.To); err == nil {
		c.domain = j.Domainpart()
	}
	if err := c.writeNow(xmpp.Header(xmpp.StreamHeader{NS: NS, ID: id, From: c.domain})); err != nil {
		return err
	}
	if h.NS != NS {
		return xmpp.NewStreamError(xmpp.StreamInvalidNamespace, "component streams use the %s namespace", NS)
	}
	secret, ok := c.svc.cfg.Secrets[c.domain]
	if !ok {
		return xmpp.NewStreamError(xmpp.StreamHostUnknown, "no component is configured for %q", h.To)
	}
	el, err := c.reader.Next()
	if err != nil {
		return err
	}
	if !el.Is(NS, "handshake") {
		return xmpp.NewStreamError(xmpp.StreamNotAuthorized, "send <handshake/> first")
	}
	want := handshakeDigest(id, secret)
	if subtle.ConstantTimeCompare([]byte(want), []byte(el.Text())) != 1 {
		return xmpp.NewStreamError(xmpp.StreamNotAuthorized, "wrong secret for %s", c.domain)
	}
	s := c.svc
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return xmpp.NewStreamError(xmpp.StreamSystemShutdown, "the server is shutting down")
	}
	if s.connected[c.domain] != nil {
		s.mu.Unlock()
		return xmpp.NewStreamError(xmpp.StreamConflict, "a component for %s is already connected", c.domain)
	}
	if err := s.cfg.Router.AddService(c.domain, c.deliver); err != nil {
		s.mu.Unlock()
		return xmpp.NewStreamError(xmpp.StreamHostUnknown, "%s cannot be served by a component: %v", c.domain, err)
	}
	s.connected[c.domain] = c
	s.mu.Unlock()
	if err := c.writeNow([]byte("<handshake/>")); err != nil {
		c.unregister()
		return err
	}
	c.reader.SetLimits(s.cfg.Limits)
	c.log.Info("external component connected", "domain", c.domain)
	return nil
}

func (c *session) unregister() {
	s := c.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connected[c.domain] == c {
		delete(s.connected, c.domain)
		s.cfg.Router.RemoveService(c.domain)
		c.log.Info("external component disconnected", "domain", c.domain)
	}
}

// deliver is the router's handler for the component's domain.
func (c *session) deliver(ctx context.Context, st *router.Stanza) {
	el := st.El
	if el.Attr("from") == "" || el.Attr("to") == "" {
		el = el.ShallowCopy()
		el.SetAttr("from", st.From.String())
		el.SetAttr("to", st.To.String())
	}
	select {
	case <-c.done:
		c.svc.cfg.Router.Bounce(ctx, st, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, c.domain+" is not connected"))
		return
	default:
	}
	select {
	case c.q <- el:
	default:
		c.log.Warn("external component does not read its stanzas; disconnecting it", "domain", c.domain, "queued", cap(c.q))
		c.svc.cfg.Router.Bounce(ctx, st, xmpp.NewStanzaError(xmpp.CondResourceConstraint, c.domain+" is overloaded"))
		c.close(xmpp.NewStreamError(xmpp.StreamPolicyViolation, "too many stanzas queued for this component"))
	}
}

func (c *session) readLoop(ctx context.Context) error {
	for {
		el, err := c.reader.Next()
		if err != nil {
			select {
			case <-c.done:
				return nil
			default:
			}
			return err
		}
		if el.Space != NS || (el.Local != "message" && el.Local != "presence" && el.Local != "iq") {
			return xmpp.NewStreamError(xmpp.StreamUnsupportedStanza, "<%s/> is not a stanza", el.Local)
		}
		from, err := jid.Parse(el.Attr("from"))
		if err != nil || from.Domainpart() != c.domain {
			return xmpp.NewStreamError(xmpp.StreamInvalidFrom, "'from' must be an address at %s", c.domain)
		}
		to, err := jid.Parse(el.Attr("to"))
		if err != nil || el.Attr("to") == "" {
			return xmpp.NewStreamError(xmpp.StreamImproperAddressing, "stanzas need a valid 'to'")
		}
		toClientNS(el)
		c.svc.cfg.Router.Route(ctx, &router.Stanza{El: el, From: from, To: to})
	}
}

// writeLoop writes queued stanzas, flushing when the queue is empty.
func (c *session) writeLoop() {
	var buf []byte
	for {
		select {
		case el := <-c.q:
			c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
			for {
				// Written with jabber:client in scope: the elements take
				// the stream's namespace.
				buf = el.AppendXML(buf[:0], xmpp.NSClient)
				if _, err := c.writer.Write(buf); err != nil {
					c.failed(err)
					return
				}
				select {
				case el = <-c.q:
					continue
				default:
				}
				break
			}
			if err := c.writer.Flush(); err != nil {
				c.failed(err)
				return
			}
		case <-c.done:
			c.writeClose(c.closeErr)
			c.raw.SetReadDeadline(time.Now())
			return
		}
	}
}

func (c *session) failed(err error) {
	c.log.Info("writing to external component failed; disconnecting it", "domain", c.domain, "err", err)
	c.close(nil)
	c.raw.SetReadDeadline(time.Now())
}

// toClientNS moves a stanza from the component namespace into jabber:client.
func toClientNS(el *xmpp.Element) {
	if el.Space == NS {
		el.Space = xmpp.NSClient
	}
	for _, n := range el.Children {
		if c, ok := n.(*xmpp.Element); ok {
			toClientNS(c)
		}
	}
}

func isNetClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, xmpp.ErrStreamClosed)
}
