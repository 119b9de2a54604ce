package c2s

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// writeTimeout bounds one write to a client; a client that does not read
// for this long is disconnected.
const writeTimeout = 30 * time.Second

// Session is one client connection and, once bound, one resource of a user.
type Session struct {
	srv  *Server
	log  *slog.Logger
	raw  net.Conn
	conn *deadlineConn // the raw or TLS connection, with read deadlines
	tls  *tls.Conn

	reader *xmpp.Reader
	writer *bufio.Writer

	directTLS bool
	secure    bool
	jid       jid.JID // full JID once bound
	streamID  string
	lang      string

	out       chan *xmpp.Element
	done      chan struct{} // closed by Close
	writerEnd chan struct{} // closed when the writer goroutine has finished
	closeOnce sync.Once
	closeErr  *xmpp.StreamError

	mu              sync.Mutex
	closing         bool
	drained         bool
	pending         []*xmpp.Element // delivered while closing, before drain
	available       bool
	priority        int
	presence        *xmpp.Element
	directed        map[string]struct{}
	rosterRequested bool
}

func newSession(srv *Server, conn net.Conn, directTLS bool) *Session {
	s := &Session{
		srv:       srv,
		raw:       conn,
		directTLS: directTLS,
		out:       make(chan *xmpp.Element, srv.cfg.SendQueue),
		done:      make(chan struct{}),
		writerEnd: make(chan struct{}),
		streamID:  randomID(),
	}
	s.log = srv.log.With("remote", conn.RemoteAddr().String())
	s.conn = &deadlineConn{Conn: conn}
	return s
}

// JID returns the session's full JID (zero before bind).
func (s *Session) JID() jid.JID { return s.jid }

// Username returns the authenticated localpart.
func (s *Session) Username() string { return s.jid.Localpart() }

// RemoteAddr returns the client's address.
func (s *Session) RemoteAddr() net.Addr { return s.raw.RemoteAddr() }

// Available implements router.Session.
func (s *Session) Available() (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.available, s.priority
}

// Presence implements router.Session.
func (s *Session) Presence() *xmpp.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.available {
		return nil
	}
	return s.presence
}

// SetPresence records the session's broadcast presence: an available
// presence stanza with its priority, or nil for unavailable. It returns
// whether the session was available before.
func (s *Session) SetPresence(p *xmpp.Element, priority int) (wasAvailable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wasAvailable = s.available
	s.available = p != nil
	s.presence = p
	s.priority = priority
	return wasAvailable
}

// AddDirected records that the session sent directed presence to j;
// remove deletes the record (after directed unavailable).
func (s *Session) AddDirected(j string, remove bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if remove {
		delete(s.directed, j)
		return
	}
	if s.directed == nil {
		s.directed = map[string]struct{}{}
	}
	s.directed[j] = struct{}{}
}

// Directed returns the JIDs the session sent directed presence to.
func (s *Session) Directed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.directed))
	for j := range s.directed {
		out = append(out, j)
	}
	return out
}

// SetRosterRequested marks that the client fetched its roster and so is
// interested in roster pushes (RFC 6121 §2.1.6).
func (s *Session) SetRosterRequested() {
	s.mu.Lock()
	s.rosterRequested = true
	s.mu.Unlock()
}

// RosterRequested reports whether the client fetched its roster.
func (s *Session) RosterRequested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rosterRequested
}

// Deliver implements router.Session: it queues a stanza for the client
// without blocking. A session whose queue is full is closed and the stanza
// is handled as if the resource were unavailable.
func (s *Session) Deliver(el *xmpp.Element) {
	s.mu.Lock()
	if s.drained {
		s.mu.Unlock()
		s.reroute(el)
		return
	}
	if s.closing {
		s.pending = append(s.pending, el)
		s.mu.Unlock()
		return
	}
	select {
	case s.out <- el:
		s.mu.Unlock()
		return
	default:
	}
	s.closing = true
	s.pending = append(s.pending, el)
	s.mu.Unlock()
	s.log.Warn("client does not read its stanzas; closing the session", "jid", s.jid.String(), "queued", cap(s.out))
	s.Close(xmpp.NewStreamError(xmpp.StreamPolicyViolation, "too many stanzas queued for this client"))
}

