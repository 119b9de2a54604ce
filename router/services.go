package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"
)

// ServiceHandler receives every stanza addressed to an internal service
// domain (the push gateway at push.example.org, later components). The
// stanza's From is already authenticated by the session or server it came
// from.
type ServiceHandler func(ctx context.Context, s *Stanza)

// AddService makes the router deliver stanzas for domain (a subdomain
// such as push.example.org) to h instead of treating the domain as remote.
func (r *Router) AddService(domain string, h ServiceHandler) error {
	d, err := jid.New("", domain, "")
	if err != nil {
		return fmt.Errorf("service domain %q: %w", domain, err)
	}
	if d.Domainpart() == r.domain {
		return fmt.Errorf("service domain %q is the server's own domain", domain)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.services == nil {
		r.services = map[string]ServiceHandler{}
	}
	if _, ok := r.services[d.Domainpart()]; ok {
		return fmt.Errorf("service domain %q is already taken", domain)
	}
	r.services[d.Domainpart()] = h
	return nil
}

// IsService reports whether domain is served by an internal service.
func (r *Router) IsService(domain string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.services[domain]
	return ok
}

func (r *Router) service(domain string) ServiceHandler {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.services[domain]
}

// pendingIQs tracks IQ requests originated by the server or its services,
// so that their replies reach the code that sent them instead of being
// routed.
type pendingIQs struct {
	mu      sync.Mutex
	waiting map[iqWaitKey]*iqWait
	count   atomic.Int64 // len(waiting), read without the lock
}

type iqWaitKey struct{ id, peer string }

type iqWait struct {
	requester string // JID the request was sent from, normalised
	done      func(reply *Stanza)
	timer     *time.Timer
}

// DefaultIQTimeout bounds server-originated IQs sent with no timeout.
const DefaultIQTimeout = 30 * time.Second

// SendIQ routes an IQ get or set originated by the server, an account (its
// bare JID) or an internal service, and calls done exactly once: with the
// result or error reply, or with nil when no reply came within timeout.
// When the request has no id, one is generated. done runs on the goroutine
// that routed the reply (or a timer's); it must not block.
func (r *Router) SendIQ(ctx context.Context, iq *Stanza, timeout time.Duration, done func(reply *Stanza)) {
	if timeout <= 0 {
		timeout = DefaultIQTimeout
	}
	id := iq.El.Attr("id")
	if id == "" {
		var b [9]byte
		rand.Read(b[:])
		id = "wren-" + hex.EncodeToString(b[:])
		iq.El.SetAttr("id", id)
	}
	key := iqWaitKey{id: id, peer: iq.To.String()}
	w := &iqWait{requester: iq.From.String(), done: done}
	p := &r.iqs
	p.mu.Lock()
	if p.waiting == nil {
		p.waiting = map[iqWaitKey]*iqWait{}
	}
	if old, ok := p.waiting[key]; ok {
		// The same id to the same peer twice: the older request can no
		// longer be told apart from the newer; it times out now.
		delete(p.waiting, key)
		p.count.Add(-1)
		old.timer.Stop()
		go old.done(nil)
	}
	p.waiting[key] = w
	w.timer = time.AfterFunc(timeout, func() {
		if p.take(key, nil) != nil {
			done(nil)
		}
	})
	p.count.Add(1)
	p.mu.Unlock()
	r.Route(ctx, iq)
}

// take removes and returns the wait for key when reply (if not nil) comes
// from the right peer to the right requester.
func (p *pendingIQs) take(key iqWaitKey, reply *Stanza) *iqWait {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.waiting[key]
	if !ok {
		return nil
	}
	if reply != nil && reply.To.String() != w.requester {
		return nil
	}
	delete(p.waiting, key)
	p.count.Add(-1)
	return w
}

// answerIQ hands an IQ result or error to the SendIQ caller waiting for it
// and reports whether it did.
func (r *Router) answerIQ(s *Stanza) bool {
	if r.iqs.count.Load() == 0 {
		return false
	}
	if t := s.Type(); t != "result" && t != "error" {
		return false
	}
	peer := s.From
	if peer.Domainpart() == "" {
		return false
	}
	w := r.iqs.take(iqWaitKey{id: s.El.Attr("id"), peer: peer.String()}, s)
	if w == nil {
		return false
	}
	w.timer.Stop()
	w.done(s)
	return true
}
