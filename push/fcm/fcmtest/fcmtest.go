// Package fcmtest runs a mock Firebase Cloud Messaging HTTP v1 service for
// tests.
//
// The mock serves POST /v1/projects/{project}/messages:send over HTTP/2 and
// TLS on loopback, plus a Google OAuth 2.0 token endpoint (/token) for the
// service-account flow: [Server.WriteCredentials] writes a service-account
// key file whose token_uri points at the mock, the mock verifies the
// RS256-signed assertion and issues access tokens, and requests to the
// send endpoint must carry one of them (or none, unless
// Options.RequireAuth).
//
// Every send request is checked the way FCM does: the project, a JSON
// body {"message":{...}} with known fields only, exactly one target and a
// non-empty token, data values that are all strings and no reserved data
// keys, android.priority "high"/"normal" (either case), android.ttl in
// protobuf duration form ("3.5s"). An invalid request is answered like FCM
// (for example 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED) and recorded as
// a protocol violation. Valid requests get the scripted answers (see
// [Reply]), 200 {"name":"projects/{project}/messages/{id}"} by default.
package fcmtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"wren.im/wren/push/internal/mockprovider"
)

// DefaultProjectID is the project the mock serves unless configured.
const DefaultProjectID = "wren-test"

// Scope is the OAuth 2.0 scope for FCM; the token endpoint also accepts
// the broader cloud-platform scope.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

const (
	cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"
	jwtBearerGrant     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	fcmErrorType       = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	maxDataBytes       = 4096
	maxTTL             = 28 * 24 * time.Hour
)

// Options configure a mock.
type Options struct {
	// ProjectID is the Firebase project; DefaultProjectID when empty.
	ProjectID string
	// RequireAuth refuses send requests without an access token (401
	// UNAUTHENTICATED). A token that the mock did not issue is always
	// refused.
	RequireAuth bool
}

// Reply is a scripted answer to a valid send request.
type Reply struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// ErrorCode is FCM's error code (UNREGISTERED, SENDER_ID_MISMATCH,
	// QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, INVALID_ARGUMENT,
	// THIRD_PARTY_AUTH_ERROR), sent as an FcmError detail; none when
	// empty.
	ErrorCode string
	// GRPCStatus overrides the error's "status" (by default the canonical
	// one for Status, like NOT_FOUND for 404).
	GRPCStatus string
	// RetryAfter, when positive, is sent as a Retry-After header in whole
	// seconds.
	RetryAfter time.Duration
	// Stall holds the request without answering until the client gives up
	// or the mock is closed.
	Stall bool
}

// OK is the 200 answer.
func OK() Reply { return Reply{Status: http.StatusOK} }

// Unregistered is 404 NOT_FOUND with FCM error UNREGISTERED: the token is
// no longer valid.
func Unregistered() Reply { return Reply{Status: http.StatusNotFound, ErrorCode: "UNREGISTERED"} }

// SenderIDMismatch is 403 PERMISSION_DENIED with SENDER_ID_MISMATCH: the
// token belongs to another project.
func SenderIDMismatch() Reply {
	return Reply{Status: http.StatusForbidden, ErrorCode: "SENDER_ID_MISMATCH"}
}

// QuotaExceeded is 429 RESOURCE_EXHAUSTED with QUOTA_EXCEEDED.
func QuotaExceeded(retryAfter time.Duration) Reply {
	return Reply{Status: http.StatusTooManyRequests, ErrorCode: "QUOTA_EXCEEDED", RetryAfter: retryAfter}
}

// Unavailable is 503 UNAVAILABLE.
func Unavailable(retryAfter time.Duration) Reply {
	return Reply{Status: http.StatusServiceUnavailable, ErrorCode: "UNAVAILABLE", RetryAfter: retryAfter}
}

// Internal is 500 INTERNAL.
func Internal() Reply { return Reply{Status: http.StatusInternalServerError, ErrorCode: "INTERNAL"} }

// InvalidArgument is 400 INVALID_ARGUMENT.
func InvalidArgument() Reply {
	return Reply{Status: http.StatusBadRequest, ErrorCode: "INVALID_ARGUMENT"}
}

