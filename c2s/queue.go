package c2s

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"wren.im/wren/xmpp"
)

// queued is a stanza waiting for the client, with the time it was queued
// (for the delay stamp if it ends up rerouted).
type queued struct {
	el *xmpp.Element
	at time.Time
}

// outQueue holds everything on its way to one client session. It belongs
// to the logical session, not the connection: on stream resumption
// (XEP-0198) the new connection takes over the same queue, so stanzas
// queued during the handover are neither lost nor duplicated.
//
// Stanzas move from pending (not yet written) to unacked (written, waiting
// for the client's <a/>) when stream management is on; without it they
// are dropped once written. Control elements (<enabled/>, <r/>, <a/>) are
// written first and never counted.
type outQueue struct {
	mu       sync.Mutex
	ctrl     []*xmpp.Element
	pending  []queued
	unacked  []queued
	held     []heldStanza // held back while the client is inactive (XEP-0352)
	sm       bool
	acked    uint32 // h of the client's last ack: stanzas it has handled
	resend   bool   // write unacked again before pending (after a resume)
	closed   bool   // the logical session has ended: callers reroute
	inactive bool
	max      int

	ackRequested bool
	requestedAt  time.Time

	// waker is told that there is something to write: the kick of the
	// session that owns the queue now (it changes on a resume).
	waker atomic.Pointer[func()]
}

type heldStanza struct {
	key string
	q   queued
}

func newOutQueue(max int) *outQueue {
	return &outQueue{max: max}
}

// setWaker makes f the function told when there is something to write.
func (q *outQueue) setWaker(f func()) { q.waker.Store(&f) }

func (q *outQueue) signal() {
	if f := q.waker.Load(); f != nil {
		(*f)()
	}
}

// push queues a stanza. It returns false when the queue is closed (the
// caller must reroute the stanza) and overflow when the queue is full (the
// stanza was queued; the caller must end the session).
func (q *outQueue) push(el *xmpp.Element, now time.Time) (ok, overflow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false, false
	}
	item := queued{el: el, at: now}
	if q.inactive {
		if key := holdKey(el); key != "" {
			q.hold(key, item)
			return true, false
		}
		q.releaseHeld()
	}
	q.pending = append(q.pending, item)
	q.signal()
	return true, q.max > 0 && len(q.pending)+len(q.unacked) > q.max
}

// holdKey says whether a stanza can wait while the client is inactive and
// under which key a later one replaces it: presence updates (latest per
// sender wins) and chat states. Everything else is urgent.
func holdKey(el *xmpp.Element) string {
	switch el.Local {
	case "presence":
		switch el.Attr("type") {
		case "", "unavailable":
			return "p " + el.Attr("from")
		}
	case "message":
		if el.Child(xmpp.NSClient, "body") != nil || el.Attr("type") == "error" {
			return ""
		}
		kids := el.Elements()
		if len(kids) == 0 {
			return ""
		}
		for _, c := range kids {
			if c.Space != "http://jabber.org/protocol/chatstates" && c.Space != "urn:xmpp:hints" {
				return ""
			}
		}
		return "c " + el.Attr("from")
	}
	return ""
}

func (q *outQueue) hold(key string, item queued) {
	for i, h := range q.held {
		if h.key == key {
			q.held = append(q.held[:i], q.held[i+1:]...)
			break
		}
	}
	q.held = append(q.held, heldStanza{key: key, q: item})
}

// releaseHeld moves held stanzas to pending, in the order they arrived.
func (q *outQueue) releaseHeld() {
	for _, h := range q.held {
		q.pending = append(q.pending, h.q)
	}
	q.held = nil
	q.signal()
}

// setInactive records the client's CSI state; <active/> flushes what was held.
func (q *outQueue) setInactive(inactive bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inactive = inactive
	if !inactive {
		q.releaseHeld()
	}
}

// control queues a control element to be written before any stanza.
func (q *outQueue) control(el *xmpp.Element) {
	q.mu.Lock()
	q.ctrl = append(q.ctrl, el)
	q.mu.Unlock()
	q.signal()
}

