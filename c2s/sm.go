package c2s

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"wren.im/wren/xmpp"
)

// Stream management (XEP-0198) on client streams: enable, acks both ways,
// hibernation when the connection dies, and resumption on a new connection.

// smFailed builds <failed/> with a stanza error condition and, when h >= 0,
// the count of stanzas the server handled on the old stream.
func smFailed(cond, text string, h int64) *xmpp.Element {
	f := xmpp.NewElement(xmpp.NSSM, "failed")
	if h >= 0 {
		f.SetAttr("h", strconv.FormatInt(h, 10))
	}
	f.AddChild(xmpp.NSStanzas, cond)
	if text != "" {
		t := f.AddChild(xmpp.NSStanzas, "text")
		t.Attrs = []xmpp.Attr{{Space: xmpp.NSXML, Local: "lang", Value: "en"}}
		t.AppendText(text)
	}
	return f
}

func newSMID() string {
	var b [18]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func parseH(v string) (uint32, bool) {
	n, err := strconv.ParseUint(v, 10, 32)
	return uint32(n), err == nil
}

// enable handles <enable/> on a bound stream.
func (s *Session) enable(el *xmpp.Element) {
	if s.smEnabled {
		s.q.control(smFailed(xmpp.CondUnexpectedRequest, "stream management is already enabled", -1))
		return
	}
	s.smEnabled = true
	enabled := xmpp.NewElement(xmpp.NSSM, "enabled")
	if r := el.Attr("resume"); (r == "true" || r == "1") && s.srv.cfg.ResumeTimeout > 0 {
		timeout := s.srv.cfg.ResumeTimeout
		if asked, err := strconv.Atoi(el.Attr("max")); err == nil && asked > 0 {
			timeout = min(time.Duration(asked)*time.Second, max(s.srv.cfg.MaxResumeTimeout, s.srv.cfg.ResumeTimeout))
		}
		s.smID = newSMID()
		s.smTimeout = timeout
		s.mu.Lock()
		s.smResumable = true
		s.mu.Unlock()
		s.srv.registerResumable(s)
		enabled.SetAttr("id", s.smID)
		enabled.SetAttr("resume", "true")
		enabled.SetAttr("max", strconv.Itoa(int(timeout/time.Second)))
	}
	s.q.enableSM(enabled)
	s.srv.cfg.Metrics.SMEnabled()
	s.logger().Debug("stream management enabled", "resumable", s.smID != "", "timeout", s.smTimeout)
}

// resume handles <resume/> in place of resource binding. It returns true
// when this connection took over the old session; false after a <failed/>
// was sent (the client may then bind); an error ends the stream.
func (s *Session) resume(el *xmpp.Element) (bool, error) {
	h, ok := parseH(el.Attr("h"))
	previd := el.Attr("previd")
	if !ok || previd == "" {
		return false, s.write(smFailed(xmpp.CondBadRequest, "resume needs previd and a valid h", -1))
	}
	old, staleH := s.srv.lookupResumable(previd, s.jid.Bare().String())
	if old == nil {
		s.logger().Info("stream resumption failed: unknown or expired session", "previd", previd)
		s.srv.cfg.Metrics.SMResumeFailed()
		return false, s.write(smFailed(xmpp.CondItemNotFound, "the session is unknown or has expired", staleH))
	}
	old.mu.Lock()
	st := old.state
	if st != stateActive && st != stateHibernated {
		old.mu.Unlock()
		s.srv.cfg.Metrics.SMResumeFailed()
		return false, s.write(smFailed(xmpp.CondItemNotFound, "the session has ended", -1))
	}
	old.state = stateResumed
	old.hibernating.Store(false)
	if old.hibernateTime != nil {
		old.hibernateTime.Stop()
	}
	old.mu.Unlock()
	if st == stateActive {
		// The old connection may be half-open: end it, and make sure a write
		// blocked on it gives up soon.
		old.Close(xmpp.NewStreamError(xmpp.StreamConflict, "the session was resumed on another connection"))
		old.raw.SetWriteDeadline(time.Now().Add(time.Second))
	}
	<-old.connDone

	// Take over the logical session.
	s.jid = old.jid
	s.q = old.q
	s.handledIn = old.handledIn
	s.smEnabled = true
	s.smID = old.smID
	s.smTimeout = old.smTimeout
	old.mu.Lock()
	s.available, s.priority, s.presence = old.available, old.priority, old.presence
	s.directed = old.directed
	s.rosterRequested = old.rosterRequested
	s.blocklistRequested = old.blocklistRequested
	boundAt := old.boundAt
	old.mu.Unlock()
	old.iqMu.Lock()
	s.pendingIQ, s.iqOrder = old.pendingIQ, old.iqOrder
	old.iqMu.Unlock()
	s.mu.Lock()
	s.state = stateActive
	s.boundAt = boundAt
	s.smResumable = true
	s.mu.Unlock()
	if serr := s.q.prepareResume(h); serr != nil {
		// The client claims more than was sent: the session cannot be
		// trusted; end it so that its queue is rerouted.
		s.srv.cfg.Router.Bind(s)
		s.srv.registerResumable(s)
		s.mu.Lock()
		s.smResumable = false
		s.mu.Unlock()
		return false, serr
	}
	s.srv.cfg.Router.Bind(s)
	s.srv.registerResumable(s)
	if err := s.waitWrites(writeTimeout); err != nil {
		// h counts stanzas the server cannot vouch for: refuse rather
		// than acknowledge them.
		s.logger().Error("stream resumption refused: the stanzas it would acknowledge are not on disk", "err", err)
		s.mu.Lock()
		s.smResumable = false
		s.mu.Unlock()
		return false, xmpp.NewStreamError(xmpp.StreamInternalServerError, "the server cannot store data right now")
	}
	resumed := xmpp.NewElement(xmpp.NSSM, "resumed", "previd", previd, "h", strconv.FormatUint(uint64(s.handledIn), 10))
	s.srv.cfg.Metrics.SMResumed()
	s.logger().Info("client session resumed", "client_h", h, "resent", s.q.depth())
	if err := s.write(resumed); err != nil {
		return true, err
	}
	if hook := s.srv.cfg.Hooks.Resumed; hook != nil {
		hook(context.Background(), s)
	}
	return true, nil
}

// answerAckRequest answers the client's <r/> with the number of stanzas
// handled so far, once what handling them queued for the disk is there:
// the client forgets what the server acknowledged.
func (s *Session) answerAckRequest() {
	a := xmpp.NewElement(xmpp.NSSM, "a", "h", strconv.FormatUint(uint64(s.handledIn), 10))
	afterWrites := s.srv.cfg.AfterWrites
	if afterWrites == nil {
		s.q.control(a)
		return
	}
	q := s.q // the logical session's queue, also after a resume
	if err := afterWrites(func() { q.control(a) }); err != nil {
		// The store is closing (the server shuts down): no answer, so
		// that the client sends the stanzas again after reconnecting.
		s.logger().Info("ack request not answered: storage is closing", "err", err)
	}
}

// waitWrites waits, bounded by timeout, until what the stanzas handled so
// far queued for the disk is there.
func (s *Session) waitWrites(timeout time.Duration) error {
	afterWrites := s.srv.cfg.AfterWrites
	if afterWrites == nil {
		return nil
	}
	written := make(chan struct{})
	if err := afterWrites(func() { close(written) }); err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-written:
		return nil
	case <-t.C:
		return fmt.Errorf("storage writes not done after %s", timeout)
	}
}

