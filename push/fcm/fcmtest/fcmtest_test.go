package fcmtest_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"wren.im/wren/push/fcm/fcmtest"
)

func client(m *fcmtest.Server) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: m.CertPool()}, ForceAttemptHTTP2: true},
		Timeout:   10 * time.Second,
	}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func post(t *testing.T, m *fcmtest.Server, path, contentType, authz, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, m.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	c := client(m)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("answer %q is not JSON: %v", raw, err)
	}
	return a
}

// fcmError returns the error's status and FcmError code.
func fcmError(a answer) (status, code string) {
	e, _ := a.body["error"].(map[string]any)
	status, _ = e["status"].(string)
	details, _ := e["details"].([]any)
	for _, d := range details {
		d, _ := d.(map[string]any)
		if d["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError" {
			code, _ = d["errorCode"].(string)
		}
	}
	return status, code
}

const validBody = `{"message":{"token":"t1","data":{"important":"true"},"android":{"priority":"high","ttl":"30s","collapse_key":"c"}}}`

func TestValidAndScripted(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	path := "/v1/projects/" + m.ProjectID() + "/messages:send"
	a := post(t, m, path, "application/json", "", validBody)
	if name, _ := a.body["name"].(string); a.status != 200 || !strings.HasPrefix(name, "projects/"+m.ProjectID()+"/messages/") {
		t.Fatalf("valid request answered %d %v; violations %q", a.status, a.body, m.Violations())
	}
	m.Enqueue(fcmtest.QuotaExceeded(20 * time.Second))
	m.ReplyTo("t1", fcmtest.Unregistered())
	a = post(t, m, path, "application/json", "", validBody)
	if st, code := fcmError(a); a.status != 429 || st != "RESOURCE_EXHAUSTED" || code != "QUOTA_EXCEEDED" || a.header.Get("Retry-After") != "20" {
		t.Errorf("queued answer %d %s %s Retry-After %q, want 429 RESOURCE_EXHAUSTED QUOTA_EXCEEDED 20", a.status, st, code, a.header.Get("Retry-After"))
	}
	a = post(t, m, path, "application/json", "", validBody)
	if st, code := fcmError(a); a.status != 404 || st != "NOT_FOUND" || code != "UNREGISTERED" {
		t.Errorf("per-token answer %d %s %s, want 404 NOT_FOUND UNREGISTERED", a.status, st, code)
	}
	m.CheckNoViolations(t)
	ps := m.WaitPushes(t, 3, 5*time.Second)
	if ps[0].Proto != "HTTP/2.0" || ps[0].Token != "t1" || ps[0].Data["important"] != "true" {
		t.Errorf("recorded %+v", ps[0])
	}
}

// TestViolations proves that each check bites.
func TestViolations(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	path := "/v1/projects/" + m.ProjectID() + "/messages:send"
	for _, tc := range []struct {
		name   string
		path   string
		ctype  string
		authz  string
		body   string
		status int
		msg    string
	}{
		{"wrong project", "/v1/projects/other/messages:send", "", "", validBody, 403, "project"},
		{"wrong path", "/v1/messages:send", "", "", validBody, 404, "path"},
		{"not JSON content", path, "text/plain", "", validBody, 400, "Content-Type"},
		{"unknown token", path, "", "Bearer forged", validBody, 401, "not issued"},
		{"not JSON", path, "", "", `{`, 400, "not a JSON object"},
		{"no message", path, "", "", `{}`, 400, "no message"},
		{"unknown field", path, "", "", `{"message":{"token":"t","priority":"high"}}`, 400, `"priority"`},
		{"two targets", path, "", "", `{"message":{"token":"t","topic":"x"}}`, 400, "exactly one"},
		{"empty token", path, "", "", `{"message":{"token":""}}`, 400, "token is empty"},
		{"number in data", path, "", "", `{"message":{"token":"t","data":{"message-count":2}}}`, 400, "data values are strings"},
		{"reserved data key", path, "", "", `{"message":{"token":"t","data":{"google.x":"1"}}}`, 400, "reserved"},
		{"data too big", path, "", "", `{"message":{"token":"t","data":{"b":"` + strings.Repeat("x", 5000) + `"}}}`, 400, "limit 4096"},
		{"bad priority", path, "", "", `{"message":{"token":"t","android":{"priority":"urgent"}}}`, 400, "priority"},
		{"bad ttl", path, "", "", `{"message":{"token":"t","android":{"ttl":"10"}}}`, 400, "ttl"},
		{"ttl over 28 days", path, "", "", `{"message":{"token":"t","android":{"ttl":"2419201s"}}}`, 400, "28 days"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(m.Violations())
			ctype := tc.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			a := post(t, m, tc.path, ctype, tc.authz, tc.body)
			if a.status != tc.status {
				t.Errorf("answer %d %v, want %d", a.status, a.body, tc.status)
			}
			v := m.Violations()[before:]
			if len(v) == 0 || !strings.Contains(strings.Join(v, "\n"), tc.msg) {
				t.Errorf("violations %q, want one mentioning %q", v, tc.msg)
			}
		})
	}
}

