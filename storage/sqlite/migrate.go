package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
)

// migration is one step of the schema history. The schema version of a
// database, kept in PRAGMA user_version, is the number of migrations applied
// to it: migrations[i] takes a database from version i to i+1.
type migration struct {
	name string
	up   func(ctx context.Context, tx *sql.Tx) error
}

// execSQL returns a migration step that executes a fixed script.
func execSQL(script string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, script)
		return err
	}
}

// schemaMigrations returns the schema history, oldest first. Append new
// steps; never edit or reorder released ones.
func schemaMigrations() []migration {
	return []migration{
		{name: "initial schema", up: execSQL(schemaV1)},
		{name: "message archive", up: execSQL(schemaArchive)},
		{name: "push registrations", up: execSQL(schemaPushRegistrations)},
		{name: "push gateway", up: execSQL(schemaPushGateway)},
		{name: "personal eventing", up: execSQL(schemaPEP)},
		{name: "blocking", up: execSQL(schemaBlocking)},
	}
}

// schemaV1 is the initial schema. Every per-user table references accounts
// so that nothing can be stored for a user without an account (a write
// racing with DeleteAccount cannot leave orphans that a re-created account
// would inherit) and deleting an account cascades to all its data.
const schemaV1 = `
CREATE TABLE accounts (
	username      TEXT PRIMARY KEY NOT NULL,
	created       INTEGER NOT NULL, -- unix nanoseconds, UTC
	sha1_salt     BLOB NOT NULL,
	sha1_iter     INTEGER NOT NULL,
	sha1_stored   BLOB NOT NULL,
	sha1_server   BLOB NOT NULL,
	sha256_salt   BLOB NOT NULL,
	sha256_iter   INTEGER NOT NULL,
	sha256_stored BLOB NOT NULL,
	sha256_server BLOB NOT NULL
) STRICT;

CREATE TABLE roster_items (
	username     TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	contact      TEXT NOT NULL,
	name         TEXT NOT NULL,
	subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
	ask_out      INTEGER NOT NULL CHECK (ask_out IN (0, 1)),
	pending_in   INTEGER NOT NULL CHECK (pending_in IN (0, 1)),
	approved     INTEGER NOT NULL CHECK (approved IN (0, 1)),
	groups       TEXT NOT NULL, -- JSON array of strings, in the order given
	PRIMARY KEY (username, contact)
) STRICT;

CREATE TABLE roster_versions (
	username TEXT PRIMARY KEY NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	version  INTEGER NOT NULL
) STRICT;

CREATE TABLE subscription_requests (
	username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	from_jid TEXT NOT NULL,
	stanza   BLOB NOT NULL,
	stored   INTEGER NOT NULL, -- unix nanoseconds, UTC
	PRIMARY KEY (username, from_jid)
) STRICT;

CREATE TABLE offline_messages (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	stanza   BLOB NOT NULL,
	stored   INTEGER NOT NULL -- unix nanoseconds, UTC
) STRICT;
CREATE INDEX offline_messages_username_id ON offline_messages (username, id);

CREATE TABLE vcards (
	username TEXT PRIMARY KEY NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	xml      BLOB NOT NULL
) STRICT;

CREATE TABLE private_xml (
	username  TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	namespace TEXT NOT NULL,
	xml       BLOB NOT NULL,
	PRIMARY KEY (username, namespace)
) STRICT;
`

// schemaVersion returns the schema version recorded in the database.
func schemaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// migrate brings the database up to date with list, applying each missing
// migration in its own transaction, and returns how many it applied. It
// refuses a database whose version is newer than len(list). Running it on
// an up-to-date database changes nothing.
func migrate(ctx context.Context, db *sql.DB, list []migration, logger *slog.Logger) (int, error) {
	applied := 0
	for {
		done, err := migrateOne(ctx, db, list, logger)
		if err != nil {
			return applied, err
		}
		if done {
			return applied, nil
		}
		applied++
	}
}

// migrateOne applies the next migration, if any, in its own transaction.
// The version is read again inside the (immediate, hence exclusive for
// writers) transaction so that two processes opening the same file cannot
// apply a step twice. done reports that there was nothing left to apply.
func migrateOne(ctx context.Context, db *sql.DB, list []migration, logger *slog.Logger) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil || done {
			_ = tx.Rollback()
		}
	}()
	v, err := schemaVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	switch {
	case v > len(list):
		return false, fmt.Errorf("database schema version %d is newer than this wren (%d); upgrade wren", v, len(list))
	case v == len(list):
		return true, nil
	}
	m := list[v]
	if err := m.up(ctx, tx); err != nil {
		return false, fmt.Errorf("migration %d (%s): %w", v+1, m.name, err)
	}
	// PRAGMA does not take bound parameters; v+1 is an int we computed.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return false, fmt.Errorf("migration %d (%s): set schema version: %w", v+1, m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %d (%s): commit: %w", v+1, m.name, err)
	}
	logger.Info("applied database migration", "version", v+1, "name", m.name)
	return false, nil
}
