package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"wren.im/wren/storage"
)

// archiveKey is the position of a message in its archive: messages are
// ordered by ts, then by rowid.
type archiveKey struct{ ts, id int64 }

var (
	// keyMin and keyMax are below and above every real key (rowids are
	// at least 1 and less than MaxInt64).
	keyMin = archiveKey{math.MinInt64, 0}
	keyMax = archiveKey{math.MaxInt64, math.MaxInt64}
)

func (k archiveKey) less(o archiveKey) bool {
	return k.ts < o.ts || (k.ts == o.ts && k.id < o.id)
}

// archiveColumns are the columns scanned by scanArchived, in order.
const archiveColumns = "id, stanza_id, ts, with_jid, with_res, outgoing, stanza"

// archiveTick is how far AppendArchive moves a message's time past the
// user's latest one when it would not come after it (two messages in the
// same microsecond, or a clock step backwards). A microsecond keeps times
// that callers round to microseconds (for XEP-0082 stamps) exact.
const archiveTick = int64(time.Microsecond)

// lastTSMax bounds the writer's memory of the latest archive time of each
// user (Store.lastTS); it starts over when full.
const lastTSMax = 100_000

// AppendArchive adds a message at the end of the user's archive. The time
// stored is m.Time (now when zero), moved to archiveTick after the user's
// latest message if it would not come after it, so that archive order and
// time order agree and no two messages of a user share a time.
func (s *Store) AppendArchive(ctx context.Context, user string, m storage.ArchivedMessage) (time.Time, error) {
	fn, stored := s.appendArchive(user, m)
	if err := s.writeOp(ctx, &writeOp{ctx: ctx, fn: fn, oneChange: true}); err != nil {
		return time.Time{}, fmt.Errorf("sqlite: archive message for %s: %w", user, err)
	}
	return stored(), nil
}

// QueueArchive adds a message at the end of the user's archive like
// AppendArchive, without waiting for the write: see storage.Archive.
func (s *Store) QueueArchive(ctx context.Context, user string, m storage.ArchivedMessage, done func(time.Time, error)) error {
	fn, stored := s.appendArchive(user, m)
	var report func(error)
	if done != nil {
		report = func(err error) {
			if err != nil {
				done(time.Time{}, fmt.Errorf("sqlite: archive message for %s: %w", user, err))
				return
			}
			done(stored(), nil)
		}
	}
	if err := s.queueOp(ctx, &writeOp{fn: fn, done: report, oneChange: true}); err != nil {
		return fmt.Errorf("sqlite: archive message for %s: %w", user, err)
	}
	return nil
}

