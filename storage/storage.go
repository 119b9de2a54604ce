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

// Store is everything the server keeps on disk.
type Store interface {
	Accounts
	Rosters
	SubscriptionRequests
	Offline
	VCards
	PrivateXML
	// Close flushes pending writes and releases the database.
	Close() error
}
