package c2s

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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
	s.log.Debug("stream management enabled", "resumable", s.smID != "", "timeout", s.smTimeout)
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
		s.log.Info("stream resumption failed: unknown or expired session", "previd", previd)
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
	s.log = s.srv.log.With("remote", s.raw.RemoteAddr().String(), "jid", s.jid.String())
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
	resumed := xmpp.NewElement(xmpp.NSSM, "resumed", "previd", previd, "h", strconv.FormatUint(uint64(s.handledIn), 10))
	s.srv.cfg.Metrics.SMResumed()
	s.log.Info("client session resumed", "client_h", h, "resent", s.q.depth())
	if err := s.write(resumed); err != nil {
		return true, err
	}
	if hook := s.srv.cfg.Hooks.Resumed; hook != nil {
		hook(context.Background(), s)
	}
	return true, nil
}

// handleSM processes a stream management or CSI element on a bound
// stream. It returns a stream error for a protocol violation.
func (s *Session) handleSM(el *xmpp.Element) error {
	switch {
	case el.Is(xmpp.NSSM, "r"):
		if s.smEnabled {
			s.q.control(xmpp.NewElement(xmpp.NSSM, "a", "h", strconv.FormatUint(uint64(s.handledIn), 10)))
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
