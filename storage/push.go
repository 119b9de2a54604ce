package storage

import (
	"context"
	"time"
)

// PushRegistration is one XEP-0357 registration of an account: a device's
// app server and node, enabled by one of the account's clients.
type PushRegistration struct {
	// Service is the app server's JID, Node the node it gave the device.
	Service string
	Node    string
	// Options is the serialised publish-options data form (holding e.g. a
	// secret) sent with every notification, or nil.
	Options []byte
	// Resource is the resource of the session that enabled the
	// registration: while that session is live and not hibernated, the
	// device needs no push.
	Resource string
	// Created is when the registration was (last) enabled.
	Created time.Time
	// Errors counts the app server's non-temporary errors since the last
	// successful notification.
	Errors int
}

// PushRegistrations stores accounts' XEP-0357 registrations. They are
// removed with the account.
type PushRegistrations interface {
	// PutPushRegistration stores r, replacing the registration with the
	// same service and node (and resetting its error count).
	// ErrQuotaExceeded when the account already has max other
	// registrations (max <= 0: no limit); ErrNotFound if the user has no
	// account.
	PutPushRegistration(ctx context.Context, user string, r PushRegistration, max int) error
	// DeletePushRegistrations removes the registrations for service and
	// node (every node of service when node is empty) and returns how
	// many it removed.
	DeletePushRegistrations(ctx context.Context, user, service, node string) (int, error)
	// PushRegistrations lists the account's registrations, oldest first.
	PushRegistrations(ctx context.Context, user string) ([]PushRegistration, error)
	// SetPushErrors records the error count of one registration; it is not
	// an error if the registration is gone.
	SetPushErrors(ctx context.Context, user, service, node string, errors int) error
}
