// Package fcm delivers pushes through Firebase Cloud Messaging (HTTP v1),
// built on firebase.google.com/go/v4's messaging client. [Sender]
// implements provider.Sender.
//
// Every push is a data-only message, so that the app decides what to show:
// data keys "important" ("true"/"false") and, when known,
// "message-count", "last-message-sender" and "last-message-body". Android
// priority is "high" for an important push and "normal" otherwise; the
// push's CollapseID becomes the collapse key and its Expiration the TTL
// (a zero or past Expiration is TTL 0: deliver now or never).
//
// Failures map onto provider.Error: UNREGISTERED and SENDER_ID_MISMATCH
// mean a dead token; QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, any 429 or
// 5xx and network errors (including the context's deadline) mean retry,
// with FCM's Retry-After when it sent one; anything else is permanent.
//
// The Firebase SDK retries network errors and 503 answers by itself, up
// to four times with exponential backoff. The gateway owns retries, so the
// sender stops the SDK after the first failed attempt and reports that
// attempt (see stopRetries).
package fcm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"

	"wren.im/wren/push/provider"
)

// Scope is the OAuth 2.0 scope the sender asks for.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// Limits. FCM refuses data over 4 KiB and a TTL over 28 days; capping the
// free-form texts keeps the data well under the limit.
const (
	maxTTL       = 28 * 24 * time.Hour
	tokenTimeout = 20 * time.Second // an access token request
	maxSender    = 256
	maxBody      = 1024
)

// Data keys of a push.
const (
	KeyImportant    = "important"
	KeyMessageCount = "message-count"
	KeyLastSender   = "last-message-sender"
	KeyLastBody     = "last-message-body"
)

// Sender delivers pushes to FCM. It is safe for concurrent use.
type Sender struct {
	client     *messaging.Client
	httpClient *http.Client
}

var _ provider.Sender = (*Sender)(nil)

// New validates cfg, reads its credentials and returns a Sender. ctx is
// used only while New runs. New does not connect: the first Send fetches
// an access token and sends. Errors
// name the offending Config field and say how to fix it, so New doubles
// as a configuration check.
func New(ctx context.Context, cfg Config) (*Sender, error) {
	st, err := cfg.load()
	if err != nil {
		return nil, err
	}
	base := newTransport(cfg)
	var rt http.RoundTripper = base
	if st.credFile != "" {
		// The token source keeps this context for its token requests:
		// detach it from ctx's cancellation, and make those requests trust
		// RootCAs too. They do not see a Send's context, hence their own
		// timeout.
		tokenClient := &http.Client{Transport: base, Timeout: tokenTimeout}
		tctx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, tokenClient)
		rt, err = htransport.NewTransport(tctx, base,
			option.WithCredentialsFile(st.credFile),
			option.WithScopes(Scope))
		if err != nil {
			return nil, fmt.Errorf("fcm: CredentialsFile %q: %w", st.credFile, err)
		}
	}
	hc := &http.Client{Transport: &stopRetries{next: rt, base: base}}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	if st.endpoint != "" {
		opts = append(opts, option.WithEndpoint(st.endpoint))
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: st.projectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	return &Sender{client: client, httpClient: hc}, nil
}

// Name returns provider.FCM.
func (s *Sender) Name() string { return provider.FCM }

// CloseIdleConnections closes the connections that no push is using. The
// Sender stays usable.
func (s *Sender) CloseIdleConnections() { s.httpClient.CloseIdleConnections() }

// Send delivers p and returns FCM's message name. A failure is a
// *provider.Error. ctx's deadline bounds the whole exchange.
func (s *Sender) Send(ctx context.Context, p provider.Push) (string, error) {
	if p.Token == "" {
		return "", &provider.Error{Kind: provider.DeadToken, Reason: "INVALID_ARGUMENT",
			Err: errors.New("empty registration token")}
	}
	a := &attempt{}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a.cancel = cancel
	name, err := s.client.Send(context.WithValue(actx, attemptKey{}, a), message(p, time.Now()))
	if err == nil {
		return name, nil
	}
	if errorutils.HTTPResponse(err) == nil && errors.Is(context.Cause(actx), errStopped) {
		// The SDK gave up on its retries without an answer to report.
		return "", a.error()
	}
	return "", classify(ctx, err)
}

// message builds the FCM message for p.
func message(p provider.Push, now time.Time) *messaging.Message {
	data := map[string]string{KeyImportant: strconv.FormatBool(p.Important)}
	if p.MessageCount > 0 {
		data[KeyMessageCount] = strconv.Itoa(p.MessageCount)
	}
	if p.LastSender != "" {
		data[KeyLastSender] = truncate(p.LastSender, maxSender)
	}
	if p.LastBody != "" {
		data[KeyLastBody] = truncate(p.LastBody, maxBody)
	}
	var ttl time.Duration
	if !p.Expiration.IsZero() {
		ttl = min(max(p.Expiration.Sub(now).Truncate(time.Second), 0), maxTTL)
	}
	android := &messaging.AndroidConfig{Priority: "normal", TTL: &ttl, CollapseKey: p.CollapseID}
	if p.Important {
		android.Priority = "high"
	}
	return &messaging.Message{Token: p.Token, Data: data, Android: android}
}

// classify maps an error from the messaging client.
func classify(ctx context.Context, err error) *provider.Error {
	resp := errorutils.HTTPResponse(err)
	if resp == nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded):
			return &provider.Error{Kind: provider.Retry, Reason: "deadline exceeded", Err: err}
		case errors.Is(err, context.Canceled):
			return &provider.Error{Kind: provider.Retry, Reason: "canceled", Err: err}
		case errorutils.IsUnavailable(err), errorutils.IsDeadlineExceeded(err), errorutils.IsUnknown(err):
			// The SDK's description of a failed HTTP exchange.
			return &provider.Error{Kind: provider.Retry, Reason: "network error", Err: err}
		}
		// The SDK refused the message before sending it.
		return &provider.Error{Kind: provider.Permanent, Reason: "invalid message", Err: err}
	}
	e := &provider.Error{Status: resp.StatusCode, Err: err}
	e.Reason = reason(resp.StatusCode, readBody(resp))
	switch {
	case messaging.IsUnregistered(err), messaging.IsSenderIDMismatch(err):
		e.Kind = provider.DeadToken
	case messaging.IsQuotaExceeded(err), messaging.IsUnavailable(err), messaging.IsInternal(err),
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		e.Kind = provider.Retry
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	default:
		e.Kind = provider.Permanent
	}
	return e
}

// readBody reads the buffered body of the response the SDK keeps in its
// error, and puts it back.
func readBody(resp *http.Response) []byte {
	if resp.Body == nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// reason is FCM's error code from an error body (UNREGISTERED...), else
// its canonical status (NOT_FOUND...), else the HTTP status text.
func reason(status int, body []byte) string {
	var e struct {
		Error struct {
			Status  string `json:"status"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		for _, d := range e.Error.Details {
			if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" && d.ErrorCode != "" {
				return d.ErrorCode
			}
		}
		if e.Error.Status != "" {
			return e.Error.Status
		}
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "HTTP " + strconv.Itoa(status)
}

// networkReason describes a failed exchange.
func networkReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return "access token refused"
	}
	return "network error"
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
