package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"wren.im/wren/storage"
)

// CreateAccount stores a new account; storage.ErrExists if the username is
// taken. A zero Created is replaced by the current time.
func (s *Store) CreateAccount(ctx context.Context, a storage.Account) error {
	created := a.Created
	if created.IsZero() {
		created = time.Now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO accounts (username, created,
				sha1_salt, sha1_iter, sha1_stored, sha1_server,
				sha256_salt, sha256_iter, sha256_stored, sha256_server)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (username) DO NOTHING`,
			a.Username, created.UnixNano(),
			blob(a.SHA1.Salt), a.SHA1.Iterations, blob(a.SHA1.StoredKey), blob(a.SHA1.ServerKey),
			blob(a.SHA256.Salt), a.SHA256.Iterations, blob(a.SHA256.StoredKey), blob(a.SHA256.ServerKey))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrExists
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: create account %s: %w", a.Username, err)
	}
	return nil
}

// Account returns one account; storage.ErrNotFound if there is none.
func (s *Store) Account(ctx context.Context, username string) (storage.Account, error) {
	if s.isClosed() {
		return storage.Account{}, fmt.Errorf("sqlite: account %s: %w", username, ErrClosed)
	}
	a := storage.Account{Username: username}
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT created,
			sha1_salt, sha1_iter, sha1_stored, sha1_server,
			sha256_salt, sha256_iter, sha256_stored, sha256_server
		FROM accounts WHERE username = ?`, username).Scan(&created,
		&a.SHA1.Salt, &a.SHA1.Iterations, &a.SHA1.StoredKey, &a.SHA1.ServerKey,
		&a.SHA256.Salt, &a.SHA256.Iterations, &a.SHA256.StoredKey, &a.SHA256.ServerKey)
	if isNoRows(err) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return storage.Account{}, fmt.Errorf("sqlite: account %s: %w", username, err)
	}
	a.Created = fromUnixNano(created)
	return a, nil
}

// SetCredentials replaces the credentials of an account;
// storage.ErrNotFound if there is none.
func (s *Store) SetCredentials(ctx context.Context, username string, sha1, sha256 storage.ScramCredential) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE accounts SET
				sha1_salt = ?, sha1_iter = ?, sha1_stored = ?, sha1_server = ?,
				sha256_salt = ?, sha256_iter = ?, sha256_stored = ?, sha256_server = ?
			WHERE username = ?`,
			blob(sha1.Salt), sha1.Iterations, blob(sha1.StoredKey), blob(sha1.ServerKey),
			blob(sha256.Salt), sha256.Iterations, blob(sha256.StoredKey), blob(sha256.ServerKey),
			username)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: set credentials of %s: %w", username, err)
	}
	return nil
}

// DeleteAccount removes the account and all data kept for it (roster and
// roster version, pending subscription requests, offline messages, vCard,
// private XML) in one transaction; storage.ErrNotFound if there is none.
func (s *Store) DeleteAccount(ctx context.Context, username string) error {
	err := s.writeOp(ctx, &writeOp{ctx: ctx, done: func(error) { s.rosters.forget(username); s.noRequests.forget(username) }, fn: func(tx *sql.Tx) error {
		// The foreign keys cascade, but deleting explicitly keeps the
		// guarantee even for rows written without foreign key enforcement.
		for _, table := range []string{
			"roster_items", "roster_versions", "subscription_requests",
			"offline_messages", "vcards", "private_xml",
		} {
			if _, err := tx.Exec("DELETE FROM "+table+" WHERE username = ?", username); err != nil {
				return fmt.Errorf("delete from %s: %w", table, err)
			}
		}
		res, err := tx.Exec("DELETE FROM accounts WHERE username = ?", username)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrNotFound
		}
		return nil
	}})
	if err != nil {
		return fmt.Errorf("sqlite: delete account %s: %w", username, err)
	}
	return nil
}

// ListAccounts returns all usernames in ascending order.
func (s *Store) ListAccounts(ctx context.Context) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: list accounts: %w", ErrClosed)
	}
	rows, err := s.r.QueryContext(ctx, "SELECT username FROM accounts ORDER BY username")
	if err != nil {
		return nil, fmt.Errorf("sqlite: list accounts: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("sqlite: list accounts: %w", err)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list accounts: %w", err)
	}
	return names, nil
}

// fromUnixNano converts a stored timestamp to a UTC time.
func fromUnixNano(ns int64) time.Time { return time.Unix(0, ns).UTC() }
