// Package apnstest runs a mock Apple Push Notification service for tests.
//
// The mock speaks the APNs provider API over HTTP/2 and TLS on loopback:
// POST /3/device/{token} with the apns-* headers, a JSON payload and either
// an ES256 provider token (JWT) or a client certificate. It checks every
// request the way APNs does, answers an invalid one like APNs would (for
// example 400 {"reason":"MissingTopic"} or 403
// {"reason":"InvalidProviderToken"}) and records it as a protocol violation
// that the test can assert on. Valid requests get the scripted answers (see
// [Reply]), 200 by default.
//
// The mock is stricter than APNs in a few places, to pin down how Wren's
// sender uses the protocol: apns-push-type must be alert or background,
// alert goes with apns-priority 10 and background with 5, apns-expiration
// must be present, and the payload must match the push type (an alert
// dictionary and mutable-content 1 for alert; content-available 1 and no
// alert, sound or badge for background). Such payload problems are
// answered with the mock's own reason "BadPayload"; APNs would deliver a
// wrong payload silently.
package apnstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wren.im/wren/push/internal/mockprovider"
)

// Default credentials the mock expects in provider tokens.
const (
	DefaultKeyID  = "MOCKKEY123"
	DefaultTeamID = "MOCKTEAM12"
)

// maxPayload is APNs' limit for a regular (non-VoIP) payload.
const maxPayload = 4096

// Options configure a mock.
type Options struct {
	// KeyID and TeamID are the kid header and iss claim that provider
	// tokens must carry; DefaultKeyID and DefaultTeamID when empty.
	KeyID  string
	TeamID string
	// Topics lists the accepted apns-topic values; any non-empty topic is
	// accepted when empty. Another topic is answered 400 TopicDisallowed.
	Topics []string
	// ClientCAs enables certificate authentication: a request on a
	// connection whose client certificate chains to ClientCAs needs no
	// provider token. A client certificate that does not chain is answered
	// 403 BadCertificate.
	ClientCAs *x509.CertPool
}

// Reply is a scripted answer to a valid request.
type Reply struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Reason is APNs' reason string, sent as {"reason":...} when Status is
	// not 200.
	Reason string
	// Timestamp is sent with a 410 answer: when APNs last knew the token
	// was valid. The current time when zero.
	Timestamp time.Time
	// RetryAfter, when positive, is sent as a Retry-After header in whole
	// seconds.
	RetryAfter time.Duration
	// Stall holds the request without answering until the client gives up
	// or the mock is closed.
	Stall bool
}

// OK is the 200 answer.
func OK() Reply { return Reply{Status: http.StatusOK} }

// Unregistered is 410 Unregistered: the app was removed from the device.
func Unregistered(since time.Time) Reply {
	return Reply{Status: http.StatusGone, Reason: "Unregistered", Timestamp: since}
}

// BadDeviceToken is 400 BadDeviceToken.
func BadDeviceToken() Reply {
	return Reply{Status: http.StatusBadRequest, Reason: "BadDeviceToken"}
}

// TooManyRequests is 429 TooManyRequests, with a Retry-After when
// retryAfter is positive.
func TooManyRequests(retryAfter time.Duration) Reply {
	return Reply{Status: http.StatusTooManyRequests, Reason: "TooManyRequests", RetryAfter: retryAfter}
}

// ServiceUnavailable is 503 ServiceUnavailable, with a Retry-After when
// retryAfter is positive.
func ServiceUnavailable(retryAfter time.Duration) Reply {
	return Reply{Status: http.StatusServiceUnavailable, Reason: "ServiceUnavailable", RetryAfter: retryAfter}
}

// Stall holds the request until the client gives up or the mock closes.
func Stall() Reply { return Reply{Stall: true} }

// Push is one request the mock received.
type Push struct {
	// Time is when the request arrived.
	Time time.Time
	// Method, Path and Proto are the request line ("HTTP/2.0").
	Method string
	Path   string
	Proto  string
	// Token is the device token from the path.
	Token string
	// Header holds the request headers (apns-topic, apns-push-type, ...).
	Header http.Header
	// Body is the raw payload; Payload is Body decoded, nil if it is not a
	// JSON object.
	Body    []byte
	Payload map[string]any
	// Auth is how the request authenticated: "token", "certificate" or "".
	Auth string
	// Status and Reason are what the mock answered; a stalled request
	// has Status 0 and Reason "stalled".
	Status int
	Reason string
	// Violations lists what was wrong with the request; empty when valid.
	Violations []string
}

// Server is a running mock. It is safe for concurrent use.
type Server struct {
	// URL is the mock's base URL (https://127.0.0.1:port), to use as the
	// APNs endpoint.
	URL string

	opts Options
	srv  *httptest.Server
	key  *ecdsa.PrivateKey
	done chan struct{}
	once sync.Once

	script mockprovider.Script[Reply]
	log    mockprovider.Log[Push]
}

