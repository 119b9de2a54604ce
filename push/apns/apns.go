// Package apns delivers pushes through the Apple Push Notification service
// (APNs), built on github.com/sideshow/apns2. [Sender] implements
// provider.Sender.
//
// An important push becomes a user-visible alert (apns-push-type alert,
// priority 10, mutable-content so that the app's notification service
// extension can rewrite it); any other push is a silent background wake-up
// (apns-push-type background, priority 5, content-available). Both carry
// the XEP-0357 summary as custom keys "message-count" and
// "last-message-sender" when known.
//
// Failures map onto provider.Error: 410, 400 BadDeviceToken and 400
// DeviceTokenNotForTopic mean a dead token; 429, 5xx and network errors
// (including the context's deadline) mean retry; any other refusal is
// permanent. APNs' Retry-After header, when present, is reported in
// provider.Error.RetryAfter (apns2 does not expose response headers, so
// the sender's HTTP transport captures it).
package apns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sideshow/apns2"

	"wren.im/wren/push/provider"
)

// Field limits. APNs refuses a payload over 4 KiB; capping the free-form
// texts keeps the payload well under it.
const (
	maxCollapseID = 64
	maxSender     = 256
	maxBody       = 1024
)

// NeutralTitle is the alert title of an important push whose sender is not
// known.
const NeutralTitle = "New message"

// Sender delivers pushes to APNs. It is safe for concurrent use and keeps
// its HTTP/2 connections open across pushes, as Apple asks.
type Sender struct {
	production  *apns2.Client
	development *apns2.Client
	env         Environment
	topic       string
	httpClient  *http.Client
}

var _ provider.Sender = (*Sender)(nil)

// New validates cfg, reads its key or certificate and returns a Sender.
// It does not connect: the first Send does. Errors name the offending
// Config field and say how to fix it, so New doubles as a configuration
// check.
func New(cfg Config) (*Sender, error) {
	cred, err := cfg.load(time.Now())
	if err != nil {
		return nil, err
	}
	hc := newHTTPClient(cred, cfg.RootCAs)
	client := func(host string) *apns2.Client {
		if cfg.Endpoint != "" {
			host = strings.TrimSuffix(cfg.Endpoint, "/")
		}
		return &apns2.Client{
			Host:        host,
			Certificate: cred.cert,
			Token:       cred.token,
			HTTPClient:  hc,
		}
	}
	return &Sender{
		production:  client(apns2.HostProduction),
		development: client(apns2.HostDevelopment),
		env:         cfg.Environment,
		topic:       cred.topic,
		httpClient:  hc,
	}, nil
}

// Name returns provider.APNs.
func (s *Sender) Name() string { return provider.APNs }

// CloseIdleConnections closes the connections to APNs that no push is
// using. The Sender stays usable.
func (s *Sender) CloseIdleConnections() { s.httpClient.CloseIdleConnections() }

// clientFor picks the environment for p.
func (s *Sender) clientFor(p provider.Push) *apns2.Client {
	switch {
	case s.env == Development, s.env == Auto && p.Sandbox:
		return s.development
	}
	return s.production
}

// Send delivers p and returns APNs' apns-id. A failure is a
// *provider.Error. ctx's deadline bounds the whole exchange.
func (s *Sender) Send(ctx context.Context, p provider.Push) (string, error) {
	if !isHex(p.Token) {
		// APNs would answer 400 BadDeviceToken; a token that is not hex
		// can also not be put in the request path safely.
		return "", &provider.Error{Kind: provider.DeadToken, Reason: apns2.ReasonBadDeviceToken,
			Err: fmt.Errorf("device token %q is not hexadecimal", p.Token)}
	}
	n := s.notification(p)
	x := &exchange{}
	resp, err := s.clientFor(p).PushWithContext(context.WithValue(ctx, exchangeKey{}, x), n)
	if err != nil {
		return "", networkError(ctx, err)
	}
	if resp.StatusCode == http.StatusOK {
		if resp.ApnsID != "" {
			return resp.ApnsID, nil
		}
		return n.ApnsID, nil
	}
	return "", responseError(resp, x.retryAfter)
}