// ThirdPartyAuthError is 401 UNAUTHENTICATED with THIRD_PARTY_AUTH_ERROR
// (FCM's APNs or web push credentials were refused).
func ThirdPartyAuthError() Reply {
	return Reply{Status: http.StatusUnauthorized, ErrorCode: "THIRD_PARTY_AUTH_ERROR"}
}

// Stall holds the request until the client gives up or the mock closes.
func Stall() Reply { return Reply{Stall: true} }

// Push is one send request the mock received.
type Push struct {
	// Time is when the request arrived.
	Time time.Time
	// Method, Path and Proto are the request line ("HTTP/2.0").
	Method string
	Path   string
	Proto  string
	// Header holds the request headers.
	Header http.Header
	// Body is the raw request body; Message is its "message" object
	// decoded, nil if absent.
	Body    []byte
	Message map[string]any
	// Token is message.token; Data is message.data when every value is a
	// string.
	Token string
	Data  map[string]string
	// Authenticated is whether the request carried an access token the
	// mock issued.
	Authenticated bool
	// Status and ErrorCode are what the mock answered; a stalled request
	// has Status 0 and ErrorCode "stalled".
	Status    int
	ErrorCode string
	// Violations lists what was wrong with the request; empty when valid.
	Violations []string
}

// Server is a running mock. It is safe for concurrent use.
type Server struct {
	// URL is the mock's base URL (https://127.0.0.1:port).
	URL string

	opts Options
	srv  *httptest.Server
	done chan struct{}
	once sync.Once

	script mockprovider.Script[Reply]
	log    mockprovider.Log[Push]

	mu        sync.Mutex // guards what follows
	saKey     *rsa.PrivateKey
	saKeyID   string
	issued    map[string]bool
	authFails []string // token endpoint violations
	seq       int
}

// New starts a mock FCM server on loopback. It is closed when the test
// ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.ProjectID == "" {
		opts.ProjectID = DefaultProjectID
	}
	s := &Server{
		opts:   opts,
		done:   make(chan struct{}),
		issued: make(map[string]bool),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	mux.HandleFunc("/", s.serveSend)
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the mock, releasing stalled requests first. Idempotent.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// Endpoint is the URL to use in place of https://fcm.googleapis.com/v1.
func (s *Server) Endpoint() string { return s.URL + "/v1" }

// ProjectID returns the project the mock serves.
func (s *Server) ProjectID() string { return s.opts.ProjectID }

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

// ServiceAccount is the content of a service-account key file.
type ServiceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	ClientID     string `json:"client_id"`
	AuthURI      string `json:"auth_uri"`
	TokenURI     string `json:"token_uri"`
}

// ServiceAccount returns a service-account key that the mock's token
// endpoint accepts (its token_uri points at the mock). The key pair is
// generated on first use.
func (s *Server) ServiceAccount(t testing.TB) ServiceAccount {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saKey == nil {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatalf("fcmtest: generate service account key: %v", err)
		}
		var id [20]byte
		_, _ = rand.Read(id[:])
		s.saKey, s.saKeyID = key, hex.EncodeToString(id[:])
	}
	return s.serviceAccount(s.saKey, s.saKeyID)
}

// ForeignServiceAccount returns a service-account key for the mock's
// project and token endpoint but signed by key, which the mock does not
// know: its assertions are refused.
func (s *Server) ForeignServiceAccount(key *rsa.PrivateKey) ServiceAccount {
	return s.serviceAccount(key, "0000000000000000000000000000000000000000")
}

func (s *Server) serviceAccount(key *rsa.PrivateKey, keyID string) ServiceAccount {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		// An in-memory RSA key always marshals.
		panic(fmt.Sprintf("fcmtest: marshal key: %v", err))
	}
	return ServiceAccount{
		Type:         "service_account",
		ProjectID:    s.opts.ProjectID,
		PrivateKeyID: keyID,
		PrivateKey:   string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:  s.clientEmail(),
		ClientID:     "100000000000000000001",
		AuthURI:      "https://accounts.google.com/o/oauth2/auth",
		TokenURI:     s.URL + "/token",
	}
}

func (s *Server) clientEmail() string {
	return "firebase-adminsdk@" + s.opts.ProjectID + ".iam.gserviceaccount.com"
}

// WriteCredentials writes ServiceAccount as JSON to a fresh temporary
// directory and returns the file's path.
func (s *Server) WriteCredentials(t testing.TB) string {
	t.Helper()
	return WriteServiceAccount(t, s.ServiceAccount(t))
}

