package c2s

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// writeTimeout bounds one write to a client; a client that does not read
// for this long is disconnected.
const writeTimeout = 30 * time.Second

// Session life cycle. A session is "active" while a connection serves it,
// "hibernated" when its connection died but stream management keeps it for
// a resume, "resumed" once another connection took it over (this object is
// then dead, its state moved), and "ended" after teardown.
type sessionState int

const (
	stateNegotiating sessionState = iota
	stateActive
	stateHibernated
	stateResumed
	stateEnded
)

// Session is one client connection and, once bound, one resource of a user.
type Session struct {
	srv  *Server
	raw  net.Conn
	conn *deadlineConn // the raw connection, with read deadlines
	tls  *tls.Conn

	// in is the buffered input of reader, holding a buffer only while it
	// has unread bytes; out is where the session writes (the connection,
	// or its TLS layer), through a buffer borrowed for each batch.
	in     *xmpp.PooledReader
	reader *xmpp.Reader
	out    io.Writer
	negOut []byte // negotiation output not yet written (writeRaw)

	directTLS bool
	overLimit bool // too many connections from this address
	secure    bool
	// servedLeaf is the certificate this connection's TLS handshake
	// presented, when known (set during the handshake).
	servedLeaf *x509.Certificate
	jid        jid.JID // full JID once bound
	streamID   string
	lang       string

	q         *outQueue
	done      chan struct{} // closed by Close: the connection must end
	connDone  chan struct{} // closed when serve has stopped using the connection
	closeOnce sync.Once
	closeErr  *xmpp.StreamError

	// The reader after negotiation (see spawnReader and waitInput). ctx
	// is the server's; stopWatch ends the session when it is done. fd is
	// the socket (-1 if none) parked with the server's poller while
	// parked is set; idleTimer ends a parked session that stays quiet.
	ctx         context.Context
	stopWatch   func() bool
	limiter     *rate.Limiter
	fd          int
	parked      atomic.Bool
	idleTimer   *time.Timer
	idleExpired atomic.Bool
	// onEnd, set by the server, runs when the connection is finished.
	onEnd func()

	// The writer (see startWriting). wmu guards wRunning (a flush
	// goroutine runs), wAgain (work arrived meanwhile) and wStopped (no
	// flush may start: before writing started and after the end).
	wmu          sync.Mutex
	wRunning     bool
	wAgain       bool
	wStopped     bool
	flushes      sync.WaitGroup
	keepalive    *time.Timer
	wrote        atomic.Bool // written since the last keepalive tick
	keepaliveDue atomic.Bool

	// Stream management (XEP-0198). smEnabled, smID, smTimeout and
	// handledIn are touched only by the connection's goroutine, and read by
	// a resuming connection after connDone.
	smEnabled bool
	smID      string
	smTimeout time.Duration
	handledIn uint32

	// leaving is set when teardown starts: the router stops choosing this
	// session for bare-JID delivery. rerouteMu is held while teardown
	// reroutes the queue, so that stanzas arriving meanwhile are rerouted
	// after the older ones and order is kept.
	leaving   atomic.Bool
	rerouteMu sync.Mutex
	// hibernating mirrors state == stateHibernated for the delivery path,
	// which reads it without the lock.
	hibernating atomic.Bool
	// replacedOnBind is set when a new connection bound the same full JID:
	// the old session is torn down before the new one can send presence.
	replacedOnBind bool

	// IQ requests the client sent and awaits answers to (iqtrack.go).
	iqMu      sync.Mutex
	pendingIQ map[iqKey]struct{}
	iqOrder   []iqKey

	mu              sync.Mutex
	state           sessionState
	boundAt         time.Time // when the resource was bound (kept across resumes)
	smResumable     bool
	hibernateTime   *time.Timer
	hibernatedAt    time.Time
	hibernateFor    time.Duration
	available       bool
	priority        int
	presence        *xmpp.Element
	directed        map[string]struct{}
	rosterRequested bool
	// blocklistRequested: the client fetched its blocklist (XEP-0191).
	blocklistRequested bool
}

