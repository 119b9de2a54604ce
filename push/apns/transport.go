package apns

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Connection settings, as apns2 uses for its own client.
const (
	dialTimeout      = 20 * time.Second
	tcpKeepAlive     = 15 * time.Second
	handshakeTimeout = 10 * time.Second
	pingInterval     = 15 * time.Second // idle connection health check
)

// newHTTPClient returns the HTTP/2-only client shared by both
// environments. It has no overall timeout: each Send's context carries
// the deadline.
func newHTTPClient(cred credentials, roots *x509.CertPool) *http.Client {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if len(cred.cert.Certificate) > 0 {
		tlsConf.Certificates = []tls.Certificate{cred.cert}
	}
	t := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: tcpKeepAlive}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: handshakeTimeout,
		ForceAttemptHTTP2:   true,
		Protocols:           new(http.Protocols),
		HTTP2:               &http.HTTP2Config{SendPingTimeout: pingInterval, PingTimeout: pingInterval},
	}
	t.Protocols.SetHTTP2(true) // APNs speaks HTTP/2 only
	return &http.Client{Transport: &transport{next: t}}
}

// exchangeKey is the context key under which Send passes an *exchange to
// the transport.
type exchangeKey struct{}

// exchange carries what apns2's Response leaves out from the transport
// back to Send.
type exchange struct {
	retryAfter string
}

// transport fills two gaps in apns2: it sends "apns-expiration: 0" (now or
// never) when apns2 left the header out for a zero expiration, which APNs
// would otherwise read as "store and retry per Apple's policy", and it
// hands the response's Retry-After header to Send through the request's
// context. RoundTrip runs on Send's goroutine, so exchange needs no lock.
type transport struct {
	next *http.Transport
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("apns-expiration") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("apns-expiration", "0")
	}
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		if x, ok := req.Context().Value(exchangeKey{}).(*exchange); ok {
			x.retryAfter = resp.Header.Get("Retry-After")
		}
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// underlying transport.
func (t *transport) CloseIdleConnections() { t.next.CloseIdleConnections() }

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
