// Package storage defines the persistence interfaces of Wren, one small
// interface per concern. The embedded default implementation lives in
// storage/sqlite.
package storage

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every implementation. Callers test them with errors.Is.
var (
	// ErrNotFound means the requested record does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrExists means a record with the same key already exists.
	ErrExists = errors.New("storage: already exists")
	// ErrQuotaExceeded means a per-user limit (for example the offline
	// queue cap) would be crossed by the write; nothing was written.
	ErrQuotaExceeded = errors.New("storage: quota exceeded")
)

// ScramCredential is what is kept for one SCRAM hash function: enough to
// verify a client proof and to prove the server's identity, never enough to
// log in as the user (no plaintext password, no SaltedPassword).
type ScramCredential struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Account is a local user account. Username is the PRECIS-prepared
// localpart of the user's bare JID.
type Account struct {
	Username string
	Created  time.Time
	SHA1     ScramCredential
	SHA256   ScramCredential
}

// Accounts stores user accounts and their SCRAM credentials.
type Accounts interface {
	// CreateAccount stores a new account; ErrExists if the username is taken.
	CreateAccount(ctx context.Context, a Account) error
	// Account returns one account; ErrNotFound if there is none.
	Account(ctx context.Context, username string) (Account, error)
	// SetCredentials replaces the credentials of an account; ErrNotFound if
	// there is none.
	SetCredentials(ctx context.Context, username string, sha1, sha256 ScramCredential) error
	// DeleteAccount removes the account and every piece of data kept for it
	// (roster, pending subscriptions, offline messages, vCard, private XML).
	// ErrNotFound if there is none.
	DeleteAccount(ctx context.Context, username string) error
	// ListAccounts returns all usernames in ascending order.
	ListAccounts(ctx context.Context) ([]string, error)
}

// Subscription states of a roster item (RFC 6121 §2.1.2.5).
const (
	SubNone = "none"
	SubTo   = "to"
	SubFrom = "from"
	SubBoth = "both"
)

// RosterItem is one contact in a user's roster with its subscription state.
type RosterItem struct {
	// Contact is the contact's bare JID, normalised.
	Contact string
	// Name is the user-assigned handle, possibly empty.
	Name string
	// Subscription is one of SubNone, SubTo, SubFrom, SubBoth.
	Subscription string
	// AskOut is true while an outbound subscription request is pending
	// ("pending out", shown to clients as ask='subscribe').
	AskOut bool
	// PendingIn is true while an inbound subscription request from the
	// contact waits for the user's answer.
	PendingIn bool
	// Approved records a subscription pre-approval (RFC 6121 §3.4).
	Approved bool
	// Groups the user filed the contact under, in the order given.
	Groups []string
}

// Rosters stores rosters with XEP-0237 versioning. Every change of a user's
// roster increments that user's version; versions are never reused.
type Rosters interface {
	// Roster returns all items of the user's roster (contacts ordered by
	// JID) and the current version (0 for a user who never had a roster).
	Roster(ctx context.Context, user string) ([]RosterItem, int64, error)
	// RosterItem returns one item; ErrNotFound if the contact is not in the roster.
	RosterItem(ctx context.Context, user, contact string) (RosterItem, error)
	// PutRosterItem inserts or replaces an item and returns the new version.
	PutRosterItem(ctx context.Context, user string, item RosterItem) (int64, error)
	// DeleteRosterItem removes an item and returns the new version;
	// ErrNotFound if it was not there.
	DeleteRosterItem(ctx context.Context, user, contact string) (int64, error)
}

// SubscriptionRequest is an inbound presence subscription request kept for a
// user until it is answered (RFC 6121 §3.1.3), delivered again at each login.
type SubscriptionRequest struct {
	From   string // bare JID of the requester
	Stanza []byte // the <presence type='subscribe'/> as received, serialised
	Stored time.Time
}