func newSession(srv *Server, conn net.Conn, directTLS bool) *Session {
	s := &Session{
		srv:       srv,
		raw:       conn,
		directTLS: directTLS,
		q:         newOutQueue(srv.cfg.SendQueue),
		done:      make(chan struct{}),
		connDone:  make(chan struct{}),
		wStopped:  true,
		fd:        -1,
		streamID:  randomID(),
	}
	s.conn = &deadlineConn{Conn: conn, pool: srv.readBufs}
	if r := srv.cfg.ByteRate; r > 0 {
		burst := max(r, srv.cfg.Limits.MaxBytes, 4096)
		s.conn.limiter = rate.NewLimiter(rate.Limit(r), burst)
		s.conn.stop = s.done
	}
	return s
}

// logger returns the session's logger: the server's, with the client's
// address and, once known, its account or full JID. Built for each use,
// so that a session holds no logger of its own.
func (s *Session) logger() *slog.Logger {
	switch {
	case s.jid.Resourcepart() != "":
		return s.srv.log.With("remote", s.raw.RemoteAddr().String(), "jid", s.jid.String())
	case s.jid.Localpart() != "":
		return s.srv.log.With("remote", s.raw.RemoteAddr().String(), "user", s.jid.String())
	}
	return s.srv.log.With("remote", s.raw.RemoteAddr().String())
}

// JID returns the session's full JID (zero before bind).
func (s *Session) JID() jid.JID { return s.jid }

// Username returns the authenticated localpart.
func (s *Session) Username() string { return s.jid.Localpart() }

// RemoteAddr returns the client's address.
func (s *Session) RemoteAddr() net.Addr { return s.raw.RemoteAddr() }

// Hibernated reports whether the session waits for a resume.
func (s *Session) Hibernated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateHibernated
}

// QueueDepth returns the number of stanzas not yet acknowledged by the client.
func (s *Session) QueueDepth() int { return s.q.depth() }

// Available implements router.Session.
func (s *Session) Available() (bool, int) {
	if s.leaving.Load() {
		return false, 0
	}
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

// SetBlocklistRequested marks that the client fetched its blocklist and
// so is interested in blocklist pushes (XEP-0191 §3.2).
func (s *Session) SetBlocklistRequested() {
	s.mu.Lock()
	s.blocklistRequested = true
	s.mu.Unlock()
}

// BlocklistRequested reports whether the client fetched its blocklist.
func (s *Session) BlocklistRequested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocklistRequested
}

// RosterRequested reports whether the client fetched its roster.
func (s *Session) RosterRequested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rosterRequested
}

// Deliver implements router.Session: it queues a stanza for the client
// without blocking. A stanza for a session that has ended is handled as if
// the resource were unavailable; a session whose queue overflows is ended
// the same way.
func (s *Session) Deliver(el *xmpp.Element) {
	if el.Local == "iq" {
		if t := el.Attr("type"); (t == "result" || t == "error") && !s.expectedReply(el) {
			s.logger().Debug("dropped an IQ answer to a request the client never sent", "from", el.Attr("from"), "id", el.Attr("id"))
			return
		}
	}
	s.deliver(el)
}

// deliver queues a stanza without the IQ answer check (replies the
// session itself generates).
func (s *Session) deliver(el *xmpp.Element) {
	ok, overflow := s.q.push(el, time.Now())
	if !ok {
		// Wait until teardown has rerouted the older stanzas.
		s.rerouteMu.Lock()
		s.rerouteMu.Unlock()
		s.reroute(queued{el: el, at: time.Now()})
		return
	}
	if s.hibernating.Load() {
		if h := s.srv.cfg.Hooks.QueuedWhileHibernated; h != nil {
			h(s, el)
		}
	}
	if overflow {
		s.logger().Warn("client does not read or acknowledge its stanzas; ending the session", "jid", s.jid.String(), "queued", s.q.depth(), "limit", s.srv.cfg.SendQueue)
		s.stalled()
	}
}

