package apnstest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"wren.im/wren/push/apns/apnstest"
)

const token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// signJWT makes an APNs provider token by hand, independently of the
// library the sender uses.
func signJWT(t *testing.T, key *ecdsa.PrivateKey, kid, iss string, iat time.Time) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": kid})
	claims, _ := json.Marshal(map[string]any{"iss": iss, "iat": iat.Unix()})
	signing := enc.EncodeToString(hdr) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig)
}

func mockKey(t *testing.T, m *apnstest.Server) *ecdsa.PrivateKey {
	t.Helper()
	path := m.WriteAuthKey(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("%s is not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k.(*ecdsa.PrivateKey)
}

func h2Client(m *apnstest.Server, http2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: m.CertPool()},
		Protocols:       new(http.Protocols),
	}
	if http2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type request struct {
	method string
	path   string
	header map[string]string
	body   string
	http1  bool
}

// valid returns a request the mock accepts, signed with key.
func valid(t *testing.T, m *apnstest.Server, key *ecdsa.PrivateKey) request {
	return request{
		method: http.MethodPost,
		path:   "/3/device/" + token,
		header: map[string]string{
			"authorization":   "bearer " + signJWT(t, key, m.KeyID(), m.TeamID(), time.Now()),
			"apns-topic":      "im.example.chat",
			"apns-push-type":  "background",
			"apns-priority":   "5",
			"apns-expiration": "0",
		},
		body: `{"aps":{"content-available":1}}`,
	}
}

func do(t *testing.T, m *apnstest.Server, r request) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), r.method, m.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	c := h2Client(m, !r.http1)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var reason struct {
		Reason string `json:"reason"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &reason); err != nil {
			t.Fatalf("answer %q is not APNs' JSON: %v", body, err)
		}
	}
	return resp.StatusCode, reason.Reason, resp.Header
}

func TestValidRequest(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	key := mockKey(t, m)
	status, reason, hdr := do(t, m, valid(t, m, key))
	if status != 200 || reason != "" {
		t.Fatalf("valid request answered %d %q; violations %q", status, reason, m.Violations())
	}
	if id := hdr.Get("apns-id"); len(id) != 36 {
		t.Errorf("apns-id %q, want a generated UUID", id)
	}
	m.CheckNoViolations(t)
	p := m.WaitPushes(t, 1, 5*time.Second)[0]
	if p.Token != token || p.Auth != "token" || p.Status != 200 || p.Payload["aps"] == nil {
		t.Errorf("recorded %+v", p)
	}
}

// TestViolations proves that each check bites: the mock answers like APNs
// and records the violation.
func TestViolations(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{Topics: []string{"im.example.chat"}})
	key := mockKey(t, m)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		edit   func(*request)
		status int
		reason string
		msg    string // in the recorded violation
	}{
		{"wrong key", func(r *request) {
			r.header["authorization"] = "bearer " + signJWT(t, other, m.KeyID(), m.TeamID(), time.Now())
		}, 403, "InvalidProviderToken", "signature"},
		{"wrong kid", func(r *request) {
			r.header["authorization"] = "bearer " + signJWT(t, key, "OTHERKEY12", m.TeamID(), time.Now())
		}, 403, "InvalidProviderToken", "kid"},
		{"wrong team", func(r *request) {
			r.header["authorization"] = "bearer " + signJWT(t, key, m.KeyID(), "OTHERTEAM1", time.Now())
		}, 403, "InvalidProviderToken", "iss"},
		{"old token", func(r *request) {
			r.header["authorization"] = "bearer " + signJWT(t, key, m.KeyID(), m.TeamID(), time.Now().Add(-2*time.Hour))
		}, 403, "ExpiredProviderToken", "hour old"},
		{"token from the future", func(r *request) {
			r.header["authorization"] = "bearer " + signJWT(t, key, m.KeyID(), m.TeamID(), time.Now().Add(time.Hour))
		}, 403, "InvalidProviderToken", "future"},
		{"garbage token", func(r *request) { r.header["authorization"] = "bearer x.y" }, 403, "InvalidProviderToken", "parts"},
		{"no token", func(r *request) { delete(r.header, "authorization") }, 403, "MissingProviderToken", "no authorization"},
		{"GET", func(r *request) { r.method = http.MethodGet }, 405, "MethodNotAllowed", "method GET"},
		{"bad path", func(r *request) { r.path = "/2/device/" + token }, 404, "BadPath", "path"},
		{"token not hex", func(r *request) { r.path = "/3/device/xyz" }, 400, "BadDeviceToken", "hexadecimal"},
		{"HTTP/1.1", func(r *request) { r.http1 = true }, 400, "BadProtocol", "HTTP/2 only"},
		{"no topic", func(r *request) { delete(r.header, "apns-topic") }, 400, "MissingTopic", "apns-topic"},
		{"other topic", func(r *request) { r.header["apns-topic"] = "im.example.evil" }, 400, "TopicDisallowed", "im.example.evil"},
		{"no push type", func(r *request) { delete(r.header, "apns-push-type") }, 400, "InvalidPushType", "apns-push-type"},
		{"voip push type", func(r *request) { r.header["apns-push-type"] = "voip" }, 400, "InvalidPushType", "voip"},
		{"background at 10", func(r *request) { r.header["apns-priority"] = "10" }, 400, "BadPriority", "want 5"},
		{"priority 7", func(r *request) { r.header["apns-priority"] = "7" }, 400, "BadPriority", "not 1, 5 or 10"},
		{"no expiration", func(r *request) { delete(r.header, "apns-expiration") }, 400, "BadExpirationDate", "apns-expiration"},
		{"bad expiration", func(r *request) { r.header["apns-expiration"] = "tomorrow" }, 400, "BadExpirationDate", "tomorrow"},
		{"long collapse id", func(r *request) { r.header["apns-collapse-id"] = strings.Repeat("x", 65) }, 400, "BadCollapseId", "65 bytes"},
		{"bad apns-id", func(r *request) { r.header["apns-id"] = "ABC" }, 400, "BadMessageId", "ABC"},
		{"empty payload", func(r *request) { r.body = "" }, 400, "PayloadEmpty", "empty"},
		{"payload too large", func(r *request) {
			r.body = `{"aps":{"content-available":1},"x":"` + strings.Repeat("a", 5000) + `"}`
		}, 413, "PayloadTooLarge", "limit 4096"},
		{"not JSON", func(r *request) { r.body = "{" }, 400, "BadPayload", "JSON"},
		{"no aps", func(r *request) { r.body = `{"x":1}` }, 400, "BadPayload", "no aps"},
		{"background with alert", func(r *request) {
			r.body = `{"aps":{"content-available":1,"alert":"hi"}}`
		}, 400, "BadPayload", "aps.alert"},
		{"background without content-available", func(r *request) { r.body = `{"aps":{}}` }, 400, "BadPayload", "content-available"},
		{"alert without alert", func(r *request) {
			r.header["apns-push-type"], r.header["apns-priority"] = "alert", "10"
			r.body = `{"aps":{"mutable-content":1}}`
		}, 400, "BadPayload", "without aps.alert"},
		{"alert without mutable-content", func(r *request) {
			r.header["apns-push-type"], r.header["apns-priority"] = "alert", "10"
			r.body = `{"aps":{"alert":{"title":"t"}}}`
		}, 400, "BadPayload", "mutable-content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(m.Violations())
			r := valid(t, m, key)
			tc.edit(&r)
			status, reason, _ := do(t, m, r)
			if status != tc.status || reason != tc.reason {
				t.Errorf("answer %d %q, want %d %q", status, reason, tc.status, tc.reason)
			}
			v := m.Violations()[before:]
			if len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), tc.msg) {
				t.Errorf("violations %q, want one mentioning %q", v, tc.msg)
			}
		})
	}
}

func TestScriptedAnswers(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	key := mockKey(t, m)
	since := time.UnixMilli(1700000000000)
	m.ReplyTo(token, apnstest.Unregistered(since))
	m.Enqueue(apnstest.TooManyRequests(90*time.Second), apnstest.ServiceUnavailable(1500*time.Millisecond))

	status, reason, hdr := do(t, m, valid(t, m, key))
	if status != 429 || reason != "TooManyRequests" || hdr.Get("Retry-After") != "90" {
		t.Errorf("1st answer %d %q Retry-After %q, want 429 TooManyRequests 90", status, reason, hdr.Get("Retry-After"))
	}
	status, reason, hdr = do(t, m, valid(t, m, key))
	if status != 503 || reason != "ServiceUnavailable" || hdr.Get("Retry-After") != "2" {
		t.Errorf("2nd answer %d %q Retry-After %q, want 503 ServiceUnavailable 2", status, reason, hdr.Get("Retry-After"))
	}
	r := valid(t, m, key)
	req, err := http.NewRequestWithContext(t.Context(), r.method, m.URL+r.path, bytes.NewReader([]byte(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	c := h2Client(m, true)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Reason    string `json:"reason"`
		Timestamp int64  `json:"timestamp"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 410 || body.Reason != "Unregistered" || body.Timestamp != since.UnixMilli() {
		t.Errorf("3rd answer %d %+v, want 410 Unregistered with timestamp %d", resp.StatusCode, body, since.UnixMilli())
	}
	ps := m.WaitPushes(t, 3, 5*time.Second)
	for i, want := range []int{429, 503, 410} {
		if ps[i].Status != want {
			t.Errorf("push %d recorded with status %d, want %d", i, ps[i].Status, want)
		}
	}
	m.CheckNoViolations(t)
	if got := strconv.Itoa(len(m.Pushes())); got != "3" {
		t.Errorf("Pushes() has %s entries, want 3", got)
	}
}