// handleSM processes a stream management or CSI element on a bound
// stream. It returns a stream error for a protocol violation.
func (s *Session) handleSM(el *xmpp.Element) error {
	switch {
	case el.Is(xmpp.NSSM, "r"):
		if s.smEnabled {
			s.answerAckRequest()
		}
	case el.Is(xmpp.NSSM, "a"):
		if !s.smEnabled {
			return nil
		}
		h, ok := parseH(el.Attr("h"))
		if !ok {
			return xmpp.NewStreamError(xmpp.StreamUndefinedCondition, "the h of an <a/> must be an unsigned 32-bit integer")
		}
		if serr := s.q.ack(h); serr != nil {
			return serr
		}
	case el.Is(xmpp.NSSM, "enable"):
		s.enable(el)
	case el.Is(xmpp.NSSM, "resume"):
		s.q.control(smFailed(xmpp.CondUnexpectedRequest, "this stream is already bound", -1))
	case el.Is(xmpp.NSCSI, "active"):
		s.q.setInactive(false)
	case el.Is(xmpp.NSCSI, "inactive"):
		s.q.setInactive(true)
	case el.Is(xmpp.NSStream, "error"):
		// The client reports a stream error: it is closing the stream.
		return xmpp.ErrStreamClosed
	case el.Space == xmpp.NSStream:
		// A second <stream:stream> (or other stream-level element) inside
		// an open stream.
		return xmpp.NewStreamError(xmpp.StreamBadFormat, "<stream:%s> is not allowed inside an open stream", el.Local)
	default:
		return xmpp.NewStreamError(xmpp.StreamUnsupportedStanza, "<%s xmlns='%s'/> is not supported here", el.Local, el.Space)
	}
	return nil
}
