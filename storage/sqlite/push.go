package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"wren.im/wren/storage"
)

const schemaPushRegistrations = `
CREATE TABLE push_registrations (
	username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	service  TEXT NOT NULL,
	node     TEXT NOT NULL,
	options  BLOB,
	resource TEXT NOT NULL,
	created  INTEGER NOT NULL, -- unix nanoseconds, UTC
	errors   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (username, service, node)
) STRICT;
`

// PutPushRegistration implements storage.PushRegistrations.
func (s *Store) PutPushRegistration(ctx context.Context, user string, r storage.PushRegistration, max int) error {
	created := r.Created
	if created.IsZero() {
		created = time.Now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if max > 0 {
			var others int
			if err := tx.QueryRow(`SELECT count(*) FROM push_registrations
				WHERE username = ? AND NOT (service = ? AND node = ?)`, user, r.Service, r.Node).Scan(&others); err != nil {
				return err
			}
			if others >= max {
				return storage.ErrQuotaExceeded
			}
		}
		_, err := tx.Exec(`INSERT INTO push_registrations (username, service, node, options, resource, created, errors)
			VALUES (?, ?, ?, ?, ?, ?, 0)
			ON CONFLICT (username, service, node) DO UPDATE SET
				options = excluded.options, resource = excluded.resource,
				created = excluded.created, errors = 0`,
			user, r.Service, r.Node, r.Options, r.Resource, created.UnixNano())
		if isForeignKey(err) {
			return noAccount(user)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: put push registration %s/%s of %s: %w", r.Service, r.Node, user, err)
	}
	return nil
}

// DeletePushRegistrations implements storage.PushRegistrations.
func (s *Store) DeletePushRegistrations(ctx context.Context, user, service, node string) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if node == "" {
			res, err = tx.Exec("DELETE FROM push_registrations WHERE username = ? AND service = ?", user, service)
		} else {
			res, err = tx.Exec("DELETE FROM push_registrations WHERE username = ? AND service = ? AND node = ?", user, service, node)
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete push registrations %s/%s of %s: %w", service, node, user, err)
	}
	return int(n), nil
}

// PushRegistrations implements storage.PushRegistrations.
func (s *Store) PushRegistrations(ctx context.Context, user string) ([]storage.PushRegistration, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: push registrations of %s: %w", user, ErrClosed)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT service, node, options, resource, created, errors
		FROM push_registrations WHERE username = ? ORDER BY created, rowid`, user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: push registrations of %s: %w", user, err)
	}
	defer rows.Close()
	var out []storage.PushRegistration
	for rows.Next() {
		var r storage.PushRegistration
		var created int64
		if err := rows.Scan(&r.Service, &r.Node, &r.Options, &r.Resource, &created, &r.Errors); err != nil {
			return nil, fmt.Errorf("sqlite: push registrations of %s: %w", user, err)
		}
		r.Created = time.Unix(0, created).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: push registrations of %s: %w", user, err)
	}
	return out, nil
}

// SetPushErrors implements storage.PushRegistrations.
func (s *Store) SetPushErrors(ctx context.Context, user, service, node string, errors int) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec("UPDATE push_registrations SET errors = ? WHERE username = ? AND service = ? AND node = ?",
			errors, user, service, node)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: set push errors of %s/%s of %s: %w", service, node, user, err)
	}
	return nil
}
