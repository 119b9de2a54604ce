package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Push gateway commands: the delivery records, the registered devices and
// test pushes of the built-in push gateway (package push/gateway). An
// account in their arguments is a user name of this server ("alice") or
// the bare JID of an account on any server ("bob@example.net"): phones of
// other servers' users may register with the gateway too.

// Limits of the push.log command.
const (
	// DefaultPushLogLimit is the number of records push.log returns when
	// the request names no limit.
	DefaultPushLogLimit = 50
	// MaxPushLogLimit is the largest limit push.log accepts.
	MaxPushLogLimit = 10000
)

// PushTimeout is the outcome of a test push whose first attempt had not
// ended when the server stopped waiting for it.
const PushTimeout = "timeout"

// ErrPushGatewayDisabled is the failure of the push commands when the
// server runs without its push gateway. It matches ErrNotFound.
var ErrPushGatewayDisabled = &Error{Code: ErrNotFound.Code, Message: "the push gateway is disabled (push_gateway.enabled = false)"}

// PushLogQuery selects push delivery records for the push.log command.
// Zero fields do not filter.
type PushLogQuery struct {
	// Owner keeps the records of one account's devices: a user name of
	// this server or a bare JID.
	Owner string `json:"owner,omitempty"`
	// DeviceID keeps the records of the devices registered with this id
	// (an Android id, an iOS device id).
	DeviceID string `json:"device_id,omitempty"`
	// Since keeps the records of pushes queued at or after a time: a
	// duration back from now ("90m", "36h", "7d") or a time (RFC 3339,
	// or a date, meaning midnight UTC); see ParseSince.
	Since string `json:"since,omitempty"`
	// Limit caps the number of records, newest first: 0 means
	// DefaultPushLogLimit, and at most MaxPushLogLimit are returned.
	Limit int `json:"limit,omitempty"`
}

// PushLogFilter is a PushLogQuery checked by the server: what the backend
// receives.
type PushLogFilter struct {
	// Owner is as given in the query (the backend resolves user names).
	Owner    string
	DeviceID string
	// Since is the zero time when the query gave none.
	Since time.Time
	// Limit is between 1 and MaxPushLogLimit.
	Limit int
}

// filter checks q and resolves its relative time against now.
func (q PushLogQuery) filter(now time.Time) (PushLogFilter, error) {
	f := PushLogFilter{Owner: q.Owner, DeviceID: q.DeviceID, Limit: q.Limit}
	switch {
	case q.Limit == 0:
		f.Limit = DefaultPushLogLimit
	case q.Limit < 0 || q.Limit > MaxPushLogLimit:
		return PushLogFilter{}, fmt.Errorf("%w: the limit must be between 1 and %d, not %d", ErrBadRequest, MaxPushLogLimit, q.Limit)
	}
	if q.Since != "" {
		t, err := ParseSince(q.Since, now)
		if err != nil {
			return PushLogFilter{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		f.Since = t
	}
	return f, nil
}

// PushRecord is the delivery record of one push (see storage.PushDelivery).
type PushRecord struct {
	ID int64 `json:"id"`
	// Time is when the push was first queued.
	Time time.Time `json:"time"`
	// Owner (a bare JID), DeviceID and Provider ("apns" or "fcm")
	// identify the device.
	Owner    string `json:"owner"`
	DeviceID string `json:"device_id"`
	Provider string `json:"provider"`
	// Outcome is "delivered", "retrying", "dead-token", "failed" or
	// "dropped-queue-full".
	Outcome string `json:"outcome"`
	// ProviderID is the provider's id of a delivered push (APNs' apns-id,
	// FCM's message name); Reason says why another was not delivered.
	ProviderID string `json:"provider_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// Attempts counts the calls made to the provider.
	Attempts int `json:"attempts"`
	// LatencySeconds is the time from Time to the last outcome.
	LatencySeconds float64 `json:"latency_seconds"`
	// Important is set for alerts (as opposed to silent wake-ups).
	Important bool `json:"important"`
	// Coalesced counts the notifications merged into this push.
	Coalesced int `json:"coalesced"`
}

// Latency returns LatencySeconds as a duration.
func (r PushRecord) Latency() time.Duration { return seconds(r.LatencySeconds) }

// PushDevice describes a device registered with the push gateway. It
// leaves out the publish secret, and shortens the provider token.
type PushDevice struct {
	// Provider is "apns" or "fcm".
	Provider string `json:"provider"`
	DeviceID string `json:"device_id"`
	// MUC is the group chat whose notifications the registration is for,
	// or "" for the account's own.
	MUC string `json:"muc,omitempty"`
	// Topic is the APNs topic the device registered with ("" for the
	// gateway's default); Sandbox sends through APNs' development
	// environment.
	Topic   string `json:"topic,omitempty"`
	Sandbox bool   `json:"sandbox"`
	// Token is the start of the provider token (see ShortToken), enough
	// to tell two tokens apart and useless for sending.
	Token string `json:"token"`
	// Created is when the device first registered, Updated when it last
	// did (apps register again at every start).
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// PushDeviceList is the answer of push.devices.
type PushDeviceList struct {
	// Owner is the bare JID the account resolved to.
	Owner   string       `json:"owner"`
	Devices []PushDevice `json:"devices"`
}

// PushTestResult is the outcome of a test push to one device.
type PushTestResult struct {
	Device PushDevice `json:"device"`
	// Outcome is the outcome of the first attempt (as in PushRecord), or
	// PushTimeout.
	Outcome    string `json:"outcome"`
	ProviderID string `json:"provider_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
	// LatencySeconds is the time from queueing to the outcome.
	LatencySeconds float64 `json:"latency_seconds"`
}

// Latency returns LatencySeconds as a duration.
func (r PushTestResult) Latency() time.Duration { return seconds(r.LatencySeconds) }

// Delivered reports whether the provider accepted the test push.
func (r PushTestResult) Delivered() bool { return r.Outcome == "delivered" }

// PushTestReport is the answer of push.test.
type PushTestReport struct {
	// Owner is the bare JID the account resolved to.
	Owner   string           `json:"owner"`
	Results []PushTestResult `json:"results"`
}

// Delivered counts the test pushes the providers accepted.
func (r PushTestReport) Delivered() int {
	n := 0
	for _, res := range r.Results {
		if res.Delivered() {
			n++
		}
	}
	return n
}

// Argument shape of push.devices and push.test.
type pushOwnerArgs struct {
	Owner string `json:"owner"`
}

// shortTokenLen is how much of a provider token ShortToken keeps.
const shortTokenLen = 8

// ShortToken returns the first 8 characters of a provider token followed
// by "…" (at most half of a token shorter than 16 characters), so that
// the admin commands can tell tokens apart without handing them out.
func ShortToken(token string) string {
	n := utf8.RuneCountInString(token)
	if n == 0 {
		return ""
	}
	keep := min(shortTokenLen, n/2)
	i := 0
	for range keep {
		_, size := utf8.DecodeRuneInString(token[i:])
		i += size
	}
	return token[:i] + "…"
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// ParseSince parses the start of a time range for push.log: a duration
// back from now in Go's syntax ("90m", "1h30m") or in whole days ("7d"),
// a time in RFC 3339 ("2026-11-27T09:00:00Z", "2026-11-27T10:00:00+01:00")
// or a date ("2026-11-27", midnight UTC).
func ParseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("since %q: give a positive duration (how far back)", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("since %q is neither a duration (90m, 36h, 7d) nor a time (2006-01-02T15:04:05Z07:00, or a date 2006-01-02)", s)
}