// Close ends the session with a stream error (nil for a normal close). It
// returns at once; the connection goroutines finish the work.
func (s *Session) Close(serr *xmpp.StreamError) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.closeErr = serr
		close(s.done)
	})
}

// serve runs the connection: negotiation, then the stanza loop. It returns
// when the connection is gone and the session is torn down.
func (s *Session) serve(ctx context.Context) {
	defer s.raw.Close()
	start := time.Now()
	s.conn.fixed = start.Add(s.srv.cfg.AuthTimeout)
	// Watch for Close during negotiation, when no writer goroutine runs yet.
	stopWatch := context.AfterFunc(ctx, func() {
		s.Close(xmpp.NewStreamError(xmpp.StreamSystemShutdown, "the server is shutting down"))
	})
	defer stopWatch()
	negDone := make(chan struct{})
	go func() {
		select {
		case <-s.done:
			// Unblock a negotiation read; the writer takes over after bind.
			select {
			case <-negDone:
			default:
				s.conn.stopReads()
			}
		case <-negDone:
		}
	}()

	err := s.negotiate(ctx)
	close(negDone)
	if err != nil {
		s.failNegotiation(err)
		return
	}
	s.raw.SetDeadline(time.Time{})
	select {
	case <-s.done:
		// Closed during negotiation (shutdown or replaced): end now.
		s.writeClose(s.closeErr)
		s.teardown(ctx)
		return
	default:
	}
	s.conn.fixed = time.Time{}
	s.conn.idle = s.srv.cfg.IdleTimeout
	go s.writeLoop()
	err = s.readLoop(ctx)
	switch {
	case err == nil, errors.Is(err, xmpp.ErrStreamClosed):
		s.Close(nil)
	case isNetClosed(err):
		s.Close(nil)
	default:
		if se, ok := xmpp.AsStreamError(err); ok {
			s.log.Info("closing client stream", "jid", s.jid.String(), "condition", se.Condition, "reason", se.Text)
			s.Close(se)
		} else if isTimeout(err) {
			s.Close(xmpp.NewStreamError(xmpp.StreamConnectionTimeout, "no data received for %s", s.srv.cfg.IdleTimeout))
		} else {
			s.log.Debug("client connection failed", "jid", s.jid.String(), "err", err)
			s.Close(nil)
		}
	}
	<-s.writerEnd
	s.raw.Close()
	s.teardown(ctx)
}

func (s *Session) failNegotiation(err error) {
	var se *xmpp.StreamError
	switch {
	case errors.As(err, &se):
	case errors.Is(err, xmpp.ErrStreamClosed), isNetClosed(err):
		select {
		case <-s.done:
			se = s.closeErr
		default:
			return
		}
	case isTimeout(err):
		select {
		case <-s.done:
			se = s.closeErr
		default:
			se = xmpp.NewStreamError(xmpp.StreamConnectionTimeout, "authentication not completed within %s", s.srv.cfg.AuthTimeout)
		}
	default:
		s.log.Debug("client negotiation failed", "err", err)
		return
	}
	if se != nil {
		s.log.Info("closing client stream during negotiation", "condition", se.Condition, "reason", se.Text)
	}
	s.writeClose(se)
}

// writeClose writes a stream error (if any) and the closing tag, bounded in time.
func (s *Session) writeClose(se *xmpp.StreamError) {
	if s.writer == nil {
		return
	}
	s.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if se != nil {
		s.writer.Write(xmpp.AppendStreamElement(nil, se.Element()))
	}
	s.writer.WriteString("</stream:stream>")
	s.writer.Flush()
}

// readLoop reads stanzas until the stream ends.
func (s *Session) readLoop(ctx context.Context) error {
	for {
		el, err := s.reader.Next()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			return err
		}
		if err := s.handle(ctx, el); err != nil {
			return err
		}
	}
}