// Close ends the session's connection with a stream error (nil for a
// normal close). It returns at once; the connection goroutines finish the
// work. A session with stream management may hibernate afterwards; use
// terminate to end it for good.
func (s *Session) Close(serr *xmpp.StreamError) {
	s.closeOnce.Do(func() {
		s.closeErr = serr
		close(s.done)
		s.kick() // the flush writes the end (once writing started)
	})
}

// stalled ends a session whose client does not keep up: its queue is
// rerouted at once (so memory stays bounded while senders go on), a write
// blocked on the client's full TCP window is aborted, and the connection
// is closed with policy-violation.
func (s *Session) stalled() {
	s.mu.Lock()
	s.smResumable = false
	s.mu.Unlock()
	s.Close(xmpp.NewStreamError(xmpp.StreamPolicyViolation, "too many stanzas queued for this client"))
	s.raw.SetWriteDeadline(time.Now())
	s.teardown(context.Background())
}

// replaced ends a session whose full JID a new connection has just bound:
// the old connection gets a conflict stream error, and the session is torn
// down now (its contacts see it go unavailable, its queue is rerouted)
// before the new session can announce itself.
func (s *Session) replaced() {
	s.mu.Lock()
	s.smResumable = false
	s.replacedOnBind = true
	s.mu.Unlock()
	s.Close(xmpp.NewStreamError(xmpp.StreamConflict, "replaced by a new connection for the same resource"))
	s.teardown(context.Background())
}

// terminate ends the logical session for good: the connection (if any) is
// closed and, whatever the state, the session is torn down and its queue
// rerouted.
func (s *Session) terminate(serr *xmpp.StreamError) {
	s.mu.Lock()
	st := s.state
	if st == stateActive || st == stateNegotiating {
		// The connection goroutine tears down when it sees this.
		s.smResumable = false
	}
	s.mu.Unlock()
	switch st {
	case stateHibernated:
		s.teardown(context.Background())
	case stateActive, stateNegotiating:
		s.Close(serr)
	}
}

// serve runs the connection: negotiation, then the stanza loop. It returns
// when the connection is gone; the session is then torn down, hibernated,
// or handed to the connection that resumed it.
func (s *Session) serve(ctx context.Context) {
	start := time.Now()
	s.conn.fixed = start.Add(s.srv.cfg.AuthTimeout)
	s.ctx = ctx
	s.stopWatch = context.AfterFunc(ctx, func() {
		s.terminate(xmpp.NewStreamError(xmpp.StreamSystemShutdown, "the server is shutting down"))
	})
	handedOver := false
	defer func() {
		if !handedOver {
			s.finish()
		}
	}()
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
		if s.jid.Resourcepart() != "" {
			// Bound (or resumed) but the last negotiation write failed.
			s.endConnection(ctx, false)
		}
		return
	}
	s.raw.SetDeadline(time.Time{})
	s.conn.fixed = time.Time{}
	s.conn.idle = s.srv.cfg.IdleTimeout
	select {
	case <-s.done:
		// Closed during negotiation (shutdown or replaced).
		s.writeClose(s.closeErr)
		s.endConnection(ctx, false)
		return
	default:
	}
	// The stanza loop runs on a new goroutine: this one's stack grew deep
	// during the TLS handshake and authentication, and a connection spends
	// its life waiting with what its stanza loop needs, much less.
	handedOver = true
	if err := s.flushOut(); err != nil {
		// The bind (or resume) answer could not be written.
		s.endConnection(ctx, false)
		s.finish()
		return
	}
	s.negOut = nil
	// From now on the reader does not wait by itself (see waitInput).
	s.in.SetWait(nil)
	if s.srv.cfg.StanzaRate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(s.srv.cfg.StanzaRate), max(1, s.srv.cfg.StanzaBurst))
	}
	s.fd = socketFD(s.raw)
	s.conn.onStop = s.wake
	s.startWriting()
	s.spawnReader()
}

// finish releases the connection once nothing uses it any more.
func (s *Session) finish() {
	s.stopWatch()
	close(s.connDone)
	if s.fd >= 0 && s.srv.poller != nil {
		s.srv.poller.forget(s.fd, s)
	}
	s.raw.Close()
	if s.onEnd != nil {
		s.onEnd()
	}
	s.srv.wg.Done() // added by Serve for this connection
}

