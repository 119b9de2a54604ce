package c2s

import (
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

// This file holds what operators see of the c2s service: the counters it
// reports to a metrics collector, and the session snapshot and kick used
// by the admin socket.

// Outcomes of an authentication attempt, as passed to Metrics.Auth.
const (
	AuthSuccess = "success" // the client authenticated
	AuthFailure = "failure" // wrong credentials, aborted or malformed exchange
	AuthError   = "error"   // the server could not check the credentials
)

// Metrics receives the events c2s counts. The methods are called on hot
// paths (every stanza): they must be cheap, must not block and must be
// safe for concurrent use.
type Metrics interface {
	// ConnectionAccepted counts a new client connection.
	ConnectionAccepted(directTLS bool)
	// Auth counts a finished SASL attempt with one of AuthSuccess,
	// AuthFailure or AuthError.
	Auth(mechanism, outcome string)
	// StanzaIn counts a stanza received from a bound client; kind is the
	// element name (message, presence or iq).
	StanzaIn(kind string)
	// StanzaOut counts a top-level element written to a bound client;
	// kind is its name (stanzas are message, presence and iq; stream
	// management elements have other names).
	StanzaOut(kind string)
	// Routed observes how long routing one client stanza took.
	Routed(d time.Duration)
	// Stream management (XEP-0198) events.
	SMEnabled()
	SMResumed()
	SMResumeFailed()
	SMHibernated()
	SMTimedOut()
}

// NopMetrics counts nothing.
type NopMetrics struct{}

func (NopMetrics) ConnectionAccepted(bool) {}
func (NopMetrics) Auth(string, string)     {}
func (NopMetrics) StanzaIn(string)         {}
func (NopMetrics) StanzaOut(string)        {}
func (NopMetrics) Routed(time.Duration)    {}
func (NopMetrics) SMEnabled()              {}
func (NopMetrics) SMResumed()              {}
func (NopMetrics) SMResumeFailed()         {}
func (NopMetrics) SMHibernated()           {}
func (NopMetrics) SMTimedOut()             {}

// Session states as reported by SessionInfo.
const (
	StateActive     = "active"     // a connection serves the session
	StateHibernated = "hibernated" // the connection is gone; waiting for a resume
)

// SessionInfo is a snapshot of one bound client session for administrators.
type SessionInfo struct {
	JID        jid.JID
	RemoteAddr string
	// State is StateActive or StateHibernated.
	State string
	// Bound is when the resource was bound (a resume keeps the time).
	Bound time.Time
	// Secure reports TLS; DirectTLS that it was XEP-0368 direct TLS.
	Secure, DirectTLS bool
	// Resumable reports that stream management may resume the session.
	Resumable bool
	// Queued is the number of stanzas not yet acknowledged by the client.
	Queued int
	// Available reports that the client sent available presence, with
	// Priority.
	Available bool
	Priority  int
}

// info returns the snapshot of s, and false when s is not a bound, live
// or hibernated session.
func (s *Session) info() (SessionInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var state string
	switch s.state {
	case stateActive:
		state = StateActive
	case stateHibernated:
		state = StateHibernated
	default:
		return SessionInfo{}, false
	}
	// jid, secure and q were set before the state became active, under
	// this lock, and do not change while it stays active or hibernated.
	return SessionInfo{
		JID:        s.jid,
		RemoteAddr: s.raw.RemoteAddr().String(),
		State:      state,
		Bound:      s.boundAt,
		Secure:     s.secure,
		DirectTLS:  s.directTLS,
		Resumable:  s.smResumable,
		Queued:     s.q.depth(),
		Available:  s.available,
		Priority:   s.priority,
	}, true
}

// bound returns this server's bound sessions of user ("" for every user),
// live and hibernated: a hibernated session stays in the router's table
// until it ends.
func (srv *Server) bound(user string) []*Session {
	r := srv.cfg.Router
	list := r.AllSessions()
	if user != "" {
		list = r.Sessions(user)
	}
	out := make([]*Session, 0, len(list))
	for _, rs := range list {
		if s, ok := rs.(*Session); ok && s.srv == srv {
			out = append(out, s)
		}
	}
	return out
}

// Sessions returns a snapshot of the bound sessions of user (a localpart;
// "" for every user), live and hibernated, ordered by JID.
func (srv *Server) Sessions(user string) []SessionInfo {
	var out []SessionInfo
	for _, s := range srv.bound(user) {
		if info, ok := s.info(); ok {
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(a.JID.String(), b.JID.String()) })
	return out
}

// Kick ends sessions for good, live or hibernated, without the chance of
// a resume: the session of a full JID, or every session of a bare JID. A
// live client receives serr. Stanzas it had not acknowledged are handled
// as for any ended session (another resource, offline storage, or an
// error to the sender). Kick returns the JIDs of the sessions it ended;
// they finish ending in the background.
func (srv *Server) Kick(j jid.JID, serr *xmpp.StreamError) []jid.JID {
	if j.Domainpart() != srv.cfg.Domain || j.Localpart() == "" {
		return nil
	}
	var (
		ended    []jid.JID
		sessions []*Session
	)
	for _, s := range srv.bound(j.Localpart()) {
		info, ok := s.info()
		if !ok || (j.Resourcepart() != "" && !info.JID.Equal(j)) {
			continue
		}
		s.terminate(serr)
		ended = append(ended, info.JID)
		sessions = append(sessions, s)
	}
	// Return once the sessions are gone (their connections finished and
	// their resources unbound), so that what the caller does next sees
	// them ended; a client that does not take its stream error within
	// kickWait is cut off by the write deadline meanwhile.
	timeout := time.NewTimer(kickWait)
	defer timeout.Stop()
	for _, s := range sessions {
		select {
		case <-s.connDone:
		case <-timeout.C:
			return ended
		}
	}
	return ended
}

// kickWait bounds how long Kick waits for the sessions it ended.
const kickWait = 5 * time.Second
