package storage

import (
	"context"
	"time"
)

// PushDevice is a device registered with the push gateway (the app
// server side of XEP-0357). Devices are not tied to local accounts: their
// owners may be users of other servers.
//
// A device is identified by its owner, provider, device id and MUC; its
// node is unique too and is how publishes find it.
type PushDevice struct {
	// Owner is the normalised bare JID of the account that registered
	// the device.
	Owner string
	// Provider is "apns" or "fcm".
	Provider string
	// DeviceID is the id the client gave for the device (Conversations'
	// android-id, an iOS app's device id); it stays the same when the
	// provider hands the app a new token.
	DeviceID string
	// MUC is the bare JID of the group chat whose notifications this
	// registration receives (Conversations registers one per channel), or
	// "" for the account's own notifications.
	MUC string
	// Token is the provider's device token or registration token.
	Token string
	// Topic is the APNs topic (bundle id) the device registered with, or ""
	// for the gateway's default. Sandbox sends through APNs' development
	// environment.
	Topic   string
	Sandbox bool
	// Node is the pubsub node the owner's server publishes to, and Secret
	// the publish-options secret it must send with every publish. Both are
	// random, chosen by the gateway at the first registration and kept
	// when the device registers again.
	Node   string
	Secret string
	// Created is when the device first registered, Updated when it last did.
	Created time.Time
	Updated time.Time
}

// Outcomes of a push, as kept in its delivery record.
const (
	// PushDelivered: the provider accepted the push.
	PushDelivered = "delivered"
	// PushRetrying: the last attempt failed temporarily; another follows.
	PushRetrying = "retrying"
	// PushDeadToken: the provider said the device token is no longer
	// valid; the device was removed.
	PushDeadToken = "dead-token"
	// PushFailed: the provider refused the push, or every attempt failed.
	PushFailed = "failed"
	// PushDroppedQueueFull: the gateway's queue was full; never sent.
	PushDroppedQueueFull = "dropped-queue-full"
)

// PushDelivery is the record of one push sent (or not) to one device. The
// record of a push that is retried is updated after each attempt.
type PushDelivery struct {
	// ID is assigned by AddPushDelivery.
	ID int64
	// Time is when the push was first queued.
	Time time.Time
	// Owner, DeviceID, Provider and Node identify the device.
	Owner    string
	DeviceID string
	Provider string
	Node     string
	// Outcome is one of the Push* outcomes.
	Outcome string
	// ProviderID is the provider's id of the delivered push (APNs'
	// apns-id, FCM's message name).
	ProviderID string
	// Reason says why the push was not (yet) delivered.
	Reason string
	// Attempts counts the calls made to the provider.
	Attempts int
	// Latency is the time from Time to the last outcome.
	Latency time.Duration
	// Important is set for pushes that asked for a user-visible alert.
	Important bool
	// Coalesced counts the later notifications for the same device merged
	// into this push while it waited.
	Coalesced int
}

// PushDeliveryFilter selects delivery records. Zero fields do not filter.
type PushDeliveryFilter struct {
	// Owner keeps the records of one owner's devices (a bare JID).
	Owner string
	// DeviceID keeps the records of devices with that device id.
	DeviceID string
	// Since keeps records of pushes queued at or after Since.
	Since time.Time
	// Limit caps the number of records returned (<= 0: no cap).
	Limit int
}

// PushGateway stores the push gateway's devices and delivery records.
type PushGateway interface {
	// PutPushDevice registers d. When the owner already registered a
	// device with the same provider, device id and MUC, its token, topic
	// and sandbox flag are replaced and its node, secret and creation
	// time are kept; otherwise d is stored as given (d.Node and d.Secret
	// must be set). It returns the stored device. ErrQuotaExceeded when
	// the owner already has max other devices (max <= 0: no limit);
	// ErrExists when d.Node is taken by another device.
	PutPushDevice(ctx context.Context, d PushDevice, max int) (PushDevice, error)
	// PushDevice returns the device with that node; ErrNotFound if none.
	PushDevice(ctx context.Context, node string) (PushDevice, error)
	// PushDevices lists the devices of an owner (a bare JID), oldest first.
	PushDevices(ctx context.Context, owner string) ([]PushDevice, error)
	// DeletePushDevice removes the device with that node and reports
	// whether it did. With a non-empty token it removes the device only
	// while it still has that token, so that a dead token reported for a
	// push does not remove a device that registered a new one meanwhile.
	DeletePushDevice(ctx context.Context, node, token string) (bool, error)

	// AddPushDelivery stores a delivery record and returns its ID.
	AddPushDelivery(ctx context.Context, d PushDelivery) (int64, error)
	// UpdatePushDelivery replaces the outcome, provider id, reason,
	// attempts, latency, important flag and coalesced count of the record
	// d.ID; ErrNotFound if it is gone.
	UpdatePushDelivery(ctx context.Context, d PushDelivery) error
	// PushDeliveries returns the records matching f, newest first.
	PushDeliveries(ctx context.Context, f PushDeliveryFilter) ([]PushDelivery, error)
	// TrimPushDeliveries removes up to limit of the records of pushes
	// queued before olderThan, oldest first, and returns how many it
	// removed.
	TrimPushDeliveries(ctx context.Context, olderThan time.Time, limit int) (int, error)
}
