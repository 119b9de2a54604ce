package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"wren.im/wren/storage"
)

// Roster returns all items of the user's roster ordered by contact JID and
// the current roster version (0 for a user who never had a roster). Items
// and version are read from one consistent snapshot.
func (s *Store) Roster(ctx context.Context, user string) (items []storage.RosterItem, version int64, err error) {
	if c, ok := s.rosters.get(user); ok {
		return cloneRoster(c.items), c.version, nil
	}
	gen := s.rosters.generation()
	defer func() {
		if err == nil {
			s.rosters.put(user, cachedRoster{cloneRoster(items), version}, gen)
		}
	}()
	defer func() {
		if err != nil {
			items, version, err = nil, 0, fmt.Errorf("sqlite: roster of %s: %w", user, err)
		}
	}()
	if s.isClosed() {
		return nil, 0, ErrClosed
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to undo

	err = tx.QueryRowContext(ctx, "SELECT version FROM roster_versions WHERE username = ?", user).Scan(&version)
	if err != nil && !isNoRows(err) {
		return nil, 0, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT contact, name, subscription, ask_out, pending_in, approved, groups
		FROM roster_items WHERE username = ? ORDER BY contact`, user)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		it, err := scanRosterItem(rows)
		if err != nil {
			return nil, 0, err
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return items, version, nil
}

// RosterItem returns one item; storage.ErrNotFound if the contact is not in
// the user's roster.
func (s *Store) RosterItem(ctx context.Context, user, contact string) (storage.RosterItem, error) {
	if s.isClosed() {
		return storage.RosterItem{}, fmt.Errorf("sqlite: roster item %s of %s: %w", contact, user, ErrClosed)
	}
	if c, ok := s.rosters.get(user); ok {
		i, found := slices.BinarySearchFunc(c.items, contact, func(it storage.RosterItem, c string) int { return strings.Compare(it.Contact, c) })
		if !found {
			return storage.RosterItem{}, fmt.Errorf("sqlite: roster item %s of %s: %w", contact, user, storage.ErrNotFound)
		}
		return cloneRoster(c.items[i : i+1])[0], nil
	}
	row := s.r.QueryRowContext(ctx, `SELECT contact, name, subscription, ask_out, pending_in, approved, groups
		FROM roster_items WHERE username = ? AND contact = ?`, user, contact)
	it, err := scanRosterItem(row)
	if isNoRows(err) {
		err = storage.ErrNotFound
	}
	if err != nil {
		return storage.RosterItem{}, fmt.Errorf("sqlite: roster item %s of %s: %w", contact, user, err)
	}
	return it, nil
}

// PutRosterItem inserts or replaces an item and returns the user's new
// roster version. storage.ErrNotFound if the user has no account.
func (s *Store) PutRosterItem(ctx context.Context, user string, item storage.RosterItem) (int64, error) {
	groups := item.Groups
	if groups == nil {
		groups = []string{}
	}
	groupsJSON, err := json.Marshal(groups)
	if err != nil {
		return 0, fmt.Errorf("sqlite: put roster item %s of %s: encode groups: %w", item.Contact, user, err)
	}
	var version int64
	err = s.writeOp(ctx, &writeOp{ctx: ctx, done: s.rosters.forgetter(user), fn: func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO roster_items
				(username, contact, name, subscription, ask_out, pending_in, approved, groups)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (username, contact) DO UPDATE SET
				name = excluded.name, subscription = excluded.subscription,
				ask_out = excluded.ask_out, pending_in = excluded.pending_in,
				approved = excluded.approved, groups = excluded.groups`,
			user, item.Contact, item.Name, item.Subscription,
			item.AskOut, item.PendingIn, item.Approved, string(groupsJSON))
		if isForeignKey(err) {
			return noAccount(user)
		}
		if err != nil {
			return err
		}
		version, err = bumpRosterVersion(tx, user)
		return err
	}})
	if err != nil {
		return 0, fmt.Errorf("sqlite: put roster item %s of %s: %w", item.Contact, user, err)
	}
	return version, nil
}

// DeleteRosterItem removes an item and returns the user's new roster
// version; storage.ErrNotFound if it was not there.
func (s *Store) DeleteRosterItem(ctx context.Context, user, contact string) (int64, error) {
	var version int64
	err := s.writeOp(ctx, &writeOp{ctx: ctx, done: s.rosters.forgetter(user), fn: func(tx *sql.Tx) error {
		res, err := tx.Exec("DELETE FROM roster_items WHERE username = ? AND contact = ?", user, contact)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrNotFound
		}
		version, err = bumpRosterVersion(tx, user)
		return err
	}})
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete roster item %s of %s: %w", contact, user, err)
	}
	return version, nil
}

// bumpRosterVersion increments the user's roster version and returns it.
// The counter lives in its own table so that it keeps growing when items
// are deleted; it goes away only with the account.
func bumpRosterVersion(tx *sql.Tx, user string) (int64, error) {
	var v int64
	err := tx.QueryRow(`INSERT INTO roster_versions (username, version) VALUES (?, 1)
		ON CONFLICT (username) DO UPDATE SET version = version + 1
		RETURNING version`, user).Scan(&v)
	if isForeignKey(err) {
		return 0, noAccount(user)
	}
	if err != nil {
		return 0, fmt.Errorf("bump roster version: %w", err)
	}
	return v, nil
}

// scanRosterItem reads the columns contact, name, subscription, ask_out,
// pending_in, approved, groups.
func scanRosterItem(row interface{ Scan(...any) error }) (storage.RosterItem, error) {
	var (
		it     storage.RosterItem
		groups string
	)
	if err := row.Scan(&it.Contact, &it.Name, &it.Subscription, &it.AskOut, &it.PendingIn, &it.Approved, &groups); err != nil {
		return storage.RosterItem{}, err
	}
	if err := json.Unmarshal([]byte(groups), &it.Groups); err != nil {
		return storage.RosterItem{}, fmt.Errorf("decode groups of %s: %w", it.Contact, err)
	}
	if len(it.Groups) == 0 {
		it.Groups = nil
	}
	return it, nil
}

// cacheMax bounds the number of users a userCache keeps; it starts over
// when full.
const cacheMax = 50_000

// userCache keeps per-user data read often and changed only by this store:
// rosters (every login reads the roster several times: roster get,
// presence broadcast, PEP, blocking) and the absence of pending
// subscription requests. A write drops the user's entry once committed
// (forgetter as the op's done); gen counts those drops, so that a read
// racing with a write does not cache what it read before the write.
type userCache[V any] struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]V
}

func (c *userCache[V]) get(user string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[user]
	return v, ok
}

func (c *userCache[V]) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches v unless a write dropped entries since gen was read.
func (c *userCache[V]) put(user string, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil || len(c.m) >= cacheMax {
		c.m = make(map[string]V)
	}
	c.m[user] = v
}

func (c *userCache[V]) forget(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, user)
}

// forgetter returns a writeOp done function that drops user's entry.
func (c *userCache[V]) forgetter(user string) func(error) {
	return func(error) { c.forget(user) }
}

type cachedRoster struct {
	items   []storage.RosterItem
	version int64
}

// cloneRoster copies items, groups included, so that callers may change
// what they get without touching the cache.
func cloneRoster(items []storage.RosterItem) []storage.RosterItem {
	if items == nil {
		return nil
	}
	out := make([]storage.RosterItem, len(items))
	for i, it := range items {
		it.Groups = slices.Clone(it.Groups)
		out[i] = it
	}
	return out
}
