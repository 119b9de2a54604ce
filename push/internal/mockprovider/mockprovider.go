// Package mockprovider is the bookkeeping the APNs and FCM mocks share:
// scripted answers (one-shot and per token) and the log of received pushes
// that tests read and wait on.
package mockprovider

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Script holds the answers a mock gives: one-shot answers first, in
// order, then the answer set for the request's token, then a default.
type Script[R any] struct {
	mu       sync.Mutex
	queue    []R
	perToken map[string]R
}

// Enqueue adds one-shot answers.
func (s *Script[R]) Enqueue(r ...R) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, r...)
}

// ReplyTo sets the answer for token until changed.
func (s *Script[R]) ReplyTo(token string, r R) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perToken == nil {
		s.perToken = map[string]R{}
	}
	s.perToken[token] = r
}

// Answer picks the answer to a request for token.
func (s *Script[R]) Answer(token string, def R) R {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		r := s.queue[0]
		s.queue = s.queue[1:]
		return r
	}
	if r, ok := s.perToken[token]; ok {
		return r
	}
	return def
}

// Log records what a mock received. The zero value is ready to use.
type Log[P any] struct {
	mu      sync.Mutex
	items   []P
	changed chan struct{} // closed and replaced whenever items grows
}

func (l *Log[P]) signal() chan struct{} {
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// Record appends p and wakes waiters.
func (l *Log[P]) Record(p P) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, p)
	close(l.signal())
	l.changed = make(chan struct{})
}

// All returns a copy of the records, in order.
func (l *Log[P]) All() []P {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.items)
}

// Wait waits until at least n records exist and returns them; it fails the
// test, naming the mock, if that takes longer than timeout.
func (l *Log[P]) Wait(t testing.TB, mock string, n int, timeout time.Duration) []P {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		if len(l.items) >= n {
			out := slices.Clone(l.items)
			l.mu.Unlock()
			return out
		}
		changed, got := l.signal(), len(l.items)
		l.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("%s: got %d pushes after %v, want %d", mock, got, timeout, n)
			return nil
		}
	}
}

// Violations lists the protocol violations of every record, each
// prefixed with the request's path; path and violations read a record.
func Violations[P any](records []P, path func(P) string, violations func(P) []string) []string {
	var out []string
	for _, p := range records {
		for _, v := range violations(p) {
			out = append(out, path(p)+": "+v)
		}
	}
	return out
}
