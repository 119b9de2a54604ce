package server

// buildPEP wires personal eventing (XEP-0163) and entity capabilities (XEP-0115) into the server.
func (s *Server) buildPEP() error {
	return nil
}
