package s2s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

type outState int

const (
	outConnecting outState = iota
	outReady
	outDead
)

type enqueueResult int

const (
	enqueued enqueueResult = iota
	queueFull
	streamDead
	serviceClosed
)

// outStream is the stream from one of our domains to a remote domain. A
// goroutine (run) sets it up, then writes what is queued; stanzas routed
// meanwhile wait in a bounded queue.
type outStream struct {
	svc  *Service
	pair pair
	log  *slog.Logger
	// via is the peer's bidirectional stream this one writes to (runVia);
	// nil for a stream over a connection of its own (run).
	via *inStream
	// lastIn is when the peer last sent a stanza on a bidirectional
	// stream (Unix nanoseconds), which keeps it from being idle.
	lastIn atomic.Int64

	mu      sync.Mutex
	state   outState
	auth    string
	bidi    bool // the peer may send stanzas on the stream too (XEP-0288)
	pending []*router.Stanza
	wake    chan struct{} // signalled when pending grows
}

func newOutStream(s *Service, p pair) *outStream {
	return &outStream{
		svc:  s,
		pair: p,
		log:  s.log.With("local", p.local, "remote", p.remote),
		wake: make(chan struct{}, 1),
	}
}

func (o *outStream) enqueue(st *router.Stanza) enqueueResult {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.state == outDead:
		return streamDead
	case len(o.pending) >= o.svc.cfg.SendQueue:
		return queueFull
	}
	o.pending = append(o.pending, st)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return enqueued
}

// authMethod returns how the stream was authenticated, "" until it is,
// and whether it is bidirectional.
func (o *outStream) authMethod() (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.auth, o.bidi
}

// take returns the queued stanzas and empties the queue.
func (o *outStream) take() []*router.Stanza {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.pending
	o.pending = nil
	return out
}

// die marks the stream dead (new stanzas go to a new stream) and returns
// what was still queued.
func (o *outStream) die() []*router.Stanza {
	o.mu.Lock()
	o.state = outDead
	out := o.pending
	o.pending = nil
	o.mu.Unlock()
	o.svc.forget(o)
	return out
}

// dieIfIdle marks the stream dead if nothing is queued.
func (o *outStream) dieIfIdle() bool {
	o.mu.Lock()
	if len(o.pending) > 0 {
		o.mu.Unlock()
		return false
	}
	o.state = outDead
	o.mu.Unlock()
	o.svc.forget(o)
	return true
}

// run sets the stream up and serves it until it ends.
func (o *outStream) run(ctx context.Context) {
	start := time.Now()
	nctx, cancel := context.WithTimeout(ctx, o.svc.cfg.NegotiateTimeout)
	op, method, err := o.connect(nctx)
	// The read deadline of a stream being set up is the context's, and
	// may fire a moment before the context's own timer.
	deadline, _ := nctx.Deadline()
	timedOut := errors.Is(nctx.Err(), context.DeadlineExceeded) || !time.Now().Before(deadline) ||
		errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
	cancel()
	if err != nil {
		o.failed(ctx, err, timedOut)
		return
	}
	o.mu.Lock()
	o.state = outReady
	o.auth = method
	o.bidi = op.bidi
	o.mu.Unlock()
	o.log.Info("stream to remote server established", "via", op.target.addr(), "tls", op.secure, "auth", method, "bidi", op.bidi,
		"took", time.Since(start).Round(time.Millisecond))
	o.serve(ctx, op.c, op.bidi)
}

