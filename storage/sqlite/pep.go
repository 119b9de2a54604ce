package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"wren.im/wren/storage"
)

// PEPNodes implements storage.PEP.
func (s *Store) PEPNodes(ctx context.Context, user string) ([]storage.PEPNode, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: pep nodes of %s: %w", user, ErrClosed)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT node, config, created FROM pep_nodes
		WHERE username = ? ORDER BY node`, user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pep nodes of %s: %w", user, err)
	}
	defer rows.Close()
	var out []storage.PEPNode
	for rows.Next() {
		var n storage.PEPNode
		var created int64
		if err := rows.Scan(&n.Name, &n.Config, &created); err != nil {
			return nil, fmt.Errorf("sqlite: pep nodes of %s: %w", user, err)
		}
		n.Created = time.Unix(0, created).UTC()
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: pep nodes of %s: %w", user, err)
	}
	return out, nil
}

// PEPNode implements storage.PEP.
func (s *Store) PEPNode(ctx context.Context, user, node string) (storage.PEPNode, error) {
	if s.isClosed() {
		return storage.PEPNode{}, fmt.Errorf("sqlite: pep node %q of %s: %w", node, user, ErrClosed)
	}
	n := storage.PEPNode{Name: node}
	var created int64
	err := s.r.QueryRowContext(ctx, "SELECT config, created FROM pep_nodes WHERE username = ? AND node = ?",
		user, node).Scan(&n.Config, &created)
	if isNoRows(err) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return storage.PEPNode{}, fmt.Errorf("sqlite: pep node %q of %s: %w", node, user, err)
	}
	n.Created = time.Unix(0, created).UTC()
	return n, nil
}

// CreatePEPNode implements storage.PEP.
func (s *Store) CreatePEPNode(ctx context.Context, user string, n storage.PEPNode, maxNodes int) error {
	created := n.Created
	if created.IsZero() {
		created = time.Now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var exists int
		err := tx.QueryRow("SELECT 1 FROM pep_nodes WHERE username = ? AND node = ?", user, n.Name).Scan(&exists)
		if err == nil {
			return storage.ErrExists
		}
		if !isNoRows(err) {
			return err
		}
		if maxNodes > 0 {
			var count int
			if err := tx.QueryRow("SELECT count(*) FROM pep_nodes WHERE username = ?", user).Scan(&count); err != nil {
				return err
			}
			if count >= maxNodes {
				return storage.ErrQuotaExceeded
			}
		}
		_, err = tx.Exec("INSERT INTO pep_nodes (username, node, config, created) VALUES (?, ?, ?, ?)",
			user, n.Name, blob(n.Config), created.UnixNano())
		if isForeignKey(err) {
			return noAccount(user)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: create pep node %q of %s: %w", n.Name, user, err)
	}
	return nil
}

// trimPEPItems keeps the newest keep items of a node (keep <= 0: all).
func trimPEPItems(tx *sql.Tx, user, node string, keep int) error {
	if keep <= 0 {
		return nil
	}
	_, err := tx.Exec(`DELETE FROM pep_items WHERE username = ? AND node = ? AND seq <= (
			SELECT seq FROM pep_items WHERE username = ? AND node = ?
			ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
		user, node, user, node, keep)
	return err
}

// nodeExists returns storage.ErrNotFound unless the node exists.
func nodeExists(tx *sql.Tx, user, node string) error {
	var one int
	err := tx.QueryRow("SELECT 1 FROM pep_nodes WHERE username = ? AND node = ?", user, node).Scan(&one)
	if isNoRows(err) {
		return storage.ErrNotFound
	}
	return err
}

// SetPEPNodeConfig implements storage.PEP.
func (s *Store) SetPEPNodeConfig(ctx context.Context, user, node string, config []byte, keep int) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec("UPDATE pep_nodes SET config = ? WHERE username = ? AND node = ?", blob(config), user, node)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrNotFound
		}
		return trimPEPItems(tx, user, node, keep)
	})
	if err != nil {
		return fmt.Errorf("sqlite: configure pep node %q of %s: %w", node, user, err)
	}
	return nil
}

// DeletePEPNode implements storage.PEP.
func (s *Store) DeletePEPNode(ctx context.Context, user, node string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec("DELETE FROM pep_nodes WHERE username = ? AND node = ?", user, node)
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
		return fmt.Errorf("sqlite: delete pep node %q of %s: %w", node, user, err)
	}
	return nil
}

