package sqlite

// schemaPushGateway is the schema of the push gateway: the devices that
// registered with it and one delivery record per push. Neither table
// references accounts: device owners may be users of other servers.
const schemaPushGateway = `
CREATE TABLE push_devices (
	owner     TEXT NOT NULL, -- bare JID of the registering account
	provider  TEXT NOT NULL CHECK (provider IN ('apns', 'fcm')),
	device_id TEXT NOT NULL,
	muc       TEXT NOT NULL, -- group chat bare JID, or '' for the account
	token     TEXT NOT NULL,
	topic     TEXT NOT NULL,
	sandbox   INTEGER NOT NULL CHECK (sandbox IN (0, 1)),
	node      TEXT NOT NULL UNIQUE,
	secret    TEXT NOT NULL,
	created   INTEGER NOT NULL, -- unix nanoseconds, UTC
	updated   INTEGER NOT NULL, -- unix nanoseconds, UTC
	PRIMARY KEY (owner, provider, device_id, muc)
) STRICT;

CREATE TABLE push_deliveries (
	id          INTEGER PRIMARY KEY,
	ts          INTEGER NOT NULL, -- unix nanoseconds, UTC: first queued
	owner       TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	provider    TEXT NOT NULL,
	node        TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	provider_id TEXT NOT NULL,
	reason      TEXT NOT NULL,
	attempts    INTEGER NOT NULL,
	latency     INTEGER NOT NULL, -- nanoseconds
	important   INTEGER NOT NULL CHECK (important IN (0, 1)),
	coalesced   INTEGER NOT NULL
) STRICT;

CREATE INDEX push_deliveries_ts ON push_deliveries (ts, id);
CREATE INDEX push_deliveries_owner ON push_deliveries (owner, ts, id);
`