// enableSM turns on counting; enabled is written before any counted stanza.
func (q *outQueue) enableSM(enabled *xmpp.Element) {
	q.mu.Lock()
	q.sm = true
	q.ctrl = append(q.ctrl, enabled)
	q.mu.Unlock()
	q.signal()
}

// take returns what the writer should write now: control elements, then
// (after a resume) the unacked stanzas again, then pending stanzas, and a
// trailing <r/> when stream management wants an ack.
func (q *outQueue) take(now time.Time, buf []*xmpp.Element) []*xmpp.Element {
	q.mu.Lock()
	defer q.mu.Unlock()
	buf = append(buf, q.ctrl...)
	q.ctrl = nil // an idle session keeps no array
	if q.resend {
		q.resend = false
		for _, u := range q.unacked {
			buf = append(buf, u.el)
		}
	}
	for _, p := range q.pending {
		buf = append(buf, p.el)
	}
	if q.sm {
		q.unacked = append(q.unacked, q.pending...)
	}
	q.pending = nil
	if q.sm && len(q.unacked) > 0 && !q.ackRequested {
		q.ackRequested = true
		q.requestedAt = now
		buf = append(buf, xmpp.NewElement(xmpp.NSSM, "r"))
	}
	return buf
}

// errHandledTooHigh is the XEP-0198 error for an ack of more than was sent.
type errHandledTooHigh struct{ h, sent uint32 }

func (e errHandledTooHigh) streamError() *xmpp.StreamError {
	extra := xmpp.NewElement(xmpp.NSSM, "handled-count-too-high", "h", strconv.FormatUint(uint64(e.h), 10), "send-count", strconv.FormatUint(uint64(e.sent), 10))
	return &xmpp.StreamError{Condition: xmpp.StreamUndefinedCondition, Text: "you acknowledged more stanzas than were sent", Extra: extra}
}

// ack applies the client's count of handled stanzas. Counters are 32-bit
// and wrap (XEP-0198 §4), so the difference is taken modulo 2^32.
func (q *outQueue) ack(h uint32) *xmpp.StreamError {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := h - q.acked
	if uint64(n) > uint64(len(q.unacked)) {
		return errHandledTooHigh{h: h, sent: q.acked + uint32(len(q.unacked))}.streamError()
	}
	clear(q.unacked[:n])
	q.unacked = q.unacked[n:]
	if len(q.unacked) == 0 {
		q.unacked = nil
	}
	q.acked = h
	q.ackRequested = false
	return nil
}

// ackOverdue reports whether an ack request has waited longer than d.
func (q *outQueue) ackOverdue(now time.Time, d time.Duration) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ackRequested && d > 0 && now.Sub(q.requestedAt) > d
}

// prepareResume is called on the new connection's side of a resume: the
// client says it handled h stanzas; everything after that is written again.
func (q *outQueue) prepareResume(h uint32) *xmpp.StreamError {
	if err := q.ack(h); err != nil {
		return err
	}
	q.mu.Lock()
	q.resend = len(q.unacked) > 0
	q.ackRequested = false
	q.ctrl = q.ctrl[:0]
	q.mu.Unlock()
	q.signal()
	return nil
}

// close ends the queue and returns every stanza the client has not
// acknowledged (unacked first, then pending), in order. Held presence and
// chat states are dropped: they are stale by now.
func (q *outQueue) close() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	var left []queued
	if q.sm {
		left = append(left, q.unacked...)
	}
	left = append(left, q.pending...)
	q.unacked, q.pending, q.held, q.ctrl = nil, nil, nil, nil
	return left
}

// snapshot returns the stanzas not yet acknowledged or written, oldest
// first, including held ones.
func (q *outQueue) snapshot() []*xmpp.Element {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*xmpp.Element, 0, len(q.unacked)+len(q.pending)+len(q.held))
	for _, list := range [][]queued{q.unacked, q.pending} {
		for _, it := range list {
			out = append(out, it.el)
		}
	}
	for _, h := range q.held {
		out = append(out, h.q.el)
	}
	return out
}

// depth returns the number of stanzas not yet acknowledged or written.
func (q *outQueue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending) + len(q.unacked)
}