// appendArchive returns the write that appends m to user's archive and a
// function that returns the time it was stored under, valid once the
// write succeeded.
func (s *Store) appendArchive(user string, m storage.ArchivedMessage) (func(*sql.Tx) error, func() time.Time) {
	ts := m.Time.UnixNano()
	if m.Time.IsZero() {
		ts = time.Now().UnixNano()
	}
	out := 0
	if m.Outgoing {
		out = 1
	}
	var stored int64
	fn := func(tx *sql.Tx) error {
		at := ts
		last, ok := s.lastTS[user]
		if !ok {
			err := tx.QueryRow("SELECT ts FROM archive WHERE username = ? ORDER BY ts DESC, id DESC LIMIT 1", user).Scan(&last)
			if err != nil && !isNoRows(err) {
				return fmt.Errorf("latest time: %w", err)
			}
		}
		if at <= last {
			at = last + archiveTick
		}
		_, err := tx.Exec(`INSERT INTO archive (username, stanza_id, ts, with_jid, with_res, outgoing, stanza)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			user, m.ID, at, m.With, m.WithResource, out, blob(m.Stanza))
		switch {
		case isForeignKey(err):
			return noAccount(user)
		case isUnique(err):
			return fmt.Errorf("archive id %q: %w", m.ID, storage.ErrExists)
		case err != nil:
			return err
		}
		if len(s.lastTS) >= lastTSMax {
			clear(s.lastTS)
		}
		s.lastTS[user] = at
		stored = at
		return nil
	}
	return fn, func() time.Time { return fromUnixNano(stored) }
}

// isUnique reports whether err is a unique constraint violation.
func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique
}

// ArchivedMessage returns one message by archive id.
func (s *Store) ArchivedMessage(ctx context.Context, user, id string) (storage.ArchivedMessage, error) {
	if s.isClosed() {
		return storage.ArchivedMessage{}, fmt.Errorf("sqlite: archived message %s of %s: %w", id, user, ErrClosed)
	}
	row := s.r.QueryRowContext(ctx, "SELECT "+archiveColumns+" FROM archive WHERE username = ? AND stanza_id = ?", user, id)
	m, _, err := scanArchived(row)
	if isNoRows(err) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return storage.ArchivedMessage{}, fmt.Errorf("sqlite: archived message %s of %s: %w", id, user, err)
	}
	return m, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanArchived(r scanner) (storage.ArchivedMessage, archiveKey, error) {
	var (
		m   storage.ArchivedMessage
		k   archiveKey
		out int
	)
	if err := r.Scan(&k.id, &m.ID, &k.ts, &m.With, &m.WithResource, &out, &m.Stanza); err != nil {
		return m, k, err
	}
	m.Time, m.Outgoing = fromUnixNano(k.ts), out == 1
	return m, k, nil
}

// archiveFilter is a query translated to SQL: the table with the index
// to scan, a WHERE clause bounded by two keys (exclusive) and its
// arguments.
type archiveFilter struct {
	from  string
	where string
	args  []any
}

// filter resolves the ids named by q (After, Before) into keys and builds
// the WHERE clause shared by QueryArchive and CountArchive. It reads in
// tx so that the keys and the page come from one snapshot.
func (s *Store) filter(ctx context.Context, tx *sql.Tx, user string, q storage.ArchiveQuery) (archiveFilter, error) {
	lo, hi := keyMin, keyMax
	if !q.Start.IsZero() {
		// ts >= start: (ts, id) > (start, 0) because ids are at least 1.
		lo = archiveKey{q.Start.UnixNano(), 0}
	}
	if !q.End.IsZero() {
		hi = archiveKey{q.End.UnixNano(), math.MaxInt64}
	}
	key := func(id string) (archiveKey, error) {
		var k archiveKey
		err := tx.QueryRowContext(ctx, "SELECT ts, id FROM archive WHERE username = ? AND stanza_id = ?", user, id).Scan(&k.ts, &k.id)
		if isNoRows(err) {
			return k, fmt.Errorf("archive id %q: %w", id, storage.ErrNotFound)
		}
		return k, err
	}
	for _, id := range q.After {
		k, err := key(id)
		if err != nil {
			return archiveFilter{}, err
		}
		if lo.less(k) {
			lo = k
		}
	}
	for _, id := range q.Before {
		k, err := key(id)
		if err != nil {
			return archiveFilter{}, err
		}
		if k.less(hi) {
			hi = k
		}
	}
	var b strings.Builder
	args := []any{user}
	b.WriteString("username = ?")
	// Name the index: without statistics the planner prefers the time
	// index even for a contact filter, which walks the whole archive for
	// a contact with few messages.
	from := "archive INDEXED BY archive_user_ts"
	if q.With != "" {
		from = "archive INDEXED BY archive_user_with_ts"
	}
	if q.With != "" {
		b.WriteString(" AND with_jid = ?")
		args = append(args, q.With)
		if q.WithResource != "" {
			b.WriteString(" AND with_res = ?")
			args = append(args, q.WithResource)
		}
	}
	b.WriteString(" AND (ts, id) > (?, ?) AND (ts, id) < (?, ?)")
	args = append(args, lo.ts, lo.id, hi.ts, hi.id)
	if len(q.IDs) > 0 {
		// Every id must exist, even if the other filters exclude it.
		var n int
		in := "?" + strings.Repeat(", ?", len(q.IDs)-1)
		idArgs := []any{user}
		seen := map[string]bool{}
		for _, id := range q.IDs {
			idArgs = append(idArgs, id)
			seen[id] = true
		}
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM archive WHERE username = ? AND stanza_id IN ("+in+")", idArgs...).Scan(&n); err != nil {
			return archiveFilter{}, err
		}
		if n != len(seen) {
			return archiveFilter{}, fmt.Errorf("some of the archive ids %q: %w", q.IDs, storage.ErrNotFound)
		}
		b.WriteString(" AND stanza_id IN (" + in + ")")
		args = append(args, idArgs[1:]...)
		// A handful of known ids: look them up by id.
		from = "archive INDEXED BY archive_user_sid"
	}
	return archiveFilter{from: from, where: b.String(), args: args}, nil
}

// QueryArchive returns one page of the messages that match q. The page is
// read with one range scan of an index in the direction of the query, one
// row more than the page to learn whether it is complete; no OFFSET is
// ever used.
func (s *Store) QueryArchive(ctx context.Context, user string, q storage.ArchiveQuery) (page storage.ArchivePage, err error) {
	defer func() {
		if err != nil {
			page, err = storage.ArchivePage{}, fmt.Errorf("sqlite: query archive of %s: %w", user, err)
		}
	}()
	if s.isClosed() {
		return page, ErrClosed
	}
	if q.Max <= 0 {
		return page, errors.New("page size must be greater than 0")
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return page, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to undo
	f, err := s.filter(ctx, tx, user, q)
	if err != nil {
		return page, err
	}
	order := "ts, id"
	if q.Last {
		order = "ts DESC, id DESC"
	}
	rows, err := tx.QueryContext(ctx, "SELECT "+archiveColumns+" FROM "+f.from+" WHERE "+f.where+" ORDER BY "+order+" LIMIT ?",
		append(f.args, q.Max+1)...)
	if err != nil {
		return page, err
	}
	defer rows.Close()
	msgs := make([]storage.ArchivedMessage, 0, min(q.Max, 256))
	for rows.Next() {
		if len(msgs) == q.Max {
			// One more row than the page: the page is not the end.
			if err := rows.Close(); err != nil {
				return page, err
			}
			page.Messages = msgs
			if q.Last {
				reverse(page.Messages)
			}
			return page, nil
		}
		m, _, err := scanArchived(rows)
		if err != nil {
			return page, err
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return page, err
	}
	if q.Last {
		reverse(msgs)
	}
	return storage.ArchivePage{Messages: msgs, Complete: true}, nil
}

func reverse(m []storage.ArchivedMessage) {
	for i, j := 0, len(m)-1; i < j; i, j = i+1, j-1 {
		m[i], m[j] = m[j], m[i]
	}
}

// CountArchive returns the number of messages that match q, ignoring Max
// and Last.
func (s *Store) CountArchive(ctx context.Context, user string, q storage.ArchiveQuery) (n int, err error) {
	defer func() {
		if err != nil {
			n, err = 0, fmt.Errorf("sqlite: count archive of %s: %w", user, err)
		}
	}()
	if s.isClosed() {
		return 0, ErrClosed
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to undo
	f, err := s.filter(ctx, tx, user, q)
	if err != nil {
		return 0, err
	}
	err = tx.QueryRowContext(ctx, "SELECT count(*) FROM "+f.from+" WHERE "+f.where, f.args...).Scan(&n)
	return n, err
}

// ArchiveBounds returns the first and the last message of the archive,
// without their stanzas.
func (s *Store) ArchiveBounds(ctx context.Context, user string) (first, last storage.ArchivedMessage, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlite: archive bounds of %s: %w", user, err)
		}
	}()
	if s.isClosed() {
		return first, last, ErrClosed
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return first, last, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to undo
	const cols = "id, stanza_id, ts, with_jid, with_res, outgoing, x''"
	first, _, err = scanArchived(tx.QueryRowContext(ctx, "SELECT "+cols+" FROM archive WHERE username = ? ORDER BY ts, id LIMIT 1", user))
	if isNoRows(err) {
		return first, last, storage.ErrNotFound
	}
	if err != nil {
		return first, last, err
	}
	last, _, err = scanArchived(tx.QueryRowContext(ctx, "SELECT "+cols+" FROM archive WHERE username = ? ORDER BY ts DESC, id DESC LIMIT 1", user))
	first.Stanza, last.Stanza = nil, nil
	return first, last, err
}

// TrimArchive removes up to limit of the oldest messages that are older
// than olderThan or beyond the newest keep.
func (s *Store) TrimArchive(ctx context.Context, user string, olderThan time.Time, keep, limit int) (int, error) {
	if limit <= 0 || (olderThan.IsZero() && keep <= 0) {
		return 0, nil
	}
	var removed int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		// Everything strictly below cut goes.
		cut := keyMin
		if !olderThan.IsZero() {
			cut = archiveKey{olderThan.UnixNano(), 0}
		}
		if keep > 0 {
			// The oldest message to keep. OFFSET walks keep index entries:
			// acceptable for a periodic cleanup, never used for pages.
			var k archiveKey
			err := tx.QueryRow("SELECT ts, id FROM archive WHERE username = ? ORDER BY ts DESC, id DESC LIMIT 1 OFFSET ?",
				user, keep-1).Scan(&k.ts, &k.id)
			switch {
			case isNoRows(err):
			case err != nil:
				return fmt.Errorf("find the oldest message to keep: %w", err)
			case cut.less(k):
				cut = k
			}
		}
		if cut == keyMin {
			return nil
		}
		res, err := tx.Exec(`DELETE FROM archive WHERE id IN (
				SELECT id FROM archive WHERE username = ? AND (ts, id) < (?, ?) ORDER BY ts, id LIMIT ?)`,
			user, cut.ts, cut.id, limit)
		if err != nil {
			return err
		}
		removed, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim archive of %s: %w", user, err)
	}
	return int(removed), nil
}

// ArchivePrefs returns the user's archiving preferences.
func (s *Store) ArchivePrefs(ctx context.Context, user string) (storage.ArchivePrefs, error) {
	if s.isClosed() {
		return storage.ArchivePrefs{}, fmt.Errorf("sqlite: archive preferences of %s: %w", user, ErrClosed)
	}
	var (
		p             storage.ArchivePrefs
		always, never string
	)
	err := s.r.QueryRowContext(ctx, "SELECT default_mode, always_jids, never_jids FROM archive_prefs WHERE username = ?", user).
		Scan(&p.Default, &always, &never)
	if isNoRows(err) {
		err = storage.ErrNotFound
	}
	if err == nil {
		err = errors.Join(json.Unmarshal([]byte(always), &p.Always), json.Unmarshal([]byte(never), &p.Never))
	}
	if err != nil {
		return storage.ArchivePrefs{}, fmt.Errorf("sqlite: archive preferences of %s: %w", user, err)
	}
	return p, nil
}

// SetArchivePrefs stores or replaces the user's archiving preferences.
func (s *Store) SetArchivePrefs(ctx context.Context, user string, p storage.ArchivePrefs) error {
	always, err := json.Marshal(nonNil(p.Always))
	if err != nil {
		return fmt.Errorf("sqlite: set archive preferences of %s: %w", user, err)
	}
	never, err := json.Marshal(nonNil(p.Never))
	if err != nil {
		return fmt.Errorf("sqlite: set archive preferences of %s: %w", user, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO archive_prefs (username, default_mode, always_jids, never_jids)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (username) DO UPDATE SET
				default_mode = excluded.default_mode, always_jids = excluded.always_jids, never_jids = excluded.never_jids`,
			user, p.Default, string(always), string(never))
		if isForeignKey(err) {
			return noAccount(user)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: set archive preferences of %s: %w", user, err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
