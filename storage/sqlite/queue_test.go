package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"wren.im/wren/storage"
)

// Queued archive writes keep their order, report their result once on
// disk, and fail alone: a duplicate id or a missing account does not take
// the writes around it down.
func TestQueueArchive(t *testing.T) {
	s := newStore(t)
	mustCreate(t, s, "alice")
	ctx := context.Background()
	const n = 1000
	var (
		mu      sync.Mutex
		results []error
		times   []time.Time
	)
	done := func(at time.Time, err error) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, err)
		times = append(times, at)
	}
	at := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	for i := range n {
		m := storage.ArchivedMessage{ID: fmt.Sprintf("id%04d", i), Time: at, With: "bob@localhost", Stanza: []byte("<message/>")}
		if i == 500 {
			m.ID = "id0001" // already used
		}
		user := "alice"
		if i == 700 {
			user = "nobody"
		}
		if err := s.QueueArchive(ctx, user, m, done); err != nil {
			t.Fatal(err)
		}
	}
	written := make(chan struct{})
	if err := s.AfterWrites(func() { close(written) }); err != nil {
		t.Fatal(err)
	}
	<-written
	mu.Lock()
	defer mu.Unlock()
	if len(results) != n {
		t.Fatalf("%d results for %d queued writes", len(results), n)
	}
	for i, err := range results {
		switch i {
		case 500:
			if !errors.Is(err, storage.ErrExists) {
				t.Errorf("write 500 (duplicate id): %v, want ErrExists", err)
			}
		case 700:
			if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("write 700 (no account): %v, want ErrNotFound", err)
			}
		default:
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
	}
	// Same time asked for every message: stored times still increase,
	// in the order of the calls.
	var last time.Time
	for i, ts := range times {
		if i == 500 || i == 700 {
			continue
		}
		if !ts.After(last) {
			t.Fatalf("write %d stored at %v, not after %v", i, ts, last)
		}
		last = ts
	}
	got, err := s.CountArchive(ctx, "alice", storage.ArchiveQuery{})
	if err != nil || got != n-2 {
		t.Fatalf("archive holds %d (%v), want %d", got, err, n-2)
	}
	page, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 3})
	if err != nil || len(page.Messages) != 3 || page.Messages[0].ID != "id0000" || page.Messages[2].ID != "id0002" {
		t.Fatalf("first page %+v (%v)", page.Messages, err)
	}
}

// Close writes everything queued before it: a queued write is a promise.
// After Close nothing can be queued.
func TestCloseWritesQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wren.db")
	s := openAt(t, path)
	mustCreate(t, s, "alice")
	ctx := context.Background()
	const n = 5000 // more than the queue holds: callers wait for room
	for i := range n {
		m := storage.ArchivedMessage{ID: fmt.Sprintf("q%05d", i), With: "bob@localhost", Stanza: []byte("<message/>")}
		if err := s.QueueArchive(ctx, "alice", m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.QueueArchive(ctx, "alice", storage.ArchivedMessage{ID: "late", Stanza: []byte("<message/>")}, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("QueueArchive after Close: %v, want ErrClosed", err)
	}
	if err := s.AfterWrites(func() { t.Error("AfterWrites callback after Close") }); !errors.Is(err, ErrClosed) {
		t.Fatalf("AfterWrites after Close: %v, want ErrClosed", err)
	}
	s = openAt(t, path)
	if got, err := s.CountArchive(ctx, "alice", storage.ArchiveQuery{}); err != nil || got != n {
		t.Fatalf("after reopening, the archive holds %d (%v), want %d", got, err, n)
	}
}

// Writes queued by many goroutines while Close runs either fail with
// ErrClosed or are on disk afterwards: none is lost silently.
func TestQueueRacingClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wren.db")
	s := openAt(t, path)
	mustCreate(t, s, "alice")
	ctx := context.Background()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
		reported int
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				m := storage.ArchivedMessage{ID: fmt.Sprintf("g%d-%d", g, i), Stanza: []byte("<message/>")}
				err := s.QueueArchive(ctx, "alice", m, func(_ time.Time, err error) {
					if err == nil {
						mu.Lock()
						reported++
						mu.Unlock()
					}
				})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openAt(t, path)
	got, err := s.CountArchive(ctx, "alice", storage.ArchiveQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if got != accepted || reported != accepted || accepted == 0 {
		t.Fatalf("%d writes accepted, %d reported written, %d on disk", accepted, reported, got)
	}
}