// SubscriptionRequests stores pending inbound subscription requests.
type SubscriptionRequests interface {
	// PutSubscriptionRequest stores or replaces the request from a contact.
	PutSubscriptionRequest(ctx context.Context, user string, req SubscriptionRequest) error
	// DeleteSubscriptionRequest removes it; no error if there was none.
	DeleteSubscriptionRequest(ctx context.Context, user, from string) error
	// SubscriptionRequests lists the user's pending requests, oldest first.
	SubscriptionRequests(ctx context.Context, user string) ([]SubscriptionRequest, error)
}

// OfflineMessage is a message stored for a user who had no available resource.
type OfflineMessage struct {
	ID     int64
	Stanza []byte // serialised <message/> including its <delay/> stamp
	Stored time.Time
}

// Offline stores messages for users who are offline (XEP-0160).
type Offline interface {
	// StoreOffline appends a message to the user's queue. When the queue
	// already holds max messages (max > 0) it writes nothing and returns
	// ErrQuotaExceeded. The message is durable on disk when this returns nil.
	StoreOffline(ctx context.Context, user string, stanza []byte, max int) (int64, error)
	// OfflineMessages returns the user's queue, oldest first.
	OfflineMessages(ctx context.Context, user string) ([]OfflineMessage, error)
	// DeleteOffline removes the user's messages with ID <= upTo.
	DeleteOffline(ctx context.Context, user string, upTo int64) error
	// CountOffline returns the number of messages queued for the user.
	CountOffline(ctx context.Context, user string) (int, error)
}

// VCards stores vcard-temp (XEP-0054) documents.
type VCards interface {
	// VCard returns the serialised <vCard/> element; ErrNotFound if none.
	VCard(ctx context.Context, user string) ([]byte, error)
	// SetVCard stores or replaces it.
	SetVCard(ctx context.Context, user string, vcard []byte) error
}

// PrivateXML stores private XML (XEP-0049), one element per namespace.
type PrivateXML interface {
	// PrivateXML returns the stored element of that namespace; ErrNotFound if none.
	PrivateXML(ctx context.Context, user, namespace string) ([]byte, error)
	// SetPrivateXML stores or replaces it.
	SetPrivateXML(ctx context.Context, user, namespace string, xml []byte) error
}

// Archiving modes of a user's archive preferences (XEP-0441): which
// messages with a contact that is in neither the always nor the never list
// are archived.
const (
	ArchiveAlways = "always" // every message
	ArchiveNever  = "never"  // none
	ArchiveRoster = "roster" // messages with contacts in the user's roster
)

// ArchivedMessage is one message of a user's message archive (XEP-0313).
type ArchivedMessage struct {
	// ID is the archive id, also sent to clients as the XEP-0359
	// stanza-id: unique within the user's archive and never reused.
	ID string
	// Time is when the server archived the message. Within one archive it
	// increases in archive order.
	Time time.Time
	// With is the contact's bare JID (the user's own for messages to
	// themselves) and WithResource the contact's resource, or "".
	With         string
	WithResource string
	// Outgoing is true for a message the user sent, false for one received.
	Outgoing bool
	// Stanza is the serialised <message/>.
	Stanza []byte
}

// ArchiveQuery selects messages of one user's archive. Zero fields do not
// filter. Results are always in archive (chronological) order.
type ArchiveQuery struct {
	// With keeps only messages with that bare JID; WithResource (only with
	// With) narrows it to one resource of the contact.
	With         string
	WithResource string
	// Start and End keep messages archived at or after Start and at or
	// before End.
	Start, End time.Time
	// After keeps messages that come after every listed archive id; Before
	// those that come before every listed id. Each id must exist in the
	// archive, else the query fails with ErrNotFound.
	After, Before []string
	// IDs keeps only the messages with these archive ids. Each must exist
	// in the archive, else the query fails with ErrNotFound.
	IDs []string
	// Max is the largest number of messages returned (the page size); it
	// must be greater than 0.
	Max int
	// Last returns the last Max matching messages rather than the first
	// (a backwards page, XEP-0059 <before/>).
	Last bool
}