// PutPEPItem implements storage.PEP.
func (s *Store) PutPEPItem(ctx context.Context, user, node string, it storage.PEPItem, keep int) error {
	published := it.Published
	if published.IsZero() {
		published = time.Now()
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := nodeExists(tx, user, node); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO pep_items (username, node, item_id, seq, publisher, published, payload)
			VALUES (?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM pep_items WHERE username = ? AND node = ?), ?, ?, ?)
			ON CONFLICT (username, node, item_id) DO UPDATE SET
				seq = excluded.seq, publisher = excluded.publisher,
				published = excluded.published, payload = excluded.payload`,
			user, node, it.ID, user, node, it.Publisher, published.UnixNano(), blob(it.Payload))
		if err != nil {
			return err
		}
		return trimPEPItems(tx, user, node, keep)
	})
	if err != nil {
		return fmt.Errorf("sqlite: publish item %q to pep node %q of %s: %w", it.ID, node, user, err)
	}
	return nil
}

// DeletePEPItems implements storage.PEP.
func (s *Store) DeletePEPItems(ctx context.Context, user, node string, ids []string) ([]string, error) {
	var deleted []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		deleted = deleted[:0]
		for _, id := range ids {
			res, err := tx.Exec("DELETE FROM pep_items WHERE username = ? AND node = ? AND item_id = ?", user, node, id)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n > 0 {
				deleted = append(deleted, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: retract items from pep node %q of %s: %w", node, user, err)
	}
	return deleted, nil
}

// PurgePEPNode implements storage.PEP.
func (s *Store) PurgePEPNode(ctx context.Context, user, node string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := nodeExists(tx, user, node); err != nil {
			return err
		}
		_, err := tx.Exec("DELETE FROM pep_items WHERE username = ? AND node = ?", user, node)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: purge pep node %q of %s: %w", node, user, err)
	}
	return nil
}

// maxIDsPerQuery bounds the ids bound into one IN list (SQLite allows
// 32766 variables per statement).
const maxIDsPerQuery = 500

// PEPItems implements storage.PEP.
func (s *Store) PEPItems(ctx context.Context, user, node string, ids []string, max int) ([]storage.PEPItem, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: items of pep node %q of %s: %w", node, user, ErrClosed)
	}
	var rows []pepItemRow
	if len(ids) == 0 {
		limit := max
		if limit <= 0 {
			limit = -1 // no limit
		}
		found, err := s.queryPEPItems(ctx, `SELECT item_id, publisher, published, payload, seq FROM pep_items
			WHERE username = ? AND node = ? ORDER BY seq DESC LIMIT ?`, user, node, limit)
		if err != nil {
			return nil, fmt.Errorf("sqlite: items of pep node %q of %s: %w", node, user, err)
		}
		rows = found
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxIDsPerQuery)]
		ids = ids[len(chunk):]
		args := []any{user, node}
		for _, id := range chunk {
			args = append(args, id)
		}
		q := `SELECT item_id, publisher, published, payload, seq FROM pep_items
			WHERE username = ? AND node = ? AND item_id IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`
		found, err := s.queryPEPItems(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: items of pep node %q of %s: %w", node, user, err)
		}
		rows = append(rows, found...)
	}
	slices.SortFunc(rows, func(a, b pepItemRow) int { return cmp.Compare(b.seq, a.seq) })
	out := make([]storage.PEPItem, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.PEPItem)
	}
	return out, nil
}

// pepItemRow is an item with its position in the node.
type pepItemRow struct {
	storage.PEPItem
	seq int64
}

// queryPEPItems runs a query selecting item_id, publisher, published,
// payload and seq.
func (s *Store) queryPEPItems(ctx context.Context, q string, args ...any) ([]pepItemRow, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var found []pepItemRow
	for rows.Next() {
		var r pepItemRow
		var published int64
		if err := rows.Scan(&r.ID, &r.Publisher, &published, &r.Payload, &r.seq); err != nil {
			return nil, err
		}
		r.Published = time.Unix(0, published).UTC()
		found = append(found, r)
	}
	return found, rows.Err()
}

// LastPEPItems implements storage.PEP.
func (s *Store) LastPEPItems(ctx context.Context, user string) (map[string]storage.PEPItem, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: last pep items of %s: %w", user, ErrClosed)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT i.node, i.item_id, i.publisher, i.published, i.payload
		FROM pep_items i
		JOIN (SELECT node, max(seq) AS seq FROM pep_items WHERE username = ? GROUP BY node) last
			ON i.node = last.node AND i.seq = last.seq
		WHERE i.username = ?`, user, user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: last pep items of %s: %w", user, err)
	}
	defer rows.Close()
	out := map[string]storage.PEPItem{}
	for rows.Next() {
		var node string
		var it storage.PEPItem
		var published int64
		if err := rows.Scan(&node, &it.ID, &it.Publisher, &published, &it.Payload); err != nil {
			return nil, fmt.Errorf("sqlite: last pep items of %s: %w", user, err)
		}
		it.Published = time.Unix(0, published).UTC()
		out[node] = it
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: last pep items of %s: %w", user, err)
	}
	return out, nil
}
