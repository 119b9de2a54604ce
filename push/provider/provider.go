// Package provider is the contract between the push gateway and the
// services that deliver to devices (APNs, FCM): what a push carries, and
// how a delivery failed so the gateway can decide between retrying and
// forgetting the device.
package provider

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Names of the providers, as stored in device and delivery records.
const (
	APNs = "apns"
	FCM  = "fcm"
)

// Push is one wake-up for one device.
type Push struct {
	// Token is the device token (APNs) or registration token (FCM).
	Token string
	// Topic is the APNs topic (the app's bundle id; the gateway's default
	// when empty). Unused by FCM.
	Topic string
	// Sandbox sends through APNs' development environment.
	Sandbox bool
	// Important asks for a user-visible alert (a message with a body, an
	// encrypted payload, a call) instead of a silent background push.
	Important bool
	// MessageCount, LastSender and LastBody are the XEP-0357 summary; the
	// sender and body are empty unless the publishing server chose to
	// include them.
	MessageCount int
	LastSender   string
	LastBody     string
	// CollapseID lets the provider replace an undelivered earlier push of
	// the same conversation or device (apns-collapse-id, FCM collapse key).
	CollapseID string
	// Expiration is when the provider may stop trying to deliver; zero
	// means deliver now or never.
	Expiration time.Time
	// ID is the gateway's id of this push (a UUID), sent as apns-id so that
	// provider and gateway logs can be matched.
	ID string
}

// Sender delivers pushes for one provider. Send must honour ctx's
// deadline; the gateway always sets one.
type Sender interface {
	// Name returns APNs or FCM.
	Name() string
	// Send delivers p and returns the provider's id for the push (APNs'
	// apns-id, FCM's message name). A failure is an *Error.
	Send(ctx context.Context, p Push) (id string, err error)
}

// Kind classifies a failed delivery.
type Kind int

const (
	// Retry: the provider or the network is temporarily unavailable
	// (HTTP 429 or 5xx, a timeout, a reset connection); try again later.
	Retry Kind = iota + 1
	// DeadToken: the device token is no longer valid for this app (APNs
	// 410 Unregistered/ExpiredToken, 400 BadDeviceToken or
	// DeviceTokenNotForTopic; FCM UNREGISTERED or SENDER_ID_MISMATCH).
	// Forget the device; never retry.
	DeadToken
	// Permanent: the push itself was refused (bad payload, bad
	// credentials, a topic not allowed); retrying will not help.
	Permanent
)

func (k Kind) String() string {
	switch k {
	case Retry:
		return "retry"
	case DeadToken:
		return "dead-token"
	case Permanent:
		return "permanent"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failed delivery.
type Error struct {
	Kind Kind
	// Status is the provider's HTTP status (0 when none came back).
	Status int
	// Reason is the provider's reason string (APNs "BadDeviceToken", FCM
	// "UNREGISTERED") or a description of a network failure.
	Reason string
	// RetryAfter is the provider's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s", e.Kind, e.Reason)
	if e.Status != 0 {
		s = fmt.Sprintf("%s (HTTP %d)", s, e.Status)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of a Send error: the *Error's kind, Retry for a
// context deadline or other unclassified errors (a network failure).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Retry
}