// New starts a mock APNs server on loopback. It is closed when the test
// ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.KeyID == "" {
		opts.KeyID = DefaultKeyID
	}
	if opts.TeamID == "" {
		opts.TeamID = DefaultTeamID
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("apnstest: generate signing key: %v", err)
	}
	s := &Server{
		opts: opts,
		key:  key,
		done: make(chan struct{}),
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.srv.EnableHTTP2 = true
	if opts.ClientCAs != nil {
		// Verified in the handler, to answer 403 BadCertificate like APNs
		// instead of failing the handshake.
		s.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	}
	s.srv.StartTLS()
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the mock, releasing stalled requests first. Pushes sent
// afterwards fail to connect. Close is idempotent.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// CertPEM returns the mock's TLS certificate in PEM, for a client that
// is configured with a CA file (the wren binary).
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// CertPool returns a pool holding the mock's TLS certificate, for the
// client's RootCAs.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.srv.Certificate())
	return pool
}

// KeyID returns the key id provider tokens must carry.
func (s *Server) KeyID() string { return s.opts.KeyID }

// TeamID returns the team id provider tokens must carry.
func (s *Server) TeamID() string { return s.opts.TeamID }

// AuthKeyPEM returns the mock's signing key as a .p8 file's content
// (PKCS#8, PEM "PRIVATE KEY"), the format Apple hands out.
func (s *Server) AuthKeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		// An in-memory P-256 key always marshals.
		panic(fmt.Sprintf("apnstest: marshal key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteAuthKey writes AuthKeyPEM to AuthKey_<KeyID>.p8 in a fresh
// temporary directory and returns its path.
func (s *Server) WriteAuthKey(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "AuthKey_"+s.opts.KeyID+".p8")
	if err := os.WriteFile(path, s.AuthKeyPEM(), 0o600); err != nil {
		t.Fatalf("apnstest: write auth key: %v", err)
	}
	return path
}

// Enqueue adds one-shot answers, used in order by the next valid requests
// whatever their token. They take precedence over ReplyTo.
func (s *Server) Enqueue(r ...Reply) { s.script.Enqueue(r...) }

// ReplyTo sets the answer to every valid request for token when the queue
// is empty, until changed.
func (s *Server) ReplyTo(token string, r Reply) { s.script.ReplyTo(token, r) }

// Pushes returns a copy of the requests received so far, in order.
func (s *Server) Pushes() []Push { return s.log.All() }

// Violations returns every protocol violation seen so far, each prefixed
// with the request's path.
func (s *Server) Violations() []string {
	return mockprovider.Violations(s.log.All(),
		func(p Push) string { return p.Path },
		func(p Push) []string { return p.Violations })
}

// CheckNoViolations reports every protocol violation seen so far as a test
// error.
func (s *Server) CheckNoViolations(t testing.TB) {
	t.Helper()
	for _, v := range s.Violations() {
		t.Errorf("apnstest: protocol violation: %s", v)
	}
}

// WaitPushes waits until the mock has received at least n requests and
// returns them; it fails the test if that takes longer than timeout. Call
// it from the test's goroutine.
func (s *Server) WaitPushes(t testing.TB, n int, timeout time.Duration) []Push {
	t.Helper()
	return s.log.Wait(t, "apnstest", n, timeout)
}

// record appends p and wakes waiters; it returns p's index.
func (s *Server) record(p Push) { s.log.Record(p) }

// answer picks the scripted reply for a valid request to token.
func (s *Server) answer(token string) Reply { return s.script.Answer(token, OK()) }

// violation is one thing wrong with a request, with the answer APNs gives.
type violation struct {
	status int
	reason string
	msg    string
}

type checker struct{ v []violation }

func (c *checker) add(status int, reason, format string, args ...any) {
	c.v = append(c.v, violation{status, reason, fmt.Sprintf(format, args...)})
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p := Push{
		Time:   time.Now(),
		Method: r.Method,
		Path:   r.URL.Path,
		Proto:  r.Proto,
		Header: r.Header.Clone(),
	}
	var c checker
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		c.add(http.StatusBadRequest, "BadPayload", "reading body: %v", err)
	}
	p.Body = body

	if r.ProtoMajor != 2 {
		c.add(http.StatusBadRequest, "BadProtocol", "request over %s, APNs speaks HTTP/2 only", r.Proto)
	}
	if r.Method != http.MethodPost {
		c.add(http.StatusMethodNotAllowed, "MethodNotAllowed", "method %s, want POST", r.Method)
	}
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	switch {
	case !ok:
		c.add(http.StatusNotFound, "BadPath", "path %q, want /3/device/{token}", r.URL.Path)
	case token == "":
		c.add(http.StatusBadRequest, "MissingDeviceToken", "no device token in the path")
	case !isHex(token):
		c.add(http.StatusBadRequest, "BadDeviceToken", "device token %q is not hexadecimal", token)
	}
	p.Token = token
	p.Auth = s.checkAuth(&c, r)
	s.checkHeaders(&c, r.Header)
	p.Payload = checkPayload(&c, body, r.Header.Get("apns-push-type"))

	if len(c.v) > 0 {
		for _, v := range c.v {
			p.Violations = append(p.Violations, v.msg)
		}
		p.Status, p.Reason = c.v[0].status, c.v[0].reason
		s.record(p)
		writeReason(w, c.v[0].status, c.v[0].reason, time.Time{})
		return
	}

	reply := s.answer(token)
	if reply.Stall {
		p.Reason = "stalled"
		s.record(p)
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	}
	status := reply.Status
	if status == 0 {
		status = http.StatusOK
	}
	p.Status, p.Reason = status, reply.Reason
	s.record(p)

	id := r.Header.Get("apns-id")
	if id == "" {
		id = newUUID()
	}
	w.Header().Set("apns-id", id)
	if reply.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((reply.RetryAfter+time.Second-1)/time.Second)))
	}
	if status == http.StatusOK {
		w.WriteHeader(status)
		return
	}
	ts := reply.Timestamp
	if status == http.StatusGone && ts.IsZero() {
		ts = time.Now()
	}
	writeReason(w, status, reply.Reason, ts)
}