// spawnReader runs the stanza loop on a new goroutine, after negotiation
// and whenever a parked connection has input again.
// The server's wait group counts the connection, not this goroutine: a
// parked connection has none.
func (s *Session) spawnReader() {
	go s.readOn()
}

// wake continues the stanza loop of a parked session: the poller saw input
// (or the end of the connection), the idle timeout expired, or stopReads
// ran. It does nothing when the session is not parked.
func (s *Session) wake() {
	if !s.parked.CompareAndSwap(true, false) {
		return
	}
	if s.idleTimer != nil {
		s.idleTimer.Stop()
	}
	s.spawnReader()
}

// errParked is returned by readLoop when the session parked its socket:
// the goroutine ends, and wake starts another when there is input.
var errParked = errors.New("c2s: connection parked")

// parkAfter is how long a reader waits for its client on the runtime's
// poller before parking the socket and ending its goroutine: a client in
// a conversation sends again soon, an idle one costs no goroutine.
const parkAfter = time.Second

// waitInput waits until the client sends something. Past parkAfter it
// parks the socket with the server's poller and returns errParked.
func (s *Session) waitInput() error {
	if s.srv.poller == nil || s.fd < 0 {
		return s.conn.waitReadable()
	}
	if s.idleExpired.Swap(false) {
		return os.ErrDeadlineExceeded
	}
	idle := s.conn.idle
	if idle > 0 && idle <= parkAfter {
		return s.conn.waitReadable()
	}
	err := s.conn.waitReadableFor(parkAfter)
	if err == nil || !isTimeout(err) || s.conn.stopped.Load() {
		return err
	}
	// The timer is set before parked, which publishes it to wake.
	if idle > 0 {
		left := idle - parkAfter
		if s.idleTimer == nil {
			s.idleTimer = time.AfterFunc(left, s.idleTimeout)
		} else {
			s.idleTimer.Reset(left)
		}
	}
	s.parked.Store(true)
	if err := s.srv.poller.park(s.fd, s); err != nil {
		if !s.parked.CompareAndSwap(true, false) {
			return errParked // woken meanwhile: the new goroutine goes on
		}
		if s.idleTimer != nil {
			s.idleTimer.Stop()
		}
		s.logger().Debug("cannot park an idle connection; its reader keeps waiting", "err", err)
		return s.conn.waitReadable()
	}
	if s.conn.stopped.Load() || s.idleExpired.Load() {
		s.wake() // stopReads or the timer ran before the session was parked
	}
	return errParked
}

// idleTimeout ends a parked session that sent nothing for the idle timeout.
func (s *Session) idleTimeout() {
	s.idleExpired.Store(true)
	s.wake()
}

// readOn runs the stanza loop until the session parks or the stream ends;
// then it finishes the connection (hibernation or teardown).
func (s *Session) readOn() {
	ctx := s.ctx
	err := s.readLoop(ctx)
	if errors.Is(err, errParked) {
		return
	}
	clientClosed := false
	switch {
	case err == nil:
	case errors.Is(err, xmpp.ErrStreamClosed):
		// The client ended the stream: no hibernation (XEP-0198 §5).
		clientClosed = true
		s.Close(nil)
	case isNetClosed(err):
		s.Close(nil)
	default:
		if se, ok := xmpp.AsStreamError(err); ok {
			s.logger().Info("closing client stream", "condition", se.Condition, "reason", se.Text)
			s.Close(se)
			clientClosed = true
		} else if isTimeout(err) {
			s.Close(xmpp.NewStreamError(xmpp.StreamConnectionTimeout, "no data received for %s", s.srv.cfg.IdleTimeout))
		} else {
			s.logger().Debug("client connection failed", "err", err)
			s.Close(nil)
		}
	}
	s.stopWriting()
	s.raw.Close()
	s.endConnection(ctx, clientClosed)
	s.finish()
}

