//go:build !linux

package admin

import "net"

// checkPeer relies on the socket's mode (0600) where peer credentials are
// not available.
func checkPeer(*net.UnixConn) error { return nil }