// writeReason answers with APNs' error body. A 410 carries the timestamp
// in milliseconds since the epoch.
func writeReason(w http.ResponseWriter, status int, reason string, ts time.Time) {
	body := map[string]any{"reason": reason}
	if status == http.StatusGone {
		body["timestamp"] = ts.UnixMilli()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// checkAuth checks the provider token or the client certificate and
// returns how the request authenticated.
func (s *Server) checkAuth(c *checker, r *http.Request) string {
	authz := r.Header.Get("authorization")
	if s.opts.ClientCAs != nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		certs := r.TLS.PeerCertificates
		inter := x509.NewCertPool()
		for _, ic := range certs[1:] {
			inter.AddCert(ic)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{
			Roots:         s.opts.ClientCAs,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			c.add(http.StatusForbidden, "BadCertificate", "client certificate %q: %v", certs[0].Subject, err)
			return ""
		}
		if authz == "" {
			return "certificate"
		}
	}
	if authz == "" {
		c.add(http.StatusForbidden, "MissingProviderToken", "no authorization header and no client certificate")
		return ""
	}
	if reason, msg := s.checkJWT(authz, time.Now()); reason != "" {
		c.add(http.StatusForbidden, reason, "provider token: %s", msg)
		return ""
	}
	return "token"
}

// checkJWT verifies an "authorization: bearer <JWT>" value: ES256 signed
// by the mock's key, kid and iss as configured, iat within the last hour.
// It returns APNs' reason and a description when the token is refused.
func (s *Server) checkJWT(authz string, now time.Time) (reason, msg string) {
	const bad = "InvalidProviderToken"
	scheme, tok, ok := strings.Cut(authz, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return bad, fmt.Sprintf("authorization %q is not \"bearer <JWT>\"", authz)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return bad, fmt.Sprintf("JWT has %d parts, want 3", len(parts))
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss string          `json:"iss"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return bad, "JWT header: " + err.Error()
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return bad, "JWT claims: " + err.Error()
	}
	if hdr.Alg != "ES256" {
		return bad, fmt.Sprintf("JWT alg %q, want ES256", hdr.Alg)
	}
	if hdr.Kid != s.opts.KeyID {
		return bad, fmt.Sprintf("JWT kid %q, want %q", hdr.Kid, s.opts.KeyID)
	}
	if claims.Iss != s.opts.TeamID {
		return bad, fmt.Sprintf("JWT iss %q, want team id %q", claims.Iss, s.opts.TeamID)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return bad, "JWT signature is not 64 bytes of base64url (r||s)"
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, sv := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&s.key.PublicKey, digest[:], r, sv) {
		return bad, "JWT signature does not verify with the team's key"
	}
	iat, err := strconv.ParseInt(string(claims.Iat), 10, 64)
	if err != nil {
		return bad, fmt.Sprintf("JWT iat %s is not an integer number of seconds", claims.Iat)
	}
	issued := time.Unix(iat, 0)
	switch {
	case issued.After(now.Add(time.Minute)):
		return bad, fmt.Sprintf("JWT iat %v is in the future", issued)
	case now.Sub(issued) > time.Hour:
		return "ExpiredProviderToken", fmt.Sprintf("JWT iat %v is more than an hour old", issued)
	}
	return "", ""
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return fmt.Errorf("not base64url: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return nil
}

func (s *Server) checkHeaders(c *checker, h http.Header) {
	for name, vals := range h {
		if strings.HasPrefix(strings.ToLower(name), "apns-") && len(vals) > 1 {
			c.add(http.StatusBadRequest, "DuplicateHeaders", "header %s repeated", name)
		}
	}
	topic := h.Get("apns-topic")
	switch {
	case topic == "":
		c.add(http.StatusBadRequest, "MissingTopic", "no apns-topic header")
	case len(s.opts.Topics) > 0 && !slices.Contains(s.opts.Topics, topic):
		c.add(http.StatusBadRequest, "TopicDisallowed", "apns-topic %q not in %q", topic, s.opts.Topics)
	}
	pushType := h.Get("apns-push-type")
	var wantPrio string
	switch pushType {
	case "alert":
		wantPrio = "10"
	case "background":
		wantPrio = "5"
	case "":
		c.add(http.StatusBadRequest, "InvalidPushType", "no apns-push-type header")
	default:
		c.add(http.StatusBadRequest, "InvalidPushType", "apns-push-type %q, want alert or background", pushType)
	}
	prio := h.Get("apns-priority")
	switch {
	case prio != "" && prio != "1" && prio != "5" && prio != "10":
		c.add(http.StatusBadRequest, "BadPriority", "apns-priority %q is not 1, 5 or 10", prio)
	case wantPrio != "" && prio != wantPrio:
		c.add(http.StatusBadRequest, "BadPriority", "apns-priority %q with push type %s, want %s", prio, pushType, wantPrio)
	}
	exp := h.Get("apns-expiration")
	if exp == "" {
		c.add(http.StatusBadRequest, "BadExpirationDate", "no apns-expiration header (0 means now or never)")
	} else if n, err := strconv.ParseInt(exp, 10, 64); err != nil || n < 0 {
		c.add(http.StatusBadRequest, "BadExpirationDate", "apns-expiration %q is not a UNIX time in seconds", exp)
	}
	if id := h.Get("apns-collapse-id"); len(id) > 64 {
		c.add(http.StatusBadRequest, "BadCollapseId", "apns-collapse-id is %d bytes, limit 64", len(id))
	}
	if _, ok := h["Apns-Collapse-Id"]; ok && h.Get("apns-collapse-id") == "" {
		c.add(http.StatusBadRequest, "BadCollapseId", "empty apns-collapse-id header")
	}
	if id, ok := h["Apns-Id"]; ok && !isUUID(id[0]) {
		c.add(http.StatusBadRequest, "BadMessageId", "apns-id %q is not a lowercase canonical UUID", id[0])
	}
}

// checkPayload checks the JSON payload against the push type and returns
// it decoded.
func checkPayload(c *checker, body []byte, pushType string) map[string]any {
	if len(body) == 0 {
		c.add(http.StatusBadRequest, "PayloadEmpty", "empty payload")
		return nil
	}
	if len(body) > maxPayload {
		c.add(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "payload is %d bytes, limit %d", len(body), maxPayload)
	}
	var payload map[string]any
	if err := json.Unmarshal(body, &payload); err != nil {
		c.add(http.StatusBadRequest, "BadPayload", "payload is not a JSON object: %v", err)
		return nil
	}
	aps, ok := payload["aps"].(map[string]any)
	if !ok {
		c.add(http.StatusBadRequest, "BadPayload", "payload has no aps dictionary")
		return payload
	}
	switch pushType {
	case "alert":
		switch a := aps["alert"].(type) {
		case string:
			if a == "" {
				c.add(http.StatusBadRequest, "BadPayload", "empty aps.alert")
			}
		case map[string]any:
			t, _ := a["title"].(string)
			b, _ := a["body"].(string)
			if t == "" && b == "" {
				c.add(http.StatusBadRequest, "BadPayload", "aps.alert has neither title nor body")
			}
		default:
			c.add(http.StatusBadRequest, "BadPayload", "alert push without aps.alert")
		}
		if aps["mutable-content"] != float64(1) {
			c.add(http.StatusBadRequest, "BadPayload", "alert push with aps.mutable-content %v, want 1", aps["mutable-content"])
		}
	case "background":
		if aps["content-available"] != float64(1) {
			c.add(http.StatusBadRequest, "BadPayload", "background push with aps.content-available %v, want 1", aps["content-available"])
		}
		for _, k := range []string{"alert", "sound", "badge"} {
			if _, ok := aps[k]; ok {
				c.add(http.StatusBadRequest, "BadPayload", "background push with aps.%s", k)
			}
		}
	}
	return payload
}

func isHex(s string) bool {
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return s != ""
}

// isUUID reports whether s is a canonical lowercase UUID (8-4-4-4-12).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
				return false
			}
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID, as APNs generates when the
// request carries no apns-id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
