package router

import "context"

// SetRemote installs the Remote hook: the function that takes every stanza
// addressed to a domain that is neither this server's nor one of its
// services (federation). Call it before serving.
func (r *Router) SetRemote(f func(ctx context.Context, s *Stanza)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks.Remote = f
}

// RemoveService undoes AddService: stanzas for domain are no longer handed
// to its handler (an external component disconnected). It reports whether
// the domain was a service.
func (r *Router) RemoveService(domain string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.services[domain]; !ok {
		return false
	}
	delete(r.services, domain)
	return true
}
