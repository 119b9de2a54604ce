package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"wren.im/wren/storage"
)

// StoreOffline appends a message to the user's offline queue and returns its
// ID. If maxQueued > 0 and the queue already holds maxQueued messages, it
// writes nothing and returns storage.ErrQuotaExceeded; the check and the
// insert run in the same writer transaction, so concurrent calls cannot
// cross the cap. The message is committed when StoreOffline returns nil.
// storage.ErrNotFound if the user has no account.
func (s *Store) StoreOffline(ctx context.Context, user string, stanza []byte, maxQueued int) (int64, error) {
	stored := time.Now().UnixNano()
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		if maxQueued > 0 {
			var n int
			if err := tx.QueryRow("SELECT count(*) FROM offline_messages WHERE username = ?", user).Scan(&n); err != nil {
				return fmt.Errorf("count: %w", err)
			}
			if n >= maxQueued {
				return storage.ErrQuotaExceeded
			}
		}
		res, err := tx.Exec("INSERT INTO offline_messages (username, stanza, stored) VALUES (?, ?, ?)",
			user, blob(stanza), stored)
		if isForeignKey(err) {
			return noAccount(user)
		}
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: store offline message for %s: %w", user, err)
	}
	return id, nil
}

// OfflineMessages returns the user's offline queue, oldest first.
func (s *Store) OfflineMessages(ctx context.Context, user string) ([]storage.OfflineMessage, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: offline messages of %s: %w", user, ErrClosed)
	}
	rows, err := s.r.QueryContext(ctx,
		"SELECT id, stanza, stored FROM offline_messages WHERE username = ? ORDER BY id", user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: offline messages of %s: %w", user, err)
	}
	defer rows.Close()
	var msgs []storage.OfflineMessage
	for rows.Next() {
		var (
			m      storage.OfflineMessage
			stored int64
		)
		if err := rows.Scan(&m.ID, &m.Stanza, &stored); err != nil {
			return nil, fmt.Errorf("sqlite: offline messages of %s: %w", user, err)
		}
		m.Stored = fromUnixNano(stored)
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: offline messages of %s: %w", user, err)
	}
	return msgs, nil
}

// DeleteOffline removes the user's offline messages with ID <= upTo.
func (s *Store) DeleteOffline(ctx context.Context, user string, upTo int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec("DELETE FROM offline_messages WHERE username = ? AND id <= ?", user, upTo)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete offline messages of %s: %w", user, err)
	}
	return nil
}

// CountOffline returns the number of messages queued for the user.
func (s *Store) CountOffline(ctx context.Context, user string) (int, error) {
	if s.isClosed() {
		return 0, fmt.Errorf("sqlite: count offline messages of %s: %w", user, ErrClosed)
	}
	var n int
	err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM offline_messages WHERE username = ?", user).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite: count offline messages of %s: %w", user, err)
	}
	return n, nil
}
