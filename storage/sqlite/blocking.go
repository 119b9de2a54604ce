package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"wren.im/wren/storage"
)

// Blocklist implements storage.Blocklists.
func (s *Store) Blocklist(ctx context.Context, user string) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: blocklist of %s: %w", user, ErrClosed)
	}
	rows, err := s.r.QueryContext(ctx, "SELECT jid FROM blocklist_items WHERE username = ? ORDER BY rowid", user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: blocklist of %s: %w", user, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			return nil, fmt.Errorf("sqlite: blocklist of %s: %w", user, err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: blocklist of %s: %w", user, err)
	}
	return out, nil
}

// BlockJIDs implements storage.Blocklists.
func (s *Store) BlockJIDs(ctx context.Context, user string, jids []string, max int) error {
	now := time.Now().UnixNano()
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, j := range jids {
			_, err := tx.Exec(`INSERT INTO blocklist_items (username, jid, created) VALUES (?, ?, ?)
				ON CONFLICT (username, jid) DO NOTHING`, user, j, now)
			if isForeignKey(err) {
				return noAccount(user)
			}
			if err != nil {
				return err
			}
		}
		if max <= 0 {
			return nil
		}
		var n int
		if err := tx.QueryRow("SELECT count(*) FROM blocklist_items WHERE username = ?", user).Scan(&n); err != nil {
			return err
		}
		if n > max {
			// Returning an error rolls this write back.
			return storage.ErrQuotaExceeded
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: block %d JIDs for %s: %w", len(jids), user, err)
	}
	return nil
}

// UnblockJIDs implements storage.Blocklists.
func (s *Store) UnblockJIDs(ctx context.Context, user string, jids []string) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		n = 0
		for _, j := range jids {
			res, err := tx.Exec("DELETE FROM blocklist_items WHERE username = ? AND jid = ?", user, j)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: unblock %d JIDs for %s: %w", len(jids), user, err)
	}
	return int(n), nil
}

// UnblockAll implements storage.Blocklists.
func (s *Store) UnblockAll(ctx context.Context, user string) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec("DELETE FROM blocklist_items WHERE username = ?", user)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: unblock all for %s: %w", user, err)
	}
	return int(n), nil
}
