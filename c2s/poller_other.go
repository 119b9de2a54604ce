//go:build !linux

package c2s

import (
	"errors"
	"log/slog"
)

// poller is not available here: idle sessions keep their goroutine,
// blocked on the runtime's poller.
type poller struct{}

func newPoller(*slog.Logger) (*poller, error) { return nil, errors.New("c2s: no epoll on this system") }

func (p *poller) park(fd int, s *Session) error { return errors.New("c2s: no epoll on this system") }
func (p *poller) forget(fd int, s *Session)     {}
func (p *poller) close()                        {}
