package fcm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wren.im/wren/push/fcm"
	"wren.im/wren/push/fcm/fcmtest"
	"wren.im/wren/push/provider"
)

const tok = "fcm-registration-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"

// newSender returns a no-auth Sender for mock m.
func newSender(t *testing.T, m *fcmtest.Server) *fcm.Sender {
	t.Helper()
	s, err := fcm.New(t.Context(), fcm.Config{
		ProjectID: m.ProjectID(),
		Endpoint:  m.URL, // "/v1" is appended
		NoAuth:    true,
		RootCAs:   m.CertPool(),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.CloseIdleConnections)
	return s
}

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func android(t *testing.T, p fcmtest.Push) map[string]any {
	t.Helper()
	a, ok := p.Message["android"].(map[string]any)
	if !ok {
		t.Fatalf("message %s has no android object", p.Body)
	}
	return a
}

func TestSendImportant(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	s := newSender(t, m)
	if s.Name() != provider.FCM {
		t.Errorf("Name() = %q, want %q", s.Name(), provider.FCM)
	}
	id, err := s.Send(timeout(t, 10*time.Second), provider.Push{
		Token:        tok,
		Important:    true,
		MessageCount: 2,
		LastSender:   "juliet@example.com",
		LastBody:     "Wherefore art thou?",
		CollapseID:   "romeo@example.com",
		Expiration:   time.Now().Add(time.Hour + 30*time.Second),
		ID:           "0f8fad5b-d9cb-469f-a165-70867728950e",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if want := "projects/" + m.ProjectID() + "/messages/"; !strings.HasPrefix(id, want) {
		t.Errorf("id = %q, want FCM's message name %s...", id, want)
	}
	m.CheckNoViolations(t)
	p := m.WaitPushes(t, 1, 5*time.Second)[0]
	if p.Proto != "HTTP/2.0" || p.Path != "/v1/projects/"+m.ProjectID()+"/messages:send" || p.Token != tok {
		t.Errorf("push %s %s token %q", p.Proto, p.Path, p.Token)
	}
	want := map[string]string{
		"important":           "true",
		"message-count":       "2",
		"last-message-sender": "juliet@example.com",
		"last-message-body":   "Wherefore art thou?",
	}
	if fmt.Sprint(p.Data) != fmt.Sprint(want) {
		t.Errorf("data = %v, want %v", p.Data, want)
	}
	a := android(t, p)
	if a["priority"] != "high" || a["collapse_key"] != "romeo@example.com" {
		t.Errorf("android = %v, want priority high and the collapse key", a)
	}
	if ttl := a["ttl"]; ttl != "3629s" && ttl != "3630s" {
		t.Errorf("android.ttl = %v, want about 3630s", ttl)
	}
	if _, ok := p.Message["notification"]; ok {
		t.Errorf("message %s has a notification; want data only", p.Body)
	}
}

func TestSendBackground(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	s := newSender(t, m)
	if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m.CheckNoViolations(t)
	p := m.WaitPushes(t, 1, 5*time.Second)[0]
	if len(p.Data) != 1 || p.Data["important"] != "false" {
		t.Errorf("data = %v, want only important=false", p.Data)
	}
	a := android(t, p)
	if a["priority"] != "normal" || a["ttl"] != "0s" {
		t.Errorf("android = %v, want priority normal and ttl 0s", a)
	}
	if _, ok := a["collapse_key"]; ok {
		t.Errorf("android = %v has a collapse key", a)
	}
}

func TestSendLongBody(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	s := newSender(t, m)
	long := strings.Repeat("ü", 3000)
	if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok, Important: true, LastBody: long, LastSender: long}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m.CheckNoViolations(t)
	d := m.WaitPushes(t, 1, 5*time.Second)[0].Data
	if b := d["last-message-body"]; len(b) > 1024 || !strings.HasSuffix(b, "…") {
		t.Errorf("body sent as %d bytes, want at most 1024 ending in …", len(b))
	}
	if s := d["last-message-sender"]; len(s) > 256 {
		t.Errorf("sender sent as %d bytes, want at most 256", len(s))
	}
}

func TestSendConcurrent(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	s := newSender(t, m)
	const n = 20
	ctx := timeout(t, 10*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if _, err := s.Send(ctx, provider.Push{Token: fmt.Sprintf("%s-%d", tok, i), Important: i%2 == 0}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	if got := len(m.WaitPushes(t, n, 5*time.Second)); got != n {
		t.Errorf("mock got %d pushes, want %d", got, n)
	}
	m.CheckNoViolations(t)
}

func TestSendFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reply      fcmtest.Reply
		kind       provider.Kind
		status     int
		reason     string
		retryAfter time.Duration
	}{
		{"404 UNREGISTERED", fcmtest.Unregistered(), provider.DeadToken, 404, "UNREGISTERED", 0},
		{"403 SENDER_ID_MISMATCH", fcmtest.SenderIDMismatch(), provider.DeadToken, 403, "SENDER_ID_MISMATCH", 0},
		{"429 QUOTA_EXCEEDED with Retry-After", fcmtest.QuotaExceeded(30 * time.Second), provider.Retry, 429, "QUOTA_EXCEEDED", 30 * time.Second},
		{"503 UNAVAILABLE with Retry-After", fcmtest.Unavailable(7 * time.Second), provider.Retry, 503, "UNAVAILABLE", 7 * time.Second},
		{"503 UNAVAILABLE beyond the SDK's limit", fcmtest.Unavailable(10 * time.Minute), provider.Retry, 503, "UNAVAILABLE", 10 * time.Minute},
		{"503 without Retry-After", fcmtest.Unavailable(0), provider.Retry, 503, "UNAVAILABLE", 0},
		{"500 INTERNAL", fcmtest.Internal(), provider.Retry, 500, "INTERNAL", 0},
		{"502 without details", fcmtest.Reply{Status: 502}, provider.Retry, 502, "UNKNOWN", 0},
		{"400 INVALID_ARGUMENT", fcmtest.InvalidArgument(), provider.Permanent, 400, "INVALID_ARGUMENT", 0},
		{"401 THIRD_PARTY_AUTH_ERROR", fcmtest.ThirdPartyAuthError(), provider.Permanent, 401, "THIRD_PARTY_AUTH_ERROR", 0},
		{"403 PERMISSION_DENIED", fcmtest.Reply{Status: 403}, provider.Permanent, 403, "PERMISSION_DENIED", 0},
		{"404 NOT_FOUND without FCM code", fcmtest.Reply{Status: 404}, provider.Permanent, 404, "NOT_FOUND", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fcmtest.New(t, fcmtest.Options{})
			s := newSender(t, m)
			m.ReplyTo(tok, tc.reply)
			start := time.Now()
			id, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok})
			elapsed := time.Since(start)
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Send = %q, %v; want a *provider.Error", id, err)
			}
			if pe.Kind != tc.kind || pe.Status != tc.status || pe.Reason != tc.reason || pe.RetryAfter != tc.retryAfter {
				t.Errorf("error = {%v %d %q %v}, want {%v %d %q %v}", pe.Kind, pe.Status, pe.Reason, pe.RetryAfter,
					tc.kind, tc.status, tc.reason, tc.retryAfter)
			}
			// One request, answered at once: the SDK's own retries and
			// backoff are stopped.
			if n := len(m.Pushes()); n != 1 {
				t.Errorf("mock got %d requests, want 1 (no retries inside Send)", n)
			}
			if elapsed > 3*time.Second {
				t.Errorf("Send took %v; the SDK waited to retry", elapsed)
			}
			m.CheckNoViolations(t)
		})
	}
}

