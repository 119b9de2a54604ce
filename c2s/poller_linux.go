//go:build linux

package c2s

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
)

// poller watches the sockets of idle sessions with one epoll instance, so
// that an idle connection needs no goroutine (and no goroutine stack): a
// session parks its socket here, and the poller starts a goroutine to
// read when the client sends something. Registrations are one-shot.
type poller struct {
	log  *slog.Logger
	epfd int
	wake [2]int // a pipe whose read end is in the epoll set: a byte stops run

	mu       sync.Mutex
	sessions map[int32]*Session // parked sessions by socket
	closed   bool
	done     chan struct{} // closed when run returns
}

func newPoller(log *slog.Logger) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("c2s: epoll: %w", err)
	}
	p := &poller{log: log, epfd: epfd, sessions: map[int32]*Session{}, done: make(chan struct{})}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("c2s: epoll wake pipe: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("c2s: epoll wake pipe: %w", err)
	}
	go p.run()
	return p, nil
}

func (p *poller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}

// park watches fd for s until it is readable (or has hung up), then calls
// s.wake once. It fails when the poller is closed or fd cannot be watched.
func (p *poller) park(fd int, s *Session) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("c2s: poller closed")
	}
	p.sessions[int32(fd)] = s
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
	err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, fd, &ev)
	if errors.Is(err, syscall.ENOENT) {
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		delete(p.sessions, int32(fd))
		return fmt.Errorf("c2s: epoll watch: %w", err)
	}
	return nil
}

// forget stops watching fd for s; call it before the socket is closed, so
// that a new socket with the same number is not taken for the old one. If
// the socket was closed already and its number now belongs to another
// parked session, that one is left alone.
func (p *poller) forget(fd int, s *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.sessions[int32(fd)]; ok && cur != s {
		return
	}
	delete(p.sessions, int32(fd))
	if !p.closed {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	}
}

// run waits for events until close.
func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Parked sessions still end through stopReads and their idle
			// timers, but input no longer wakes them.
			p.log.Error("waiting for idle client connections failed; parked connections wait for their idle timeout", "err", err)
			return
		}
		var ready []*Session
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(p.wake[0]) {
				continue
			}
			if s := p.sessions[ev.Fd]; s != nil {
				delete(p.sessions, ev.Fd)
				ready = append(ready, s)
			}
		}
		p.mu.Unlock()
		for _, s := range ready {
			s.wake()
		}
	}
}

// close stops the poller. Sessions still parked are not woken: the
// server ends them (stopReads wakes them) before it closes the poller.
func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	syscall.Write(p.wake[1], []byte{0})
	<-p.done
	p.closeFDs()
}