// endConnection decides what happens to the session when its connection
// is gone: hibernate for a resume, or tear down.
func (s *Session) endConnection(ctx context.Context, clientClosed bool) {
	s.mu.Lock()
	switch s.state {
	case stateResumed, stateEnded:
		s.mu.Unlock()
		return
	}
	hibernate := s.smResumable && !clientClosed &&
		(s.closeErr == nil || s.closeErr.Condition == xmpp.StreamConnectionTimeout)
	if hibernate {
		timeout := s.smTimeout
		if h := s.srv.cfg.Hooks.HibernateTimeout; h != nil {
			s.mu.Unlock()
			timeout = max(timeout, h(s))
			s.mu.Lock()
			if s.state == stateResumed || s.state == stateEnded {
				s.mu.Unlock()
				return
			}
		}
		s.state = stateHibernated
		s.hibernating.Store(true)
		s.hibernatedAt = time.Now()
		s.hibernateFor = timeout
		s.hibernateTime = time.AfterFunc(timeout, s.hibernationExpired)
		s.mu.Unlock()
		s.srv.cfg.Metrics.SMHibernated()
		s.logger().Info("client connection lost; session hibernated for resumption", "timeout", timeout, "queued", s.q.depth())
		if h := s.srv.cfg.Hooks.Hibernated; h != nil {
			h(s, s.q.snapshot())
		}
		return
	}
	s.mu.Unlock()
	s.teardown(ctx)
}

// LimitHibernation shortens the hibernation of a session to end at most d
// from now (a push-enabled session kept long until its device was woken).
// It does nothing when the session is not hibernated or would end sooner.
func (s *Session) LimitHibernation(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateHibernated || s.hibernateTime == nil {
		return
	}
	now := time.Now()
	if s.hibernatedAt.Add(s.hibernateFor).Before(now.Add(d)) {
		return
	}
	s.hibernateTime.Stop()
	s.hibernateFor = now.Add(d).Sub(s.hibernatedAt)
	s.hibernateTime = time.AfterFunc(d, s.hibernationExpired)
	s.logger().Info("hibernated session's resumption time shortened after its device was woken", "resume_within", d)
}

// HibernatedFor returns how long the session has been hibernated and how
// long it is kept in total; zero when it is not hibernated.
func (s *Session) HibernatedFor() (since, timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateHibernated {
		return 0, 0
	}
	return time.Since(s.hibernatedAt), s.hibernateFor
}

// ResumeTimeout returns the session's normal resumption timeout (0 when it
// cannot be resumed).
func (s *Session) ResumeTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.smResumable {
		return 0
	}
	return s.smTimeout
}

func (s *Session) hibernationExpired() {
	s.mu.Lock()
	if s.state != stateHibernated {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.srv.cfg.Metrics.SMTimedOut()
	s.logger().Info("hibernated session was not resumed in time; ending it", "timeout", s.hibernateFor)
	s.teardown(context.Background())
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
		s.logger().Debug("client negotiation failed", "err", err)
		return
	}
	if se != nil {
		s.logger().Info("closing client stream during negotiation", "condition", se.Condition, "reason", se.Text)
	}
	s.writeClose(se)
}

// writeClose writes a stream error (if any) and the closing tag, bounded in time.
func (s *Session) writeClose(se *xmpp.StreamError) {
	if s.out == nil {
		return
	}
	s.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	b := s.negOut // negotiation output still queued goes first
	s.negOut = nil
	if se != nil {
		b = xmpp.AppendStreamElement(b, se.Element())
	}
	s.out.Write(append(b, "</stream:stream>"...))
}

