package storage

import (
	"context"
	"time"
)

// PEPNode is one node of an account's personal eventing service
// (XEP-0163).
type PEPNode struct {
	// Name is the node id, such as "urn:xmpp:avatar:data".
	Name string
	// Config is the node configuration, serialised by the PEP service
	// (storage keeps it as it is).
	Config []byte
	// Created is when the node was created.
	Created time.Time
}

// PEPItem is one item published to a PEP node.
type PEPItem struct {
	// ID is the item id, unique within the node.
	ID string
	// Publisher is the full JID of the session that published the item.
	Publisher string
	// Published is when the item was (last) published.
	Published time.Time
	// Payload is the serialised payload element.
	Payload []byte
}

// PEP stores the personal eventing (XEP-0163) nodes and items of
// accounts. Items are kept in publish order; publishing an item again
// under the same id replaces it and makes it the newest. Nodes and items
// are removed with the account.
type PEP interface {
	// PEPNodes lists the account's nodes, ordered by name.
	PEPNodes(ctx context.Context, user string) ([]PEPNode, error)
	// PEPNode returns one node; ErrNotFound if there is none.
	PEPNode(ctx context.Context, user, node string) (PEPNode, error)
	// CreatePEPNode creates a node. ErrExists if the account already has
	// a node of that name; ErrQuotaExceeded when the account already has
	// maxNodes nodes (maxNodes <= 0: no limit); ErrNotFound if the user has
	// no account.
	CreatePEPNode(ctx context.Context, user string, n PEPNode, maxNodes int) error
	// SetPEPNodeConfig replaces the configuration of a node and keeps only
	// its newest keep items (keep <= 0: all). ErrNotFound if there is no
	// such node.
	SetPEPNodeConfig(ctx context.Context, user, node string, config []byte, keep int) error
	// DeletePEPNode removes a node and its items; ErrNotFound if there is
	// no such node.
	DeletePEPNode(ctx context.Context, user, node string) error
	// PutPEPItem stores it as the newest item of the node, replacing the
	// item with the same id, then keeps only the newest keep items (keep
	// <= 0: all). ErrNotFound if there is no such node.
	PutPEPItem(ctx context.Context, user, node string, it PEPItem, keep int) error
	// DeletePEPItems removes the items with these ids from a node and
	// returns the ids that were there, in the order given.
	DeletePEPItems(ctx context.Context, user, node string, ids []string) ([]string, error)
	// PurgePEPNode removes every item of a node; ErrNotFound if there is
	// no such node.
	PurgePEPNode(ctx context.Context, user, node string) error
	// PEPItems returns items of a node, newest first: those with the
	// given ids when ids is not empty (unknown ids are skipped), else the
	// newest max (max <= 0: all). A node that does not exist has no items.
	PEPItems(ctx context.Context, user, node string, ids []string, max int) ([]PEPItem, error)
	// LastPEPItems returns the newest item of each of the account's nodes
	// that has items, by node name.
	LastPEPItems(ctx context.Context, user string) (map[string]PEPItem, error)
}