func TestSendDeadline(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	s := newSender(t, m)
	m.Enqueue(fcmtest.Stall())
	start := time.Now()
	_, err := s.Send(timeout(t, 300*time.Millisecond), provider.Push{Token: tok})
	elapsed := time.Since(start)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Retry || pe.Status != 0 || pe.Reason != "deadline exceeded" {
		t.Fatalf("Send against a stalled server = %v, want Retry \"deadline exceeded\"", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Send took %v with a 300ms deadline", elapsed)
	}
	if n := len(m.WaitPushes(t, 1, 5*time.Second)); n != 1 {
		t.Errorf("mock got %d requests, want 1", n)
	}
}

func TestSendServerClosed(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	s := newSender(t, m)
	if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok}); err != nil {
		t.Fatalf("Send before close: %v", err)
	}
	m.Close()
	start := time.Now()
	_, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Retry || pe.Status != 0 || pe.Err == nil {
		t.Fatalf("Send to a closed server = %v, want a Retry with the network error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send took %v; the SDK backed off and retried", d)
	}
}

func TestSendEmptyToken(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{})
	s := newSender(t, m)
	_, err := s.Send(timeout(t, 10*time.Second), provider.Push{})
	if provider.KindOf(err) != provider.DeadToken {
		t.Errorf("Send(no token) = %v, want DeadToken", err)
	}
	if n := len(m.Pushes()); n != 0 {
		t.Errorf("mock got %d requests, want 0", n)
	}
}