// readLoop reads stanzas until the stream ends. With a stanza rate limit
// it waits before reading the next stanza, so that a flooding client is
// slowed down by TCP flow control instead of losing data.
func (s *Session) readLoop(ctx context.Context) error {
	for {
		if limiter := s.limiter; limiter != nil {
			if d := limiter.Reserve().Delay(); d > 0 {
				select {
				case <-time.After(d):
				case <-s.done:
					return nil
				}
			}
		}
		if !s.in.Pending() && s.conn.buffered() == 0 {
			// Wait for the client here, at the top of the loop, with no
			// buffer held and a shallow stack, or with no goroutine at all
			// once parked.
			if err := s.waitInput(); err != nil {
				if errors.Is(err, errParked) {
					return err
				}
				select {
				case <-s.done:
					return nil
				default:
				}
				return err
			}
		}
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

// The writer. After negotiation, queued stanzas are written by a flush
// goroutine that the queue starts when it gets something (kick) and that
// ends once the queue is empty, so that an idle session has no goroutine
// of its own besides its reader. A timer (tick) checks acks and writes
// whitespace keepalives through the same path. The connection's end (done
// closed) is written by the last flush: what is still queued, then the
// stream error and the closing tag.

// startWriting hands the connection's writes to flush goroutines.
func (s *Session) startWriting() {
	s.wmu.Lock()
	s.wStopped = false
	s.wmu.Unlock()
	s.q.setWaker(s.kick)
	interval := s.srv.cfg.KeepaliveInterval
	if interval <= 0 {
		interval = time.Hour
	}
	s.keepalive = time.AfterFunc(interval, func() { s.tick(interval) })
	s.kick()
}

// stopWriting stops the keepalive timer and waits for a running flush;
// after it no flush starts again.
func (s *Session) stopWriting() {
	if s.keepalive != nil {
		s.keepalive.Stop()
	}
	s.wmu.Lock()
	s.wStopped = true
	s.wmu.Unlock()
	s.flushes.Wait()
}

// kick makes sure a flush goroutine runs: it starts one, or tells the
// running one to look at the queue again.
func (s *Session) kick() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch {
	case s.wStopped:
	case s.wRunning:
		s.wAgain = true
	default:
		s.wRunning = true
		s.flushes.Add(1)
		go s.flush()
	}
}

// flush writes until the queue is empty, or ends the connection's output
// once done is closed.
func (s *Session) flush() {
	defer s.flushes.Done()
	var batch []*xmpp.Element
	for {
		select {
		case <-s.done:
			s.writeEnd()
			return
		default:
		}
		batch = s.q.take(time.Now(), batch[:0])
		if len(batch) > 0 {
			s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
			err := s.writeBatch(batch)
			clear(batch)
			if err != nil {
				s.stopFlushing()
				s.writeFailed(err)
				return
			}
			s.wrote.Store(true)
		} else if s.keepaliveDue.Swap(false) {
			s.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := s.out.Write([]byte{' '}); err != nil {
				s.stopFlushing()
				s.writeFailed(err)
				return
			}
		}
		s.wmu.Lock()
		if !s.wAgain {
			s.wRunning = false
			s.wmu.Unlock()
			return
		}
		s.wAgain = false
		s.wmu.Unlock()
	}
}

// stopFlushing marks the output finished: no flush starts again.
func (s *Session) stopFlushing() {
	s.wmu.Lock()
	s.wStopped, s.wRunning = true, false
	s.wmu.Unlock()
}

// writeEnd writes what was queued before the close (an IQ result just
// before a kick, say), bounded in time, then the stream error and the
// closing tag, and unblocks the reader.
func (s *Session) writeEnd() {
	s.stopFlushing()
	batch := s.q.take(time.Now(), nil)
	s.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	s.writeBatch(batch)
	s.writeClose(s.closeErr)
	s.conn.stopReads()
}

// tick runs every interval while the connection is up: a client that
// does not answer an ack request in time is treated as gone, and a quiet
// stream gets a whitespace keepalive.
func (s *Session) tick(interval time.Duration) {
	if s.writingStopped() {
		return
	}
	if s.q.ackOverdue(time.Now(), s.srv.cfg.AckTimeout) {
		s.logger().Info("client did not answer an ack request; treating the connection as dead", "waited", s.srv.cfg.AckTimeout)
		s.Close(nil)
		s.conn.stopReads()
		s.raw.Close()
		return
	}
	if !s.wrote.Swap(false) {
		s.keepaliveDue.Store(true)
		s.kick()
	}
	if !s.writingStopped() { // else stopWriting has stopped the timer
		s.keepalive.Reset(interval)
	}
}

func (s *Session) writingStopped() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.wStopped
}