func TestRequireAuth(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	a := post(t, m, "/v1/projects/"+m.ProjectID()+"/messages:send", "application/json", "", validBody)
	if st, _ := fcmError(a); a.status != 401 || st != "UNAUTHENTICATED" {
		t.Errorf("request without a token answered %d %s, want 401 UNAUTHENTICATED", a.status, st)
	}
	if len(m.Violations()) != 1 {
		t.Errorf("violations %q, want 1", m.Violations())
	}
}

// assertion signs a service-account assertion by hand, independently of
// the OAuth library the sender uses.
func assertion(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	cl, _ := json.Marshal(claims)
	signing := enc.EncodeToString(hdr) + "." + enc.EncodeToString(cl)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func TestTokenEndpoint(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	sa := m.ServiceAccount(t)
	block, _ := pem.Decode([]byte(sa.PrivateKey))
	if block == nil {
		t.Fatal("service account key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*rsa.PrivateKey)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": sa.ClientEmail, "aud": sa.TokenURI, "scope": fcmtest.Scope, "iat": now, "exp": now + 3600}
		if edit != nil {
			edit(c)
		}
		return c
	}
	form := func(a string) string {
		return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {a}}.Encode()
	}
	const formType = "application/x-www-form-urlencoded"

	a := post(t, m, "/token", formType, "", form(assertion(t, key, sa.PrivateKeyID, claims(nil))))
	access, _ := a.body["access_token"].(string)
	if a.status != 200 || access == "" {
		t.Fatalf("valid assertion answered %d %v; violations %q", a.status, a.body, m.Violations())
	}
	send := post(t, m, "/v1/projects/"+m.ProjectID()+"/messages:send", "application/json", "Bearer "+access, validBody)
	if send.status != 200 {
		t.Errorf("send with the issued token answered %d %v", send.status, send.body)
	}
	m.CheckNoViolations(t)

	for _, tc := range []struct {
		name      string
		assertion string
		msg       string
	}{
		{"foreign key", assertion(t, other, sa.PrivateKeyID, claims(nil)), "signature"},
		{"wrong kid", assertion(t, key, "abc", claims(nil)), "kid"},
		{"wrong issuer", assertion(t, key, sa.PrivateKeyID, claims(func(c map[string]any) { c["iss"] = "x@y" })), "iss"},
		{"wrong audience", assertion(t, key, sa.PrivateKeyID, claims(func(c map[string]any) { c["aud"] = "https://x" })), "aud"},
		{"no FCM scope", assertion(t, key, sa.PrivateKeyID, claims(func(c map[string]any) { c["scope"] = "email" })), "scope"},
		{"expired", assertion(t, key, sa.PrivateKeyID, claims(func(c map[string]any) { c["iat"], c["exp"] = now-7200, now-3600 })), "expired"},
		{"garbage", "x.y", "parts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(m.Violations())
			a := post(t, m, "/token", formType, "", form(tc.assertion))
			if a.status != 400 || a.body["error"] != "invalid_grant" {
				t.Errorf("answer %d %v, want 400 invalid_grant", a.status, a.body)
			}
			v := m.Violations()[before:]
			if len(v) != 1 || !strings.Contains(v[0], tc.msg) {
				t.Errorf("violations %q, want one mentioning %q", v, tc.msg)
			}
		})
	}
}