// TestServiceAccount runs the real authentication path: the sender signs
// an assertion with the service account's key, the mock's token endpoint
// verifies it and issues an access token, and the mock's send endpoint
// requires it.
func TestServiceAccount(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	s, err := fcm.New(t.Context(), fcm.Config{
		CredentialsFile: m.WriteCredentials(t), // project id from the file
		Endpoint:        m.Endpoint(),
		RootCAs:         m.CertPool(),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.CloseIdleConnections()
	for range 2 {
		if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok, Important: true}); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	m.CheckNoViolations(t)
	for _, p := range m.WaitPushes(t, 2, 5*time.Second) {
		if !p.Authenticated {
			t.Errorf("push without an issued access token (Authorization %q)", p.Header.Get("Authorization"))
		}
	}
	if n := m.TokensIssued(); n != 1 {
		t.Errorf("%d access tokens issued for 2 pushes, want 1 (cached)", n)
	}
}

// TestForeignKey proves that the token endpoint's check bites: an
// assertion signed by another key is refused, and the push fails for
// good.
func TestForeignKey(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	m.ServiceAccount(t) // the mock knows this one
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fcm.New(t.Context(), fcm.Config{
		CredentialsFile: fcmtest.WriteServiceAccount(t, m.ForeignServiceAccount(other)),
		Endpoint:        m.Endpoint(),
		RootCAs:         m.CertPool(),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.CloseIdleConnections()
	_, err = s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Permanent || pe.Reason != "access token refused: invalid_grant" {
		t.Fatalf("Send with a foreign key = %v, want Permanent \"access token refused: invalid_grant\"", err)
	}
	v := m.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "signature") {
		t.Errorf("violations = %q, want one about the signature", v)
	}
	if n := len(m.Pushes()); n != 0 {
		t.Errorf("mock got %d sends without a token, want 0", n)
	}
}

// TestUnknownToken proves that the send endpoint's check bites: a request
// without an issued token is refused when the mock requires one.
func TestUnknownToken(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{RequireAuth: true})
	s := newSender(t, m) // sends without credentials
	_, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Permanent || pe.Status != 401 || pe.Reason != "UNAUTHENTICATED" {
		t.Fatalf("Send without credentials = %v, want Permanent 401 UNAUTHENTICATED", err)
	}
	if v := m.Violations(); len(v) != 1 || !strings.Contains(v[0], "Authorization") {
		t.Errorf("violations = %q, want one about Authorization", v)
	}
}

func TestWrongProject(t *testing.T) {
	m := fcmtest.New(t, fcmtest.Options{ProjectID: "the-right-one"})
	s, err := fcm.New(t.Context(), fcm.Config{ProjectID: "another-one", Endpoint: m.Endpoint(), NoAuth: true, RootCAs: m.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseIdleConnections()
	_, err = s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Permanent || pe.Status != 403 {
		t.Fatalf("Send to another project = %v, want Permanent 403", err)
	}
	if len(m.Violations()) != 1 {
		t.Errorf("violations = %q, want 1", m.Violations())
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, v any) string {
		t.Helper()
		var data []byte
		if s, ok := v.(string); ok {
			data = []byte(s)
		} else {
			var err error
			if data, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pemKey(t, rsaKey)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sa := func(edit func(map[string]string)) map[string]string {
		m := map[string]string{
			"type":         "service_account",
			"project_id":   "wren-prod",
			"private_key":  rsaPEM,
			"client_email": "push@wren-prod.iam.gserviceaccount.com",
			"token_uri":    "https://oauth2.googleapis.com/token",
		}
		if edit != nil {
			edit(m)
		}
		return m
	}
	good := write("good.json", sa(nil))
	noProject := write("noproject.json", sa(func(m map[string]string) { delete(m, "project_id") }))

	for _, tc := range []struct {
		name string
		cfg  fcm.Config
		want []string
	}{
		{"nothing", fcm.Config{}, []string{"CredentialsFile is required", "Service accounts"}},
		{"no auth without endpoint", fcm.Config{NoAuth: true, ProjectID: "p-1"}, []string{"NoAuth is only for a test Endpoint"}},
		{"no auth and credentials", fcm.Config{NoAuth: true, CredentialsFile: good, Endpoint: "https://127.0.0.1:1"}, []string{"keep one"}},
		{"no auth without project", fcm.Config{NoAuth: true, Endpoint: "https://127.0.0.1:1"}, []string{"ProjectID is required"}},
		{"bad endpoint", fcm.Config{NoAuth: true, ProjectID: "p-1", Endpoint: "http://127.0.0.1:1"}, []string{"Endpoint", "https://"}},
		{"missing file", fcm.Config{CredentialsFile: filepath.Join(dir, "nope.json")}, []string{"CredentialsFile: cannot read", "nope.json"}},
		{"not JSON", fcm.Config{CredentialsFile: write("notjson.json", "{")}, []string{"is not JSON"}},
		{"user credentials", fcm.Config{CredentialsFile: write("user.json", map[string]string{"type": "authorized_user"})}, []string{`"authorized_user"`, "not a service-account key"}},
		{"no key", fcm.Config{CredentialsFile: write("nokey.json", sa(func(m map[string]string) { delete(m, "private_key"); delete(m, "client_email") }))}, []string{"lacks client_email and private_key"}},
		{"key not PEM", fcm.Config{CredentialsFile: write("nopem.json", sa(func(m map[string]string) { m["private_key"] = "xyz" }))}, []string{"private_key is not PEM"}},
		{"EC key", fcm.Config{CredentialsFile: write("ec.json", sa(func(m map[string]string) { m["private_key"] = pemKey(t, ecKey) }))}, []string{"not an RSA key"}},
		{"plain token_uri", fcm.Config{CredentialsFile: write("http.json", sa(func(m map[string]string) { m["token_uri"] = "http://example.com/token" }))}, []string{"token_uri"}},
		{"no project anywhere", fcm.Config{CredentialsFile: noProject}, []string{"ProjectID is required", "project_id"}},
		{"bad project", fcm.Config{CredentialsFile: good, ProjectID: "My Project"}, []string{`ProjectID "My Project"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := fcm.New(t.Context(), tc.cfg)
			if err == nil {
				s.CloseIdleConnections()
				t.Fatalf("New succeeded, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	for _, cfg := range []fcm.Config{
		{CredentialsFile: good},
		{CredentialsFile: noProject, ProjectID: "wren-prod"},
	} {
		s, err := fcm.New(t.Context(), cfg)
		if err != nil {
			t.Errorf("New(%+v) = %v", cfg, err)
			continue
		}
		s.CloseIdleConnections()
	}
}

func pemKey(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