// writeBatch writes stanzas through a buffer borrowed for the batch
// (flushed whenever full, and at the end), so that an idle session holds
// no write buffer.
func (s *Session) writeBatch(batch []*xmpp.Element) error {
	w := s.srv.writeBufs.Get().(*bufio.Writer)
	w.Reset(s.out)
	defer func() {
		w.Reset(nil)
		s.srv.writeBufs.Put(w)
	}()
	buf := s.srv.scratch.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 64<<10 { // not the buffer of an exceptional stanza
			s.srv.scratch.Put(buf)
		}
	}()
	for _, el := range batch {
		*buf = el.AppendXML((*buf)[:0], xmpp.NSClient)
		if _, err := w.Write(*buf); err != nil {
			return err
		}
		s.srv.cfg.Metrics.StanzaOut(el.Local)
	}
	return w.Flush()
}

func (s *Session) writeFailed(err error) {
	s.logger().Debug("write to client failed", "err", err)
	s.Close(nil)
	s.conn.stopReads()
}

// teardown ends the logical session: it leaves the router, tells the
// features (unavailable presence), and reroutes every stanza the client
// has not acknowledged. It runs once.
func (s *Session) teardown(ctx context.Context) {
	s.mu.Lock()
	if s.state == stateEnded || s.state == stateResumed {
		s.mu.Unlock()
		return
	}
	s.state = stateEnded
	s.hibernating.Store(false)
	if s.hibernateTime != nil {
		s.hibernateTime.Stop()
	}
	s.mu.Unlock()
	if s.jid.Resourcepart() == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	s.leaving.Store(true)
	s.rerouteMu.Lock()
	left := s.q.close()
	for _, item := range left {
		s.reroute(item)
	}
	s.srv.forgetResumable(s)
	removed := s.srv.cfg.Router.Unbind(s)
	s.rerouteMu.Unlock()
	if h := s.srv.cfg.Hooks.Ended; h != nil {
		h(ctx, s, !removed && !s.replacedOnBind)
	}
	s.logger().Info("client session ended", "rerouted", len(left))
}

