package server

// buildPush wires push notifications (XEP-0357) into the server.
func (s *Server) buildPush() error {
	return nil
}
