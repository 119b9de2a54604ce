package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"wren.im/wren/storage"
)

// PutPushDevice implements storage.PushGateway.
func (s *Store) PutPushDevice(ctx context.Context, d storage.PushDevice, max int) (storage.PushDevice, error) {
	now := d.Updated
	if now.IsZero() {
		now = time.Now()
	}
	out := d
	err := s.write(ctx, func(tx *sql.Tx) error {
		var node, secret string
		var created int64
		err := tx.QueryRow(`SELECT node, secret, created FROM push_devices
			WHERE owner = ? AND provider = ? AND device_id = ? AND muc = ?`,
			d.Owner, d.Provider, d.DeviceID, d.MUC).Scan(&node, &secret, &created)
		switch {
		case err == nil:
			// Registered again: a new token, the same node and secret.
			if _, err := tx.Exec(`UPDATE push_devices SET token = ?, topic = ?, sandbox = ?, updated = ?
				WHERE owner = ? AND provider = ? AND device_id = ? AND muc = ?`,
				d.Token, d.Topic, d.Sandbox, now.UnixNano(), d.Owner, d.Provider, d.DeviceID, d.MUC); err != nil {
				return err
			}
			out.Node, out.Secret = node, secret
			out.Created, out.Updated = time.Unix(0, created).UTC(), now.UTC()
			return nil
		case !isNoRows(err):
			return err
		}
		if d.Node == "" || d.Secret == "" {
			return errors.New("a new device needs a node and a secret")
		}
		if max > 0 {
			var n int
			if err := tx.QueryRow("SELECT count(*) FROM push_devices WHERE owner = ?", d.Owner).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return storage.ErrQuotaExceeded
			}
		}
		createdAt := d.Created
		if createdAt.IsZero() {
			createdAt = now
		}
		_, err = tx.Exec(`INSERT INTO push_devices
			(owner, provider, device_id, muc, token, topic, sandbox, node, secret, created, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.Owner, d.Provider, d.DeviceID, d.MUC, d.Token, d.Topic, d.Sandbox, d.Node, d.Secret,
			createdAt.UnixNano(), now.UnixNano())
		if isUnique(err) {
			return fmt.Errorf("node %q: %w", d.Node, storage.ErrExists)
		}
		if err != nil {
			return err
		}
		out.Created, out.Updated = createdAt.UTC(), now.UTC()
		return nil
	})
	if err != nil {
		return storage.PushDevice{}, fmt.Errorf("sqlite: put push device %s/%s of %s: %w", d.Provider, d.DeviceID, d.Owner, err)
	}
	return out, nil
}

const pushDeviceColumns = `owner, provider, device_id, muc, token, topic, sandbox, node, secret, created, updated`

func scanPushDevice(sc interface{ Scan(...any) error }) (storage.PushDevice, error) {
	var d storage.PushDevice
	var created, updated int64
	err := sc.Scan(&d.Owner, &d.Provider, &d.DeviceID, &d.MUC, &d.Token, &d.Topic, &d.Sandbox,
		&d.Node, &d.Secret, &created, &updated)
	d.Created = time.Unix(0, created).UTC()
	d.Updated = time.Unix(0, updated).UTC()
	return d, err
}

// PushDevice implements storage.PushGateway.
func (s *Store) PushDevice(ctx context.Context, node string) (storage.PushDevice, error) {
	if s.isClosed() {
		return storage.PushDevice{}, fmt.Errorf("sqlite: push device %q: %w", node, ErrClosed)
	}
	d, err := scanPushDevice(s.r.QueryRowContext(ctx, "SELECT "+pushDeviceColumns+" FROM push_devices WHERE node = ?", node))
	if isNoRows(err) {
		return storage.PushDevice{}, fmt.Errorf("sqlite: push device %q: %w", node, storage.ErrNotFound)
	}
	if err != nil {
		return storage.PushDevice{}, fmt.Errorf("sqlite: push device %q: %w", node, err)
	}
	return d, nil
}

// PushDevices implements storage.PushGateway.
func (s *Store) PushDevices(ctx context.Context, owner string) ([]storage.PushDevice, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: push devices of %s: %w", owner, ErrClosed)
	}
	rows, err := s.r.QueryContext(ctx, "SELECT "+pushDeviceColumns+
		" FROM push_devices WHERE owner = ? ORDER BY created, rowid", owner)
	if err != nil {
		return nil, fmt.Errorf("sqlite: push devices of %s: %w", owner, err)
	}
	defer rows.Close()
	var out []storage.PushDevice
	for rows.Next() {
		d, err := scanPushDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: push devices of %s: %w", owner, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: push devices of %s: %w", owner, err)
	}
	return out, nil
}

// DeletePushDevice implements storage.PushGateway.
func (s *Store) DeletePushDevice(ctx context.Context, node, token string) (bool, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if token == "" {
			res, err = tx.Exec("DELETE FROM push_devices WHERE node = ?", node)
		} else {
			res, err = tx.Exec("DELETE FROM push_devices WHERE node = ? AND token = ?", node, token)
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sqlite: delete push device %q: %w", node, err)
	}
	return n > 0, nil
}

// AddPushDelivery implements storage.PushGateway.
func (s *Store) AddPushDelivery(ctx context.Context, d storage.PushDelivery) (int64, error) {
	t := d.Time
	if t.IsZero() {
		t = time.Now()
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO push_deliveries
			(ts, owner, device_id, provider, node, outcome, provider_id, reason, attempts, latency, important, coalesced)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.UnixNano(), d.Owner, d.DeviceID, d.Provider, d.Node, d.Outcome, d.ProviderID, d.Reason,
			d.Attempts, int64(d.Latency), d.Important, d.Coalesced)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: add push delivery for %s/%s of %s: %w", d.Provider, d.DeviceID, d.Owner, err)
	}
	return id, nil
}

// UpdatePushDelivery implements storage.PushGateway.
func (s *Store) UpdatePushDelivery(ctx context.Context, d storage.PushDelivery) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE push_deliveries SET outcome = ?, provider_id = ?, reason = ?,
				attempts = ?, latency = ?, important = ?, coalesced = ?
			WHERE id = ?`,
			d.Outcome, d.ProviderID, d.Reason, d.Attempts, int64(d.Latency), d.Important, d.Coalesced, d.ID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = storage.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: update push delivery %d: %w", d.ID, err)
	}
	return nil
}

// PushDeliveries implements storage.PushGateway.
func (s *Store) PushDeliveries(ctx context.Context, f storage.PushDeliveryFilter) ([]storage.PushDelivery, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: push deliveries: %w", ErrClosed)
	}
	var where []string
	var args []any
	if f.Owner != "" {
		where = append(where, "owner = ?")
		args = append(args, f.Owner)
	}
	if f.DeviceID != "" {
		where = append(where, "device_id = ?")
		args = append(args, f.DeviceID)
	}
	if !f.Since.IsZero() {
		where = append(where, "ts >= ?")
		args = append(args, f.Since.UnixNano())
	}
	q := `SELECT id, ts, owner, device_id, provider, node, outcome, provider_id, reason,
		attempts, latency, important, coalesced FROM push_deliveries`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY ts DESC, id DESC"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: push deliveries: %w", err)
	}
	defer rows.Close()
	var out []storage.PushDelivery
	for rows.Next() {
		var d storage.PushDelivery
		var ts, latency int64
		if err := rows.Scan(&d.ID, &ts, &d.Owner, &d.DeviceID, &d.Provider, &d.Node, &d.Outcome,
			&d.ProviderID, &d.Reason, &d.Attempts, &latency, &d.Important, &d.Coalesced); err != nil {
			return nil, fmt.Errorf("sqlite: push deliveries: %w", err)
		}
		d.Time = time.Unix(0, ts).UTC()
		d.Latency = time.Duration(latency)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: push deliveries: %w", err)
	}
	return out, nil
}

// TrimPushDeliveries implements storage.PushGateway.
func (s *Store) TrimPushDeliveries(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM push_deliveries WHERE id IN (
				SELECT id FROM push_deliveries WHERE ts < ? ORDER BY ts, id LIMIT ?)`,
			olderThan.UnixNano(), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim push deliveries: %w", err)
	}
	return int(n), nil
}
