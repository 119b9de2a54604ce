package sqlite

// schemaPEP is the schema of personal eventing (XEP-0163): each account's
// nodes with their configuration, and the items published to them. seq
// orders the items of a node by publication, newest highest.
const schemaPEP = `
CREATE TABLE pep_nodes (
	username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
	node     TEXT NOT NULL,
	config   BLOB NOT NULL, -- serialised by the PEP service
	created  INTEGER NOT NULL, -- unix nanoseconds, UTC
	PRIMARY KEY (username, node)
) STRICT;

CREATE TABLE pep_items (
	username  TEXT NOT NULL,
	node      TEXT NOT NULL,
	item_id   TEXT NOT NULL,
	seq       INTEGER NOT NULL,
	publisher TEXT NOT NULL,
	published INTEGER NOT NULL, -- unix nanoseconds, UTC
	payload   BLOB NOT NULL,
	PRIMARY KEY (username, node, item_id),
	FOREIGN KEY (username, node) REFERENCES pep_nodes (username, node) ON DELETE CASCADE
) STRICT;
CREATE INDEX pep_items_seq ON pep_items (username, node, seq);
`
