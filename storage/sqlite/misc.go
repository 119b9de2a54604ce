package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"wren.im/wren/storage"
)

// PutSubscriptionRequest stores or replaces the pending subscription request
// from req.From. A zero req.Stored is replaced by the current time.
// storage.ErrNotFound if the user has no account.
func (s *Store) PutSubscriptionRequest(ctx context.Context, user string, req storage.SubscriptionRequest) error {
	stored := req.Stored
	if stored.IsZero() {
		stored = time.Now()
	}
	err := s.writeOp(ctx, &writeOp{ctx: ctx, done: s.noRequests.forgetter(user), fn: func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO subscription_requests (username, from_jid, stanza, stored)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (username, from_jid) DO UPDATE SET
				stanza = excluded.stanza, stored = excluded.stored`,
			user, req.From, blob(req.Stanza), stored.UnixNano())
		if isForeignKey(err) {
			return noAccount(user)
		}
		return err
	}})
	if err != nil {
		return fmt.Errorf("sqlite: put subscription request from %s to %s: %w", req.From, user, err)
	}
	return nil
}

// DeleteSubscriptionRequest removes the pending request from a contact; it
// is not an error if there was none.
func (s *Store) DeleteSubscriptionRequest(ctx context.Context, user, from string) error {
	err := s.writeOp(ctx, &writeOp{ctx: ctx, done: s.noRequests.forgetter(user), fn: func(tx *sql.Tx) error {
		_, err := tx.Exec("DELETE FROM subscription_requests WHERE username = ? AND from_jid = ?", user, from)
		return err
	}})
	if err != nil {
		return fmt.Errorf("sqlite: delete subscription request from %s to %s: %w", from, user, err)
	}
	return nil
}

// SubscriptionRequests lists the user's pending requests, oldest first.
func (s *Store) SubscriptionRequests(ctx context.Context, user string) ([]storage.SubscriptionRequest, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: subscription requests of %s: %w", user, ErrClosed)
	}
	if _, none := s.noRequests.get(user); none {
		return nil, nil
	}
	gen := s.noRequests.generation()
	rows, err := s.r.QueryContext(ctx, `SELECT from_jid, stanza, stored FROM subscription_requests
		WHERE username = ? ORDER BY stored, rowid`, user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: subscription requests of %s: %w", user, err)
	}
	defer rows.Close()
	var reqs []storage.SubscriptionRequest
	for rows.Next() {
		var (
			r      storage.SubscriptionRequest
			stored int64
		)
		if err := rows.Scan(&r.From, &r.Stanza, &stored); err != nil {
			return nil, fmt.Errorf("sqlite: subscription requests of %s: %w", user, err)
		}
		r.Stored = fromUnixNano(stored)
		reqs = append(reqs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: subscription requests of %s: %w", user, err)
	}
	if len(reqs) == 0 {
		s.noRequests.put(user, struct{}{}, gen)
	}
	return reqs, nil
}

// VCard returns the user's serialised <vCard/>; storage.ErrNotFound if none.
func (s *Store) VCard(ctx context.Context, user string) ([]byte, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: vcard of %s: %w", user, ErrClosed)
	}
	var xml []byte
	err := s.r.QueryRowContext(ctx, "SELECT xml FROM vcards WHERE username = ?", user).Scan(&xml)
	if isNoRows(err) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: vcard of %s: %w", user, err)
	}
	return xml, nil
}

// SetVCard stores or replaces the user's vCard. storage.ErrNotFound if the
// user has no account.
func (s *Store) SetVCard(ctx context.Context, user string, vcard []byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO vcards (username, xml) VALUES (?, ?)
			ON CONFLICT (username) DO UPDATE SET xml = excluded.xml`, user, blob(vcard))
		if isForeignKey(err) {
			return noAccount(user)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: set vcard of %s: %w", user, err)
	}
	return nil
}

// PrivateXML returns the user's stored element of that namespace;
// storage.ErrNotFound if none.
func (s *Store) PrivateXML(ctx context.Context, user, namespace string) ([]byte, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: private xml %s of %s: %w", namespace, user, ErrClosed)
	}
	var xml []byte
	err := s.r.QueryRowContext(ctx, "SELECT xml FROM private_xml WHERE username = ? AND namespace = ?",
		user, namespace).Scan(&xml)
	if isNoRows(err) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: private xml %s of %s: %w", namespace, user, err)
	}
	return xml, nil
}

// SetPrivateXML stores or replaces the user's element of that namespace.
// storage.ErrNotFound if the user has no account.
func (s *Store) SetPrivateXML(ctx context.Context, user, namespace string, xml []byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO private_xml (username, namespace, xml) VALUES (?, ?, ?)
			ON CONFLICT (username, namespace) DO UPDATE SET xml = excluded.xml`, user, namespace, blob(xml))
		if isForeignKey(err) {
			return noAccount(user)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: set private xml %s of %s: %w", namespace, user, err)
	}
	return nil
}
