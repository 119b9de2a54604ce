package sqlite

// schemaBlocking is the schema of the blocklists (XEP-0191): one row per
// blocked JID, in the order the user blocked them (rowid).
const schemaBlocking = `
CREATE TABLE blocklist_items (
	username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	jid      TEXT NOT NULL,
	created  INTEGER NOT NULL, -- unix nanoseconds, UTC
	PRIMARY KEY (username, jid)
) STRICT;
`