// connect tries the remote domain's addresses in order until one gives an
// authenticated stream.
func (o *outStream) connect(ctx context.Context) (*opened, string, error) {
	targets, err := lookupTargets(ctx, o.svc.cfg.Resolver, o.svc.cfg.Addresses, o.pair.remote)
	if err != nil {
		return nil, "", err
	}
	var errs []error
	for _, t := range targets {
		op, err := o.svc.openTarget(ctx, o.pair, t)
		if err == nil {
			var method string
			method, err = o.svc.authenticate(op, o.pair)
			if err == nil && op.stop() {
				return op, method, nil
			}
			op.close(nil)
			if err == nil {
				err = ctx.Err()
			}
		}
		o.log.Debug("connection to remote server failed", "addr", t.addr(), "direct_tls", t.directTLS, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", t.addr(), err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// failed returns every queued stanza to its sender after the stream could
// not be set up.
func (o *outStream) failed(ctx context.Context, err error, timedOut bool) {
	left := o.die()
	cond, what := xmpp.CondRemoteServerNotFound, "cannot reach remote server"
	if timedOut {
		cond, what = xmpp.CondRemoteServerTimeout, "remote server did not answer in time"
	}
	var pe *errPolicy
	if errors.As(err, &pe) {
		what = "refused remote server by policy"
	}
	o.log.Warn(what+"; returning stanzas to their senders (check its DNS records, that it is up, and s2s.addresses)",
		"err", err, "returned", len(left), "timeout", o.svc.cfg.NegotiateTimeout)
	text := fmt.Sprintf("cannot reach %s", o.pair.remote)
	if pe != nil {
		text = fmt.Sprintf("%s: %s", o.pair.remote, pe.msg)
	}
	ctx = context.WithoutCancel(ctx)
	for _, st := range left {
		o.svc.bounce(ctx, st, cond, text)
	}
}

// serve writes queued stanzas, keeps the stream alive and closes it when
// idle (no stanza either way), when the peer closes it or at shutdown.
// On a bidirectional stream, the reader routes the peer's stanzas.
func (o *outStream) serve(ctx context.Context, c *conn, bidi bool) {
	cfg := &o.svc.cfg
	c.dl.fixed = time.Time{}
	c.raw.SetDeadline(time.Time{})
	c.reader.SetLimits(cfg.Limits)
	readerDone := make(chan error, 1)
	go func() { readerDone <- o.readLoop(c, bidi) }()
	interval := min(cfg.KeepaliveInterval, max(cfg.IdleTimeout/4, 10*time.Millisecond))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := time.Now()
	var buf []byte
	for {
		select {
		case <-o.wake:
			batch := o.take()
			if len(batch) == 0 {
				continue
			}
			c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
			var err error
			for i, st := range batch {
				buf = appendStanza(buf[:0], st.El)
				if _, err = c.writer.Write(buf); err != nil {
					batch = batch[i:]
					break
				}
			}
			if err == nil {
				err = c.writer.Flush()
				batch = nil // partially written data cannot be told apart; not resent
			}
			if err != nil {
				o.log.Info("writing to remote server failed; its stream is closed", "err", err)
				c.raw.Close()
				<-readerDone
				o.reroute(ctx, append(batch, o.die()...))
				return
			}
			last = time.Now()
		case now := <-tick.C:
			if in := time.Unix(0, o.lastIn.Load()); in.After(last) {
				last = in
			}
			if now.Sub(last) >= cfg.IdleTimeout && o.dieIfIdle() {
				o.log.Info("closing idle stream to remote server", "idle", now.Sub(last).Round(time.Second))
				o.closeStream(c, readerDone)
				return
			}
			c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
			c.writer.WriteByte(' ')
			c.writer.Flush()
		case err := <-readerDone:
			left := o.die()
			if se, ok := xmpp.AsStreamError(err); ok {
				o.log.Warn("closing stream to remote server: it sent what this server refuses", "condition", se.Condition, "reason", se.Text)
				c.writeClose(se)
			} else if errors.Is(err, xmpp.ErrStreamClosed) {
				o.log.Info("remote server closed its stream")
				c.writeClose(nil)
			} else {
				o.log.Info("stream to remote server ended", "err", err)
				c.raw.Close()
			}
			o.reroute(ctx, left)
			return
		case <-ctx.Done():
			left := o.die()
			o.closeStream(c, readerDone)
			for _, st := range left {
				o.svc.bounce(context.Background(), st, xmpp.CondRemoteServerTimeout, "the server is shutting down")
			}
			return
		}
	}
}

// closeStream sends the closing tag, waits a little for the peer's, and
// closes the connection.
func (o *outStream) closeStream(c *conn, readerDone <-chan error) {
	c.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	c.writer.WriteString("</stream:stream>")
	c.writer.Flush()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-readerDone:
	case <-t.C:
	}
	c.raw.Close()
}

// reroute sends stanzas that were queued on a stream that ended before
// writing them through a new stream.
func (o *outStream) reroute(ctx context.Context, left []*router.Stanza) {
	if len(left) == 0 {
		return
	}
	o.log.Info("sending stanzas queued on a closed stream through a new one", "count", len(left))
	ctx = context.WithoutCancel(ctx)
	for _, st := range left {
		o.svc.Route(ctx, st)
	}
}

// readLoop reads what the peer sends on our outgoing stream: keepalives,
// stanzas when the stream is bidirectional and, at the end, its closing
// tag or a stream error. A stanza it refuses ends the loop with the
// stream error to send.
func (o *outStream) readLoop(c *conn, bidi bool) error {
	for {
		el, err := c.next()
		if err != nil {
			return err
		}
		if bidi && el.Space == xmpp.NSServer && el.IsStanza() {
			if err := o.received(el); err != nil {
				return err
			}
			continue
		}
		o.log.Debug("ignoring an element the remote server sent on our outgoing stream", "element", el.Local, "ns", el.Space)
	}
}