// notification builds the APNs request for p.
func (s *Sender) notification(p provider.Push) *apns2.Notification {
	n := &apns2.Notification{
		DeviceToken: p.Token,
		Topic:       p.Topic,
		Expiration:  p.Expiration, // zero: the transport sends apns-expiration 0
		Payload:     payload(p),
	}
	if n.Topic == "" {
		n.Topic = s.topic
	}
	if id, ok := canonicalUUID(p.ID); ok {
		n.ApnsID = id
	}
	if p.CollapseID != "" {
		n.CollapseID = p.CollapseID
		if len(n.CollapseID) > maxCollapseID {
			// Truncation could merge distinct conversations; a digest keeps
			// them apart and fits exactly.
			sum := sha256.Sum256([]byte(p.CollapseID))
			n.CollapseID = hex.EncodeToString(sum[:])
		}
	}
	if p.Important {
		n.Priority = apns2.PriorityHigh
		n.PushType = apns2.PushTypeAlert
	} else {
		n.Priority = apns2.PriorityLow
		n.PushType = apns2.PushTypeBackground
	}
	return n
}

// payload is the JSON payload for p.
func payload(p provider.Push) map[string]any {
	pl := map[string]any{}
	if p.Important {
		title := truncate(p.LastSender, maxSender)
		if title == "" {
			title = NeutralTitle
		}
		alert := map[string]string{"title": title}
		if body := truncate(p.LastBody, maxBody); body != "" {
			alert["body"] = body
		}
		pl["aps"] = map[string]any{
			"alert":           alert,
			"mutable-content": 1,
			"sound":           "default",
		}
	} else {
		pl["aps"] = map[string]any{"content-available": 1}
	}
	if p.MessageCount > 0 {
		pl["message-count"] = p.MessageCount
	}
	if p.LastSender != "" {
		pl["last-message-sender"] = truncate(p.LastSender, maxSender)
	}
	return pl
}

// networkError classifies a failed exchange: always a retry, described by
// what went wrong.
func networkError(ctx context.Context, err error) *provider.Error {
	reason := "network error"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded):
		reason = "deadline exceeded"
	case errors.Is(err, context.Canceled):
		reason = "canceled"
	case errors.As(err, &ne) && ne.Timeout():
		reason = "timeout"
	}
	return &provider.Error{Kind: provider.Retry, Reason: reason, Err: err}
}

// responseError classifies a non-200 answer.
func responseError(resp *apns2.Response, retryAfter string) *provider.Error {
	e := &provider.Error{Status: resp.StatusCode, Reason: resp.Reason}
	if e.Reason == "" {
		e.Reason = http.StatusText(resp.StatusCode)
	}
	switch {
	case resp.StatusCode == http.StatusGone,
		resp.Reason == apns2.ReasonBadDeviceToken,
		resp.Reason == apns2.ReasonDeviceTokenNotForTopic:
		e.Kind = provider.DeadToken
		if !resp.Timestamp.IsZero() {
			e.Err = fmt.Errorf("device token invalid since %s", resp.Timestamp.UTC().Format(time.RFC3339))
		}
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		e.Kind = provider.Retry
		e.RetryAfter = parseRetryAfter(retryAfter, time.Now())
	default:
		e.Kind = provider.Permanent
	}
	return e
}

// canonicalUUID returns id in APNs' canonical form (lowercase 8-4-4-4-12)
// if it is a UUID.
func canonicalUUID(id string) (string, bool) {
	if len(id) != 36 {
		return "", false
	}
	for i := range len(id) {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !isHexByte(c) {
				return "", false
			}
		}
	}
	return strings.ToLower(id), true
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isHex(s string) bool {
	for i := range len(s) {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return s != ""
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut
// with an ellipsis.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