// WriteServiceAccount writes sa as JSON to a fresh temporary directory and
// returns the file's path.
func WriteServiceAccount(t testing.TB, sa ServiceAccount) string {
	t.Helper()
	data, err := json.MarshalIndent(sa, "", "  ")
	if err != nil {
		t.Fatalf("fcmtest: %v", err)
	}
	path := filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("fcmtest: write credentials: %v", err)
	}
	return path
}

// TokensIssued returns how many access tokens the token endpoint issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.issued)
}

// Enqueue adds one-shot answers, used in order by the next valid send
// requests whatever their token. They take precedence over ReplyTo.
func (s *Server) Enqueue(r ...Reply) { s.script.Enqueue(r...) }

// ReplyTo sets the answer to every valid request for token when the queue
// is empty, until changed.
func (s *Server) ReplyTo(token string, r Reply) { s.script.ReplyTo(token, r) }

// Pushes returns a copy of the send requests received so far, in order.
func (s *Server) Pushes() []Push { return s.log.All() }

// Violations returns every protocol violation seen so far, on the send and
// the token endpoints.
func (s *Server) Violations() []string {
	s.mu.Lock()
	out := slices.Clone(s.authFails)
	s.mu.Unlock()
	return append(out, mockprovider.Violations(s.log.All(),
		func(p Push) string { return p.Path },
		func(p Push) []string { return p.Violations })...)
}

// CheckNoViolations reports every protocol violation seen so far as a test
// error.
func (s *Server) CheckNoViolations(t testing.TB) {
	t.Helper()
	for _, v := range s.Violations() {
		t.Errorf("fcmtest: protocol violation: %s", v)
	}
}

// WaitPushes waits until the mock has received at least n send requests
// and returns them; it fails the test if that takes longer than timeout.
// Call it from the test's goroutine.
func (s *Server) WaitPushes(t testing.TB, n int, timeout time.Duration) []Push {
	t.Helper()
	return s.log.Wait(t, "fcmtest", n, timeout)
}

func (s *Server) record(p Push) { s.log.Record(p) }

func (s *Server) answer(token string) Reply { return s.script.Answer(token, OK()) }

// violation is one thing wrong with a request, with the answer FCM gives.
type violation struct {
	status int
	code   string // FCM error code for the details, if any
	msg    string
}

type checker struct{ v []violation }

func (c *checker) add(status int, code, format string, args ...any) {
	c.v = append(c.v, violation{status, code, fmt.Sprintf(format, args...)})
}

var (
	sendPath   = regexp.MustCompile(`^/v1/projects/([^/]+)/messages:send$`)
	ttlPattern = regexp.MustCompile(`^([0-9]+)(\.[0-9]{1,9})?s$`)
)

func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	p := Push{
		Time:   time.Now(),
		Method: r.Method,
		Path:   r.URL.Path,
		Proto:  r.Proto,
		Header: r.Header.Clone(),
	}
	var c checker
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		c.add(http.StatusBadRequest, "", "reading body: %v", err)
	}
	p.Body = body

	m := sendPath.FindStringSubmatch(r.URL.Path)
	switch {
	case m == nil:
		c.add(http.StatusNotFound, "", "path %q, want /v1/projects/{project}/messages:send", r.URL.Path)
	case m[1] != s.opts.ProjectID:
		c.add(http.StatusForbidden, "", "project %q, the credentials are for %q", m[1], s.opts.ProjectID)
	}
	if r.Method != http.MethodPost {
		c.add(http.StatusMethodNotAllowed, "", "method %s, want POST", r.Method)
	}
	p.Authenticated = s.checkAuth(&c, r.Header.Get("Authorization"))
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.add(http.StatusBadRequest, "INVALID_ARGUMENT", "Content-Type %q, want application/json", ct)
	}
	p.Message, p.Token, p.Data = checkBody(&c, body)

	if len(c.v) > 0 {
		for _, v := range c.v {
			p.Violations = append(p.Violations, v.msg)
		}
		p.Status, p.ErrorCode = c.v[0].status, c.v[0].code
		s.record(p)
		writeError(w, Reply{Status: c.v[0].status, ErrorCode: c.v[0].code}, c.v[0].msg)
		return
	}

	reply := s.answer(p.Token)
	if reply.Stall {
		p.ErrorCode = "stalled"
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
	p.Status, p.ErrorCode = status, reply.ErrorCode
	s.record(p)
	if reply.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((reply.RetryAfter+time.Second-1)/time.Second)))
	}
	if status != http.StatusOK {
		reply.Status = status
		writeError(w, reply, "")
		return
	}
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("projects/%s/messages/0:%d%%mock", s.opts.ProjectID, s.seq)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"name": name})
}

