package storage

import "context"

// Blocklists stores accounts' blocklists (XEP-0191): the JIDs each user
// blocked, as normalised strings (a full JID, a bare JID, domain/resource
// or a domain). A blocklist is removed with the account.
type Blocklists interface {
	// Blocklist returns the JIDs the user blocked, in the order they were
	// blocked; none (and no error) for a user who blocked nothing or has
	// no account.
	Blocklist(ctx context.Context, user string) ([]string, error)
	// BlockJIDs adds jids to the user's blocklist; JIDs already in it keep
	// their place. ErrQuotaExceeded, with nothing written, when the list
	// would then hold more than max entries (max <= 0: no limit);
	// ErrNotFound if the user has no account.
	BlockJIDs(ctx context.Context, user string, jids []string, max int) error
	// UnblockJIDs removes jids from the user's blocklist, ignoring those
	// not in it, and returns how many it removed.
	UnblockJIDs(ctx context.Context, user string, jids []string) (int, error)
	// UnblockAll empties the user's blocklist and returns how many entries
	// it removed.
	UnblockAll(ctx context.Context, user string) (int, error)
}