// ArchivePage is one page of an archive query.
type ArchivePage struct {
	// Messages are in archive order, oldest first (also for Last queries).
	Messages []ArchivedMessage
	// Complete reports that no further message matches in the direction
	// of the query: after the page, or before it for a Last query.
	Complete bool
}

// ArchivePrefs are a user's archiving preferences (XEP-0441).
type ArchivePrefs struct {
	// Default is ArchiveAlways, ArchiveNever or ArchiveRoster.
	Default string
	// Always and Never list JIDs (bare or full) whose messages are always
	// or never archived, whatever the default.
	Always, Never []string
}

// Archive stores users' message archives (XEP-0313) and archiving
// preferences. Every message kept for a user is removed with the account.
type Archive interface {
	// AppendArchive adds a message at the end of the user's archive and
	// returns the time it was stored under: m.Time (the current time when
	// zero), moved forward if needed so that time increases along the
	// archive (no two messages of a user share a time). ErrExists if the id is already used in that archive,
	// ErrNotFound if the user has no account. The message is durable when
	// AppendArchive returns nil.
	AppendArchive(ctx context.Context, user string, m ArchivedMessage) (time.Time, error)
	// QueueArchive adds a message like AppendArchive but returns as soon
	// as the write is queued, behind every write queued before it (it
	// blocks only while the store is too far behind). done, if not nil, is
	// called with AppendArchive's results once the message is on disk or
	// the write failed; it runs on the store's writer and must not block.
	// The error is for a write that could not be queued (store closed, ctx
	// done while waiting for room). Use AfterWrites to learn when queued
	// writes are durable.
	QueueArchive(ctx context.Context, user string, m ArchivedMessage, done func(time.Time, error)) error
	// ArchivedMessage returns one message by archive id; ErrNotFound if
	// there is none.
	ArchivedMessage(ctx context.Context, user, id string) (ArchivedMessage, error)
	// QueryArchive returns one page of the messages that match q, using
	// keyset pagination so that any page costs about the same whatever the
	// size of the archive.
	QueryArchive(ctx context.Context, user string, q ArchiveQuery) (ArchivePage, error)
	// CountArchive returns the number of messages that match q (ignoring
	// Max and Last). It reads every matching entry of an index: use it
	// only when a client asks for a count.
	CountArchive(ctx context.Context, user string, q ArchiveQuery) (int, error)
	// ArchiveBounds returns the first and the last message of the user's
	// archive (without their stanzas); ErrNotFound if it is empty.
	ArchiveBounds(ctx context.Context, user string) (first, last ArchivedMessage, err error)
	// TrimArchive removes up to limit of the oldest messages of the user's
	// archive that were stored before olderThan (zero: no age limit) or
	// that are not among the newest keep (0: no count limit), and returns
	// how many it removed. Callers repeat it until it removes fewer than
	// limit, so that no single write holds the database for long.
	TrimArchive(ctx context.Context, user string, olderThan time.Time, keep, limit int) (int, error)
	// ArchivePrefs returns the user's preferences; ErrNotFound if the user
	// never set any.
	ArchivePrefs(ctx context.Context, user string) (ArchivePrefs, error)
	// SetArchivePrefs stores or replaces the user's preferences;
	// ErrNotFound if the user has no account.
	SetArchivePrefs(ctx context.Context, user string, p ArchivePrefs) error
}

// Store is everything the server keeps on disk.
type Store interface {
	Accounts
	Rosters
	SubscriptionRequests
	Offline
	VCards
	PrivateXML
	Archive
	PushRegistrations
	PushGateway
	PEP
	Blocklists
	// AfterWrites calls fn once every write queued or started before the
	// call is on disk (or failed). fn runs on the store's writer and must
	// not block. ErrClosed-like errors mean fn will never be called.
	AfterWrites(fn func()) error
	// Close flushes pending writes and releases the database.
	Close() error
}
