package server

// buildBlocking wires blocking (XEP-0191) into the server.
func (s *Server) buildBlocking() error {
	return nil
}
