package fcm

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"wren.im/wren/push/provider"
)

// Connection settings.
const (
	dialTimeout      = 20 * time.Second
	tcpKeepAlive     = 15 * time.Second
	handshakeTimeout = 10 * time.Second
	idleConnTimeout  = 90 * time.Second
	pingInterval     = 15 * time.Second // idle connection health check
)

// newTransport returns the transport to FCM and to the token endpoint,
// HTTP/2 when the server offers it. It has no overall timeout: each
// Send's context carries the deadline.
func newTransport(cfg Config) *http.Transport {
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}).DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		TLSHandshakeTimeout: handshakeTimeout,
		IdleConnTimeout:     idleConnTimeout,
		ForceAttemptHTTP2:   true,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: pingInterval, PingTimeout: pingInterval},
	}
}

// errStopped is the cancellation cause with which stopRetries ends the
// SDK's retry loop.
var errStopped = errors.New("fcm: first attempt failed; the gateway retries")

// attemptKey is the context key under which Send passes an *attempt to
// stopRetries.
type attemptKey struct{}

// attempt is the outcome of a Send's first failed HTTP exchange.
type attempt struct {
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	done   bool
	err    error // the exchange failed
	status int   // or FCM answered with this status
	header http.Header
	body   []byte
}

// stopRetries ends the SDK's own retries. The SDK retries network errors
// and 503 answers up to four times, waiting up to a Retry-After it is
// given (two minutes at most), and then reports only its last attempt,
// or just the context's error if the deadline struck while it waited.
// stopRetries records the first failed exchange (a network error, 429 or
// 5xx) and cancels the request's context with errStopped, which makes the
// SDK give up at once; Send then reports that exchange, Retry-After
// included. Answers the SDK does not retry come back as the SDK's own
// error, as before.
type stopRetries struct {
	next http.RoundTripper // authenticating, over base
	base *http.Transport
}

func (t *stopRetries) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	resp, err := t.next.RoundTrip(req)
	if a == nil {
		return resp, err
	}
	if err != nil {
		a.record(err, 0, nil, nil)
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		// Buffer the body before cancelling, so that the SDK can still
		// read it.
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			a.record(rerr, 0, nil, nil)
			return nil, rerr
		}
		a.record(nil, resp.StatusCode, resp.Header, body)
	}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (t *stopRetries) CloseIdleConnections() { t.base.CloseIdleConnections() }

// record keeps the first failed exchange and stops the SDK.
func (a *attempt) record(err error, status int, header http.Header, body []byte) {
	a.mu.Lock()
	if !a.done {
		a.done = true
		a.err, a.status, a.header, a.body = err, status, header, body
	}
	a.mu.Unlock()
	a.cancel(errStopped)
}

// error classifies the recorded exchange.
func (a *attempt) error() *provider.Error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		var re *oauth2.RetrieveError
		if errors.As(a.err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			// The token endpoint refused the service account: a revoked
			// or deleted key will not get better by retrying.
			return &provider.Error{Kind: provider.Permanent, Status: re.Response.StatusCode,
				Reason: "access token refused: " + oauthErrorCode(re), Err: a.err}
		}
		return &provider.Error{Kind: provider.Retry, Reason: networkReason(a.err), Err: a.err}
	}
	e := &provider.Error{Status: a.status, Reason: reason(a.status, a.body),
		Err: errors.New("FCM answered HTTP " + strconv.Itoa(a.status))}
	switch e.Reason {
	case "UNREGISTERED", "SENDER_ID_MISMATCH":
		e.Kind = provider.DeadToken
	default:
		e.Kind = provider.Retry
		e.RetryAfter = parseRetryAfter(a.header.Get("Retry-After"), time.Now())
	}
	return e
}

// oauthErrorCode is the OAuth error code ("invalid_grant") of a token
// endpoint's refusal.
func oauthErrorCode(re *oauth2.RetrieveError) string {
	if re.ErrorCode != "" {
		return re.ErrorCode
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(re.Body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return "HTTP " + strconv.Itoa(re.Response.StatusCode)
}

// parseRetryAfter reads a Retry-After value: seconds or an HTTP date. It
// returns 0 for an absent, malformed or past value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