// writeLoop owns the socket after negotiation: it writes queued stanzas,
// flushing whenever the queue runs empty, and sends whitespace keepalives.
func (s *Session) writeLoop() {
	defer close(s.writerEnd)
	interval := s.srv.cfg.KeepaliveInterval
	if interval <= 0 {
		interval = time.Hour
	}
	keepalive := time.NewTicker(interval)
	defer keepalive.Stop()
	var buf []byte
	wrote := false
	for {
		select {
		case el := <-s.out:
			buf = el.AppendXML(buf[:0], xmpp.NSClient)
			s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := s.writer.Write(buf); err != nil {
				s.writeFailed(el, err)
				return
			}
			wrote = true
			if len(s.out) == 0 {
				if err := s.writer.Flush(); err != nil {
					s.writeFailed(nil, err)
					return
				}
			}
		case <-keepalive.C:
			if wrote {
				wrote = false
				continue
			}
			s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
			s.writer.WriteByte(' ')
			if err := s.writer.Flush(); err != nil {
				s.writeFailed(nil, err)
				return
			}
		case <-s.done:
			s.writer.Flush()
			s.writeClose(s.closeErr)
			// Unblock the reader.
			s.conn.stopReads()
			return
		}
	}
}

func (s *Session) writeFailed(el *xmpp.Element, err error) {
	s.log.Debug("write to client failed", "jid", s.jid.String(), "err", err)
	if el != nil {
		s.mu.Lock()
		s.pending = append(s.pending, el)
		s.mu.Unlock()
	}
	s.Close(nil)
	s.conn.stopReads()
}

// teardown removes a bound session from the router, tells the features,
// and re-routes stanzas that were queued but never written.
func (s *Session) teardown(ctx context.Context) {
	if s.jid.Resourcepart() == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	removed := s.srv.cfg.Router.Unbind(s)
	if h := s.srv.cfg.Hooks.Ended; h != nil {
		h(ctx, s, !removed)
	}
	s.mu.Lock()
	var left []*xmpp.Element
	for {
		select {
		case el := <-s.out:
			left = append(left, el)
			continue
		default:
		}
		break
	}
	left = append(left, s.pending...)
	s.pending = nil
	s.drained = true
	s.mu.Unlock()
	for _, el := range left {
		s.reroute(el)
	}
	s.log.Info("client session ended", "jid", s.jid.String())
}

// reroute handles a stanza that reached this session but was never written
// to the client: messages go to another resource or offline storage, IQ
// requests are answered with an error, the rest is dropped.
func (s *Session) reroute(el *xmpp.Element) {
	ctx := context.Background()
	from, _ := jid.Parse(el.Attr("from"))
	switch el.Local {
	case "message":
		switch el.Attr("type") {
		case "error", "groupchat", "headline":
			return
		}
		if el.Child(xmpp.NSClient, "body") == nil && !hasPayloadWorthKeeping(el) {
			return
		}
		to := s.jid.Bare()
		st := &router.Stanza{El: el, From: from, To: to}
		if len(s.srv.cfg.Router.Available(s.jid.Localpart())) > 0 {
			s.srv.cfg.Router.Route(ctx, st)
			return
		}
		s.srv.cfg.Router.StoreOffline(ctx, st)
	case "iq":
		if t := el.Attr("type"); t == "get" || t == "set" {
			s.srv.cfg.Router.Bounce(ctx, &router.Stanza{El: el, From: from, To: s.jid}, xmpp.NewStanzaError(xmpp.CondServiceUnavailable, "the recipient went offline"))
		}
	}
}

// hasPayloadWorthKeeping reports whether a body-less message carries content
// a user would miss (an encrypted payload).
func hasPayloadWorthKeeping(el *xmpp.Element) bool {
	for _, c := range el.Elements() {
		switch c.Space {
		case "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:openpgp:0", "jabber:x:encrypted":
			return true
		}
	}
	return false
}

// deadlineConn sets a read deadline before every read: a fixed one during
// negotiation, a rolling idle timeout after it.
type deadlineConn struct {
	net.Conn
	fixed   time.Time
	idle    time.Duration
	stopped atomic.Bool
}

// stopReads makes the current and every later Read fail at once.
func (c *deadlineConn) stopReads() {
	c.stopped.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if !c.fixed.IsZero() {
		c.Conn.SetReadDeadline(c.fixed)
	} else if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(p)
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func isNetClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