// reroute handles a stanza that reached this session but was never
// acknowledged by the client: messages go to another resource or offline
// storage with a delay stamp, IQ requests are answered with an error, the
// rest is dropped.
func (s *Session) reroute(item queued) {
	ctx := context.Background()
	el := item.el
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
		if el.Child(xmpp.NSDelay, "delay") == nil {
			el = el.ShallowCopy()
			el.AddChild(xmpp.NSDelay, "delay", "from", s.srv.cfg.Domain, "stamp", item.at.UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		st := &router.Stanza{El: el, From: from, To: s.jid.Bare()}
		// This session no longer counts as available (leaving), so routing
		// to the bare JID picks another resource or offline storage.
		if len(s.srv.cfg.Router.Available(s.jid.Localpart())) > 0 {
			s.srv.cfg.Router.Route(ctx, st)
			return
		}
		s.srv.cfg.Router.StoreOffline(ctx, st)
	case "iq":
		if from.Equal(s.jid) {
			// Its own request: nobody is left to tell.
			return
		}
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
	// limiter, when set, slows reads to a byte rate; stop ends a wait.
	limiter *rate.Limiter
	stop    <-chan struct{}

	// records is set once TLS starts on the connection: then a read
	// returns at most the rest of the current TLS record (header, then
	// body), so that crypto/tls never holds bytes it has not asked for:
	// TLS has input exactly when the read-ahead buffer (raw, borrowed from
	// pool while not empty) or the socket has some, which buffered and
	// waitReadable tell. hdr collects a record header; left is what
	// remains of the record's body.
	records bool
	pool    *xmpp.BufferPool
	raw     *[]byte
	rawR    int
	rawW    int
	rawErr  error // came with the last bytes read ahead; returned after them
	// onStop is called by stopReads (the session's wake).
	onStop func()
	// served is the certificate the TLS handshake chose (see New).
	served *tls.Certificate
	hdr    [5]byte
	hdrN   int
	left   int
}

// setDeadline sets the read deadline for the next read or wait.
func (c *deadlineConn) setDeadline() {
	if !c.fixed.IsZero() {
		c.Conn.SetReadDeadline(c.fixed)
	} else if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	if c.stopped.Load() {
		// stopReads ran meanwhile: its deadline must win.
		c.Conn.SetReadDeadline(time.Now())
	}
}

// waitReadable blocks until the connection has data to read, without
// reading it, honouring the same deadlines as Read. On a connection that
// is not a socket it returns at once (the next Read blocks instead).
func (c *deadlineConn) waitReadable() error { return c.wait(c.setDeadline) }

// waitReadableFor is waitReadable with a deadline of d from now instead
// of the idle timeout.
func (c *deadlineConn) waitReadableFor(d time.Duration) error {
	return c.wait(func() {
		c.Conn.SetReadDeadline(time.Now().Add(d))
		if c.stopped.Load() {
			c.Conn.SetReadDeadline(time.Now()) // stopReads wins
		}
	})
}

func (c *deadlineConn) wait(setDeadline func()) error {
	if c.stopped.Load() {
		return os.ErrDeadlineExceeded
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	setDeadline()
	return rc.Read(readable)
}

// socketFD returns the file descriptor of a TCP connection, or -1.
func socketFD(conn net.Conn) int {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}

// account follows the TLS record framing over the bytes just read.
func (c *deadlineConn) account(b []byte) {
	for len(b) > 0 {
		if c.left == 0 {
			k := copy(c.hdr[c.hdrN:], b)
			c.hdrN += k
			b = b[k:]
			if c.hdrN == len(c.hdr) {
				c.hdrN = 0
				c.left = int(c.hdr[3])<<8 | int(c.hdr[4])
			}
			continue
		}
		k := min(c.left, len(b))
		c.left -= k
		b = b[k:]
	}
}

// stopReads makes the current and every later Read fail at once, and
// wakes a parked session so that its reader sees it.
func (c *deadlineConn) stopReads() {
	c.stopped.Store(true)
	c.Conn.SetReadDeadline(time.Now())
	if c.onStop != nil {
		c.onStop()
	}
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if !c.records {
		return c.readSocket(p)
	}
	// TLS: hand out at most the rest of the current record, from bytes
	// read ahead into a borrowed buffer (one read takes what the client
	// sent, however many records), which goes back to the pool once
	// drained.
	if c.rawR == c.rawW {
		if err := c.rawErr; err != nil {
			c.rawErr = nil
			return 0, err
		}
		if c.pool == nil {
			c.pool = xmpp.NewBufferPool(ioBufferSize)
		}
		buf := c.pool.Get()
		n, err := c.readSocket(*buf)
		if n == 0 {
			c.pool.Put(buf)
			return 0, err
		}
		c.raw, c.rawR, c.rawW, c.rawErr = buf, 0, n, err
	}
	want := c.left
	if want == 0 {
		want = len(c.hdr) - c.hdrN
	}
	n := copy(p[:min(len(p), want)], (*c.raw)[c.rawR:c.rawW])
	c.account(p[:n])
	c.rawR += n
	if c.rawR == c.rawW {
		c.pool.Put(c.raw)
		c.raw, c.rawR, c.rawW = nil, 0, 0
	}
	return n, nil
}

// buffered returns the bytes read ahead from the socket and not yet
// handed to TLS: input that waitReadable cannot see.
func (c *deadlineConn) buffered() int { return c.rawW - c.rawR }

// readSocket reads from the socket with the deadline and the byte rate.
func (c *deadlineConn) readSocket(p []byte) (int, error) {
	c.setDeadline()
	if c.limiter != nil && len(p) > c.limiter.Burst() {
		p = p[:c.limiter.Burst()]
	}
	n, err := c.Conn.Read(p)
	if c.limiter != nil && n > 0 {
		// Pay for what was read before reading more: a client above the
		// rate waits in TCP flow control; nothing is dropped.
		if d := c.limiter.ReserveN(time.Now(), n).Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-c.stop:
				t.Stop()
			}
		}
	}
	return n, err
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func isNetClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