func (s *Server) checkAuth(c *checker, authz string) bool {
	if authz == "" {
		if s.opts.RequireAuth {
			c.add(http.StatusUnauthorized, "", "no Authorization header")
		}
		return false
	}
	scheme, tok, ok := strings.Cut(authz, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		c.add(http.StatusUnauthorized, "", "Authorization %q is not \"Bearer <token>\"", authz)
		return false
	}
	s.mu.Lock()
	known := s.issued[tok]
	s.mu.Unlock()
	if !known {
		c.add(http.StatusUnauthorized, "", "access token %q was not issued by the token endpoint", tok)
		return false
	}
	return true
}

// isMessageField reports whether k is a field of an FCM v1 Message.
func isMessageField(k string) bool {
	switch k {
	case "name", "data", "notification", "android", "webpush", "apns", "fcm_options", "token", "topic", "condition":
		return true
	}
	return false
}

// checkBody checks the request body and returns the message, its token
// and its data.
func checkBody(c *checker, body []byte) (map[string]any, string, map[string]string) {
	const bad = http.StatusBadRequest
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		c.add(bad, "INVALID_ARGUMENT", "body is not a JSON object: %v", err)
		return nil, "", nil
	}
	for k := range req {
		if k != "message" && k != "validate_only" {
			c.add(bad, "INVALID_ARGUMENT", "unknown request field %q", k)
		}
	}
	msg, ok := req["message"].(map[string]any)
	if !ok {
		c.add(bad, "INVALID_ARGUMENT", "no message object")
		return nil, "", nil
	}
	for k := range msg {
		if !isMessageField(k) {
			c.add(bad, "INVALID_ARGUMENT", "unknown message field %q", k)
		}
	}
	targets := 0
	for _, k := range []string{"token", "topic", "condition"} {
		if _, ok := msg[k]; ok {
			targets++
		}
	}
	if targets != 1 {
		c.add(bad, "INVALID_ARGUMENT", "message has %d of token, topic and condition, want exactly one", targets)
	}
	token, _ := msg["token"].(string)
	if _, ok := msg["token"]; ok && token == "" {
		c.add(bad, "INVALID_ARGUMENT", "message.token is empty or not a string")
	}

	var data map[string]string
	if raw, ok := msg["data"]; ok {
		obj, ok := raw.(map[string]any)
		if !ok {
			c.add(bad, "INVALID_ARGUMENT", "message.data is not an object")
		} else {
			data = make(map[string]string, len(obj))
			size := 0
			for k, v := range obj {
				str, ok := v.(string)
				if !ok {
					c.add(bad, "INVALID_ARGUMENT", "message.data[%q] is %T, FCM data values are strings", k, v)
					continue
				}
				if k == "from" || k == "notification" || k == "message_type" ||
					strings.HasPrefix(k, "google.") || strings.HasPrefix(k, "gcm.") {
					c.add(bad, "INVALID_ARGUMENT", "message.data key %q is reserved", k)
				}
				data[k] = str
				size += len(k) + len(str)
			}
			if size > maxDataBytes {
				c.add(bad, "INVALID_ARGUMENT", "message.data is %d bytes, limit %d", size, maxDataBytes)
			}
		}
	}
	if raw, ok := msg["android"]; ok {
		checkAndroid(c, raw)
	}
	return msg, token, data
}

