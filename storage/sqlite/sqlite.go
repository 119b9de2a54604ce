// Package sqlite is the embedded default implementation of the storage
// interfaces of Wren, on top of SQLite (github.com/mattn/go-sqlite3, cgo).
//
// A Store keeps two connection pools on the same database file: a single
// read-write connection used only by the store's writer goroutine, and a
// small pool of read-only connections for queries. SQLite in WAL mode lets
// the readers run concurrently with the writer.
//
// Every write is a function queued to the writer goroutine, which runs as
// many queued writes as it can (group commit) in one transaction, each
// inside its own SAVEPOINT so that a failing write is rolled back without
// affecting the others in the batch. A write method returns after the
// transaction holding it committed.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"

	"wren.im/wren/storage"
)

// ErrClosed is returned by the methods of a Store after Close.
var ErrClosed = errors.New("sqlite: store is closed")

const (
	// maxBatch is the largest number of write operations committed in one
	// transaction.
	maxBatch = 2048
	// walCheckpointPages is the size of the write-ahead log, in pages of
	// 4 KiB, past which a commit checkpoints it (64 MiB).
	walCheckpointPages = 16384
	// queueSize is the number of write operations that may wait for the
	// writer; callers block when it is full.
	queueSize = 4096
	// readConns is the size of the read-only connection pool.
	readConns = 4

	// writerParams configure the single read-write connection. PRAGMAs
	// are set in the DSN so that they apply to every new connection.
	writerParams = "_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000&_txlock=immediate&_foreign_keys=1&_stmt_cache_size=32&_cache_size=-32768"
	// readerParams configure the connections of the read-only pool.
	readerParams = "mode=ro&_query_only=1&_busy_timeout=5000&_stmt_cache_size=32"
)

// Store is a SQLite database holding everything Wren keeps on disk. It
// implements storage.Store and is safe for concurrent use. Create it with
// Open and release it with Close.
type Store struct {
	w      *sql.DB // single read-write connection, used by the writer goroutine only
	r      *sql.DB // read-only pool
	logger *slog.Logger

	ops  chan *writeOp // queued writes, in order; only the writer receives
	quit chan struct{} // closed by Close once no op can be queued any more
	done chan struct{} // closed by the writer goroutine when it returns

	// closeMu guards closed: enqueue holds it for reading while it sends
	// on ops, so that after Close set closed no op can be added behind the
	// writer's last look at the queue.
	closeMu sync.RWMutex
	closed  atomic.Bool

	// lastTS caches the time of each user's latest archived message, so
	// that an append needs no query to keep times increasing. Used only by
	// the writer goroutine (inside write functions). A time cached from a
	// batch that was rolled back is only ahead of the table, which keeps
	// times increasing all the same.
	lastTS map[string]int64

	rosters userCache[cachedRoster]
	// noRequests holds users known to have no pending subscription
	// requests (the common case, read at every login).
	noRequests userCache[struct{}]

	closeOnce sync.Once
	closeErr  error // set once by Close
}

var _ storage.Store = (*Store)(nil)

// Open opens the database file at path, creating it (mode 0600, and its
// directory with mode 0700) if needed, applies pending schema migrations and
// starts the writer goroutine. A database whose schema is newer than this
// version of Wren knows is refused. A nil logger discards logs.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := createFile(abs, logger); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}

	// In a SQLite URI, '?', '#' and '%' in the path must be escaped.
	upath := filepath.ToSlash(abs)
	if !strings.HasPrefix(upath, "/") {
		upath = "/" + upath // Windows: file:/C:/...
	}
	uri := "file:" + (&url.URL{Path: upath}).EscapedPath()
	w, err := sql.Open("sqlite3", uri+"?"+writerParams)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	if _, err := migrate(ctx, w, schemaMigrations(), logger); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	// Checkpoint (copy the WAL back into the database file, with fsyncs)
	// every walCheckpointPages instead of SQLite's 1,000: each checkpoint
	// copies a page once however often it changed, so under a steady
	// stream of writes (archive indexes) fewer, larger checkpoints cost far
	// less. The setting belongs to the connection, which the pool keeps.
	if _, err := w.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", walCheckpointPages)); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: set checkpoint interval: %w", abs, err)
	}

	// The read pool is opened after the migrations so that the file is
	// already in WAL mode (which is persistent) when readers connect.
	r, err := sql.Open("sqlite3", uri+"?"+readerParams)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", abs, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s read-only: %w", abs, err)
	}

	s := &Store{
		w:      w,
		r:      r,
		logger: logger,
		ops:    make(chan *writeOp, queueSize),
		lastTS: make(map[string]int64),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.writer()
	logger.Debug("sqlite store open", "path", abs)
	return s, nil
}

// createFile makes sure the database file exists, creating its directory
// with mode 0700 and the file itself with mode 0600 so that SQLite, which
// gives its -wal and -shm files the mode of the database file, never
// creates anything readable by other users. An existing file is left as it
// is, with a warning if other users can read it.
func createFile(path string, logger *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("database file is accessible to other users", "path", path, "mode", fi.Mode().Perm().String())
	}
	return nil
}

// Close waits for every queued write to commit, stops the writer goroutine
// and closes the database. Writes racing with Close either complete or fail
// with ErrClosed; every call after Close fails with ErrClosed. Close is
// idempotent and safe for concurrent use: every call returns the result of
// the first.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed.Store(true)
		s.closeMu.Unlock()
		close(s.quit)
		<-s.done
		if err := errors.Join(s.r.Close(), s.w.Close()); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
		s.logger.Debug("sqlite store closed")
	})
	return s.closeErr
}

// isClosed reports whether Close has been called.
func (s *Store) isClosed() bool { return s.closed.Load() }

// isNoRows reports whether err means a query returned no row.
func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// isForeignKey reports whether err is a foreign key violation, which in this
// schema means the user has no account.
func isForeignKey(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintForeignKey
}

// noAccount is the error returned by writes for a user who has no account.
func noAccount(user string) error {
	return fmt.Errorf("no account %q: %w", user, storage.ErrNotFound)
}

// blob returns b, or an empty non-nil slice if b is nil: the driver binds a
// nil slice as NULL, which the NOT NULL columns refuse.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
