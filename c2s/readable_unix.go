//go:build unix

package c2s

import "syscall"

// readable is a syscall.RawConn read function that completes once the
// socket has data (or an end or error for the next read to report),
// without consuming anything.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EINTR
}