func checkAndroid(c *checker, raw any) {
	const bad = http.StatusBadRequest
	a, ok := raw.(map[string]any)
	if !ok {
		c.add(bad, "INVALID_ARGUMENT", "message.android is not an object")
		return
	}
	if v, ok := a["priority"]; ok {
		switch v {
		case "high", "normal", "HIGH", "NORMAL":
		default:
			c.add(bad, "INVALID_ARGUMENT", "message.android.priority %v, want high or normal", v)
		}
	}
	if v, ok := a["ttl"]; ok {
		str, _ := v.(string)
		m := ttlPattern.FindStringSubmatch(str)
		if m == nil {
			c.add(bad, "INVALID_ARGUMENT", "message.android.ttl %v is not a duration like \"3.5s\"", v)
		} else if secs, err := strconv.ParseInt(m[1], 10, 64); err != nil || time.Duration(secs)*time.Second > maxTTL {
			c.add(bad, "INVALID_ARGUMENT", "message.android.ttl %v is over 28 days", v)
		}
	}
	if v, ok := a["collapse_key"]; ok {
		if str, _ := v.(string); str == "" {
			c.add(bad, "INVALID_ARGUMENT", "message.android.collapse_key %v is empty or not a string", v)
		}
	}
}

// canonical is the google.rpc status for an HTTP status.
func canonical(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusInternalServerError:
		return "INTERNAL"
	}
	return "UNKNOWN"
}

// writeError answers with a google.rpc error, with an FcmError detail when
// r has an ErrorCode.
func writeError(w http.ResponseWriter, r Reply, msg string) {
	status := r.GRPCStatus
	if status == "" {
		status = canonical(r.Status)
	}
	if msg == "" {
		msg = http.StatusText(r.Status)
	}
	e := map[string]any{"code": r.Status, "message": msg, "status": status}
	if r.ErrorCode != "" {
		e["details"] = []map[string]string{{"@type": fcmErrorType, "errorCode": r.ErrorCode}}
	}
	writeJSON(w, r.Status, map[string]any{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveToken is Google's OAuth 2.0 token endpoint for the JWT bearer
// grant (RFC 7523) that service accounts use.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.mu.Lock()
		s.authFails = append(s.authFails, "/token: "+msg)
		s.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": msg})
	}
	if r.Method != http.MethodPost {
		fail("method %s, want POST", r.Method)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail("form: %v", err)
		return
	}
	if g := r.PostForm.Get("grant_type"); g != jwtBearerGrant {
		fail("grant_type %q, want %q", g, jwtBearerGrant)
		return
	}
	if msg := s.checkAssertion(r.PostForm.Get("assertion"), time.Now()); msg != "" {
		fail("%s", msg)
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := "ya29.mock-" + hex.EncodeToString(b[:])
	s.mu.Lock()
	s.issued[tok] = true
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

// checkAssertion verifies a service account's RS256 assertion; it returns
// what is wrong, or "".
func (s *Server) checkAssertion(assertion string, now time.Time) string {
	s.mu.Lock()
	key, keyID := s.saKey, s.saKeyID
	s.mu.Unlock()
	if key == nil {
		return "no service account was created (call ServiceAccount or WriteCredentials)"
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return fmt.Sprintf("assertion has %d parts, want a JWT", len(parts))
	}
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Aud   string `json:"aud"`
		Scope string `json:"scope"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return "assertion header: " + err.Error()
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "assertion claims: " + err.Error()
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "assertion signature is not base64url"
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch {
	case hdr.Alg != "RS256":
		return fmt.Sprintf("assertion alg %q, want RS256", hdr.Alg)
	case rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig) != nil:
		return "invalid JWT signature: the assertion is not signed by the service account's key"
	case hdr.Kid != keyID:
		return fmt.Sprintf("assertion kid %q, want the private_key_id %q", hdr.Kid, keyID)
	case claims.Iss != s.clientEmail():
		return fmt.Sprintf("assertion iss %q, want %q", claims.Iss, s.clientEmail())
	case claims.Aud != s.URL+"/token":
		return fmt.Sprintf("assertion aud %q, want the token_uri %q", claims.Aud, s.URL+"/token")
	case !slices.Contains(strings.Fields(claims.Scope), Scope) && !slices.Contains(strings.Fields(claims.Scope), cloudPlatformScope):
		return fmt.Sprintf("assertion scope %q lacks %s", claims.Scope, Scope)
	case claims.Iat > now.Add(time.Minute).Unix():
		return "assertion iat is in the future"
	case claims.Exp <= now.Unix() || claims.Exp-claims.Iat > 3600:
		return fmt.Sprintf("assertion exp %d: expired or more than an hour after iat", claims.Exp)
	}
	return ""
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
