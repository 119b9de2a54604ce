package sqlite

// schemaArchive adds the message archive (XEP-0313) and the archiving
// preferences (XEP-0441).
//
// Messages are ordered by (ts, id): ts is the archiving time in unix
// nanoseconds, kept non-decreasing per user by AppendArchive, and id (the
// rowid) breaks ties. Every page query is a range scan of one of the two
// ordered indexes, bounded by a (ts, id) key on each side (keyset
// pagination), so its cost does not grow with the size of the archive:
//
//   - archive_user_ts for queries over the whole archive;
//   - archive_user_with_ts for queries filtered by contact;
//   - archive_user_sid to find an archive id (stanza-id) and the key of a
//     page boundary.
//
// Like every per-user table, archive references accounts so that deleting
// an account deletes its archive.
const schemaArchive = `
CREATE TABLE archive (
	id        INTEGER PRIMARY KEY,
	username  TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	stanza_id TEXT NOT NULL,    -- the archive id sent to clients (XEP-0359)
	ts        INTEGER NOT NULL, -- unix nanoseconds, UTC, non-decreasing per user
	with_jid  TEXT NOT NULL,    -- the contact's bare JID
	with_res  TEXT NOT NULL,    -- the contact's resource, or ''
	outgoing  INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
	stanza    BLOB NOT NULL
) STRICT;
CREATE UNIQUE INDEX archive_user_sid ON archive (username, stanza_id);
CREATE INDEX archive_user_ts ON archive (username, ts, id);
CREATE INDEX archive_user_with_ts ON archive (username, with_jid, ts, id);

CREATE TABLE archive_prefs (
	username     TEXT PRIMARY KEY NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	default_mode TEXT NOT NULL CHECK (default_mode IN ('always', 'never', 'roster')),
	always_jids  TEXT NOT NULL, -- JSON array of JIDs
	never_jids   TEXT NOT NULL  -- JSON array of JIDs
) STRICT;
`
