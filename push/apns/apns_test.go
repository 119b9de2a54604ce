package apns_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"wren.im/wren/push/apns"
	"wren.im/wren/push/apns/apnstest"
	"wren.im/wren/push/provider"
)

const (
	topic = "im.example.chat"
	tok1  = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	tok2  = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
)

// newSender returns a token-auth Sender for mock m; edit adjusts the
// config first.
func newSender(t *testing.T, m *apnstest.Server, edit func(*apns.Config)) *apns.Sender {
	t.Helper()
	cfg := apns.Config{
		AuthKeyFile: m.WriteAuthKey(t),
		KeyID:       m.KeyID(),
		TeamID:      m.TeamID(),
		Topic:       topic,
		Endpoint:    m.URL,
		RootCAs:     m.CertPool(),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := apns.New(cfg)
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

func aps(t *testing.T, p apnstest.Push) map[string]any {
	t.Helper()
	a, ok := p.Payload["aps"].(map[string]any)
	if !ok {
		t.Fatalf("payload %s has no aps dictionary", p.Body)
	}
	return a
}

func TestSendImportant(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{Topics: []string{topic}})
	s := newSender(t, m, nil)
	if s.Name() != provider.APNs {
		t.Errorf("Name() = %q, want %q", s.Name(), provider.APNs)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	id, err := s.Send(timeout(t, 10*time.Second), provider.Push{
		Token:        tok1,
		Important:    true,
		MessageCount: 3,
		LastSender:   "juliet@example.com",
		LastBody:     "Wherefore art thou?",
		CollapseID:   "romeo@example.com",
		Expiration:   exp,
		ID:           "0F8FAD5B-D9CB-469F-A165-70867728950E",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if want := "0f8fad5b-d9cb-469f-a165-70867728950e"; id != want {
		t.Errorf("id = %q, want the push's id in canonical form %q", id, want)
	}
	m.CheckNoViolations(t)
	p := m.WaitPushes(t, 1, 5*time.Second)[0]
	if p.Proto != "HTTP/2.0" || p.Auth != "token" || p.Token != tok1 {
		t.Errorf("push over %s, auth %q, token %q; want HTTP/2.0, token, %s", p.Proto, p.Auth, p.Token, tok1)
	}
	for h, want := range map[string]string{
		"apns-topic":       topic,
		"apns-push-type":   "alert",
		"apns-priority":    "10",
		"apns-expiration":  strconv.FormatInt(exp.Unix(), 10),
		"apns-collapse-id": "romeo@example.com",
		"apns-id":          "0f8fad5b-d9cb-469f-a165-70867728950e",
	} {
		if got := p.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	a := aps(t, p)
	alert, _ := a["alert"].(map[string]any)
	if alert["title"] != "juliet@example.com" || alert["body"] != "Wherefore art thou?" {
		t.Errorf("aps.alert = %v, want the sender as title and the body", a["alert"])
	}
	if a["mutable-content"] != float64(1) || a["sound"] != "default" {
		t.Errorf("aps = %v, want mutable-content 1 and sound default", a)
	}
	if _, ok := a["content-available"]; ok {
		t.Errorf("alert push has content-available: %v", a)
	}
	if p.Payload["message-count"] != float64(3) || p.Payload["last-message-sender"] != "juliet@example.com" {
		t.Errorf("custom keys = %v, want message-count 3 and last-message-sender", p.Payload)
	}
}

func TestSendBackground(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, nil)
	id, err := s.Send(timeout(t, 10*time.Second), provider.Push{
		Token: tok2,
		Topic: "im.example.other",
		ID:    "not-a-uuid",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("id = %q, want the UUID APNs generated", id)
	}
	m.CheckNoViolations(t)
	p := m.WaitPushes(t, 1, 5*time.Second)[0]
	for h, want := range map[string]string{
		"apns-topic":      "im.example.other",
		"apns-push-type":  "background",
		"apns-priority":   "5",
		"apns-expiration": "0",
	} {
		if got := p.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	for _, h := range []string{"apns-collapse-id", "apns-id"} {
		if v, ok := p.Header[http.CanonicalHeaderKey(h)]; ok {
			t.Errorf("%s = %q, want none", h, v)
		}
	}
	a := aps(t, p)
	if len(a) != 1 || a["content-available"] != float64(1) {
		t.Errorf("aps = %v, want only content-available 1", a)
	}
	if len(p.Payload) != 1 {
		t.Errorf("payload = %s, want only aps (no count, no sender)", p.Body)
	}
}

func TestSendNeutralAlert(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, nil)
	long := strings.Repeat("é", 2000)
	collapse := strings.Repeat("c", 100)
	if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1, Important: true, CollapseID: collapse}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1, Important: true, LastBody: long}); err != nil {
		t.Fatalf("Send long body: %v", err)
	}
	m.CheckNoViolations(t)
	ps := m.WaitPushes(t, 2, 5*time.Second)
	alert, _ := aps(t, ps[0])["alert"].(map[string]any)
	if alert["title"] != apns.NeutralTitle || alert["body"] != nil {
		t.Errorf("alert = %v, want title %q and no body", alert, apns.NeutralTitle)
	}
	if c := ps[0].Header.Get("apns-collapse-id"); len(c) != 64 || c == collapse[:64] {
		t.Errorf("collapse id %q: want a 64-byte digest of the long id", c)
	}
	if _, ok := ps[0].Payload["last-message-sender"]; ok {
		t.Errorf("payload %s has last-message-sender without a sender", ps[0].Body)
	}
	body, _ := aps(t, ps[1])["alert"].(map[string]any)["body"].(string)
	if len(body) > 1024 || !strings.HasSuffix(body, "…") || !strings.HasPrefix(long, strings.TrimSuffix(body, "…")) {
		t.Errorf("long body sent as %d bytes %q..., want a prefix of at most 1024 bytes ending in …", len(body), body[:min(len(body), 20)])
	}
}

func TestSendConcurrent(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, nil)
	const n = 20
	ctx := timeout(t, 10*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			tok := fmt.Sprintf("%064x", i)
			if _, err := s.Send(ctx, provider.Push{Token: tok, Important: i%2 == 0, LastBody: "hi"}); err != nil {
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
	since := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		reply      apnstest.Reply
		kind       provider.Kind
		status     int
		reason     string
		retryAfter time.Duration
	}{
		{"410 Unregistered", apnstest.Unregistered(since), provider.DeadToken, 410, "Unregistered", 0},
		{"410 ExpiredToken", apnstest.Reply{Status: 410, Reason: "ExpiredToken"}, provider.DeadToken, 410, "ExpiredToken", 0},
		{"400 BadDeviceToken", apnstest.BadDeviceToken(), provider.DeadToken, 400, "BadDeviceToken", 0},
		{"400 DeviceTokenNotForTopic", apnstest.Reply{Status: 400, Reason: "DeviceTokenNotForTopic"}, provider.DeadToken, 400, "DeviceTokenNotForTopic", 0},
		{"429 with Retry-After", apnstest.TooManyRequests(30 * time.Second), provider.Retry, 429, "TooManyRequests", 30 * time.Second},
		{"503 with Retry-After", apnstest.ServiceUnavailable(2 * time.Minute), provider.Retry, 503, "ServiceUnavailable", 2 * time.Minute},
		{"503 without Retry-After", apnstest.ServiceUnavailable(0), provider.Retry, 503, "ServiceUnavailable", 0},
		{"500", apnstest.Reply{Status: 500, Reason: "InternalServerError"}, provider.Retry, 500, "InternalServerError", 0},
		{"400 BadTopic", apnstest.Reply{Status: 400, Reason: "BadTopic"}, provider.Permanent, 400, "BadTopic", 0},
		{"400 unknown reason", apnstest.Reply{Status: 400, Reason: "SomethingNew"}, provider.Permanent, 400, "SomethingNew", 0},
		{"403 InvalidProviderToken", apnstest.Reply{Status: 403, Reason: "InvalidProviderToken"}, provider.Permanent, 403, "InvalidProviderToken", 0},
		{"413 PayloadTooLarge", apnstest.Reply{Status: 413, Reason: "PayloadTooLarge"}, provider.Permanent, 413, "PayloadTooLarge", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := apnstest.New(t, apnstest.Options{})
			s := newSender(t, m, nil)
			m.ReplyTo(tok1, tc.reply)
			id, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1, Important: true})
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Send = %q, %v; want a *provider.Error", id, err)
			}
			if pe.Kind != tc.kind || pe.Status != tc.status || pe.Reason != tc.reason || pe.RetryAfter != tc.retryAfter {
				t.Errorf("error = {%v %d %q %v}, want {%v %d %q %v}", pe.Kind, pe.Status, pe.Reason, pe.RetryAfter,
					tc.kind, tc.status, tc.reason, tc.retryAfter)
			}
			if provider.KindOf(err) != tc.kind {
				t.Errorf("KindOf = %v, want %v", provider.KindOf(err), tc.kind)
			}
			if tc.status == 410 && tc.reason == "Unregistered" && (pe.Err == nil || !strings.Contains(pe.Err.Error(), "2024-05-01T12:00:00Z")) {
				t.Errorf("410 error %v does not carry APNs' timestamp", pe.Err)
			}
			m.CheckNoViolations(t)
		})
	}
}

func TestSendQueueThenPerToken(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, nil)
	m.ReplyTo(tok1, apnstest.BadDeviceToken())
	m.Enqueue(apnstest.ServiceUnavailable(0), apnstest.OK())
	ctx := timeout(t, 10*time.Second)
	var kinds []provider.Kind
	for range 3 {
		_, err := s.Send(ctx, provider.Push{Token: tok1})
		if err == nil {
			kinds = append(kinds, 0)
		} else {
			kinds = append(kinds, provider.KindOf(err))
		}
	}
	if want := []provider.Kind{provider.Retry, 0, provider.DeadToken}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("outcomes = %v, want %v (queue first, then the token's answer)", kinds, want)
	}
}

func TestSendDeadline(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, nil)
	m.Enqueue(apnstest.Stall())
	start := time.Now()
	_, err := s.Send(timeout(t, 300*time.Millisecond), provider.Push{Token: tok1})
	elapsed := time.Since(start)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Retry || pe.Status != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send against a stalled server = %v, want a Retry wrapping context.DeadlineExceeded", err)
	}
	if pe.Reason != "deadline exceeded" {
		t.Errorf("reason = %q, want %q", pe.Reason, "deadline exceeded")
	}
	if elapsed > 5*time.Second {
		t.Errorf("Send took %v with a 300ms deadline", elapsed)
	}
	if ps := m.WaitPushes(t, 1, 5*time.Second); ps[0].Reason != "stalled" {
		t.Errorf("mock answer %q, want the stalled request", ps[0].Reason)
	}
}

func TestSendServerClosed(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, nil)
	if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1}); err != nil {
		t.Fatalf("Send before close: %v", err)
	}
	m.Close()
	_, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Retry || pe.Status != 0 || pe.Err == nil {
		t.Fatalf("Send to a closed server = %v, want a Retry with the network error", err)
	}
}

func TestSendBadTokenLocally(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, nil)
	for _, tok := range []string{"", "zz", "ab/../cd"} {
		_, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok})
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Kind != provider.DeadToken || pe.Reason != "BadDeviceToken" {
			t.Errorf("Send(token %q) = %v, want a DeadToken BadDeviceToken", tok, err)
		}
	}
	if n := len(m.Pushes()); n != 0 {
		t.Errorf("mock got %d requests for malformed tokens, want 0", n)
	}
}

// TestWrongKey proves that the mock's token check bites: a token signed
// by another key is refused like APNs does and recorded as a violation.
func TestWrongKey(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := newSender(t, m, func(c *apns.Config) { c.AuthKeyFile = writeP8(t, other) })
	_, err = s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Permanent || pe.Status != 403 || pe.Reason != "InvalidProviderToken" {
		t.Fatalf("Send with a foreign key = %v, want Permanent 403 InvalidProviderToken", err)
	}
	v := m.Violations()
	if len(v) != 1 || !strings.Contains(v[0], "signature") {
		t.Errorf("violations = %q, want one about the signature", v)
	}
}

func TestWrongTeam(t *testing.T) {
	m := apnstest.New(t, apnstest.Options{})
	s := newSender(t, m, func(c *apns.Config) { c.TeamID = "OTHERTEAM1" })
	_, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1})
	if provider.KindOf(err) != provider.Permanent {
		t.Fatalf("Send with the wrong team = %v, want Permanent", err)
	}
	if v := m.Violations(); len(v) != 1 || !strings.Contains(v[0], "iss") {
		t.Errorf("violations = %q, want one about iss", v)
	}
}

func TestCertificateAuth(t *testing.T) {
	cert, key := selfSigned(t, "im.example.certapp", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	m := apnstest.New(t, apnstest.Options{ClientCAs: pool, Topics: []string{"im.example.certapp"}})
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	keyPEM := pkcs8PEM(t, key)

	combined := filepath.Join(dir, "combined.pem")
	writeFile(t, combined, append(append([]byte{}, certPEM...), keyPEM...))
	certOnly := filepath.Join(dir, "cert.pem")
	writeFile(t, certOnly, certPEM)
	keyOnly := filepath.Join(dir, "key.pem")
	writeFile(t, keyOnly, keyPEM)

	for _, tc := range []struct {
		name string
		cfg  apns.Config
	}{
		{"combined PEM", apns.Config{CertFile: combined}},
		{"separate key", apns.Config{CertFile: certOnly, CertKeyFile: keyOnly}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Endpoint, cfg.RootCAs = m.URL, m.CertPool()
			s, err := apns.New(cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer s.CloseIdleConnections()
			n := len(m.Pushes())
			if _, err := s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1, Important: true}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			p := m.WaitPushes(t, n+1, 5*time.Second)[n]
			if p.Auth != "certificate" || p.Header.Get("authorization") != "" {
				t.Errorf("auth %q with authorization %q, want certificate and no token", p.Auth, p.Header.Get("authorization"))
			}
			if got := p.Header.Get("apns-topic"); got != "im.example.certapp" {
				t.Errorf("topic %q, want the certificate's UID", got)
			}
		})
	}
	m.CheckNoViolations(t)
}

func TestUntrustedClientCertificate(t *testing.T) {
	trusted, _ := selfSigned(t, "im.example.a", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	pool := x509.NewCertPool()
	pool.AddCert(trusted)
	m := apnstest.New(t, apnstest.Options{ClientCAs: pool})
	cert, key := selfSigned(t, "im.example.b", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	path := filepath.Join(t.TempDir(), "c.pem")
	writeFile(t, path, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), pkcs8PEM(t, key)...))
	s, err := apns.New(apns.Config{CertFile: path, Endpoint: m.URL, RootCAs: m.CertPool()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.CloseIdleConnections()
	_, err = s.Send(timeout(t, 10*time.Second), provider.Push{Token: tok1})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.Permanent || pe.Reason != "BadCertificate" {
		t.Fatalf("Send with an untrusted certificate = %v, want Permanent BadCertificate", err)
	}
	if len(m.Violations()) != 1 {
		t.Errorf("violations = %q, want 1", m.Violations())
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	goodP8 := filepath.Join(dir, "AuthKey_ABCDE12345.p8")
	writeFile(t, goodP8, pkcs8PEM(t, key))
	notPEM := filepath.Join(dir, "notpem.p8")
	writeFile(t, notPEM, []byte("hello"))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaP8 := filepath.Join(dir, "rsa.p8")
	writeFile(t, rsaP8, pkcs8PEM(t, rsaKey))
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384P8 := filepath.Join(dir, "p384.p8")
	writeFile(t, p384P8, pkcs8PEM(t, p384))

	cert, certKey := selfSigned(t, "im.example.x", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	certOnly := filepath.Join(dir, "cert.pem")
	writeFile(t, certOnly, certPEM)
	_, otherKey := selfSigned(t, "im.example.y", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	mismatched := filepath.Join(dir, "mismatch.pem")
	writeFile(t, mismatched, append(append([]byte{}, certPEM...), pkcs8PEM(t, otherKey)...))
	old, oldKey := selfSigned(t, "im.example.x", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	expired := filepath.Join(dir, "expired.pem")
	writeFile(t, expired, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Raw}), pkcs8PEM(t, oldKey)...))
	noUID, noUIDKey := selfSigned(t, "", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	noUIDFile := filepath.Join(dir, "nouid.pem")
	writeFile(t, noUIDFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: noUID.Raw}), pkcs8PEM(t, noUIDKey)...))
	badP12 := filepath.Join(dir, "bad.p12")
	writeFile(t, badP12, []byte{0x30, 0x03, 0x02, 0x01, 0x03})
	_ = certKey

	tokenCfg := apns.Config{AuthKeyFile: goodP8, KeyID: "ABCDE12345", TeamID: "TEAM123456", Topic: topic}
	with := func(edit func(*apns.Config)) apns.Config {
		c := tokenCfg
		edit(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  apns.Config
		want []string // substrings of the error
	}{
		{"nothing", apns.Config{}, []string{"no credentials", "AuthKeyFile", "CertFile"}},
		{"both", with(func(c *apns.Config) { c.CertFile = certOnly }), []string{"both token", "keep one"}},
		{"no key id", with(func(c *apns.Config) { c.KeyID = "" }), []string{"KeyID is required"}},
		{"bad key id", with(func(c *apns.Config) { c.KeyID = "abc" }), []string{`KeyID "abc"`, "10 uppercase"}},
		{"key id not the file's", with(func(c *apns.Config) { c.KeyID = "ZZZZZ99999" }), []string{"does not match AuthKeyFile", "ABCDE12345"}},
		{"no team", with(func(c *apns.Config) { c.TeamID = "" }), []string{"TeamID is required"}},
		{"no key file", with(func(c *apns.Config) { c.AuthKeyFile = "" }), []string{"AuthKeyFile is required"}},
		{"missing key file", with(func(c *apns.Config) { c.AuthKeyFile = filepath.Join(dir, "nope.p8") }), []string{"AuthKeyFile: cannot read", "nope.p8"}},
		{"not PEM", with(func(c *apns.Config) { c.AuthKeyFile = notPEM }), []string{"not a .p8 key", "notpem.p8"}},
		{"RSA key", with(func(c *apns.Config) { c.AuthKeyFile = rsaP8 }), []string{"not an APNs key"}},
		{"P-384 key", with(func(c *apns.Config) { c.AuthKeyFile = p384P8 }), []string{"P-384", "P-256"}},
		{"no topic", with(func(c *apns.Config) { c.Topic = "" }), []string{"Topic is required"}},
		{"bad topic", with(func(c *apns.Config) { c.Topic = "a b" }), []string{`Topic "a b"`}},
		{"bad environment", with(func(c *apns.Config) { c.Environment = "staging" }), []string{`Environment "staging"`}},
		{"bad endpoint", with(func(c *apns.Config) { c.Endpoint = "http://example.com/x" }), []string{"Endpoint", "https://"}},
		{"several at once", with(func(c *apns.Config) { c.KeyID, c.TeamID, c.Topic = "", "", "" }), []string{"KeyID is required", "TeamID is required", "Topic is required"}},
		{"missing cert", apns.Config{CertFile: filepath.Join(dir, "nope.pem")}, []string{"CertFile: cannot read"}},
		{"key file only", apns.Config{CertKeyFile: certOnly}, []string{"CertFile is not"}},
		{"PEM without key", apns.Config{CertFile: certOnly}, []string{"no private key", "CertKeyFile"}},
		{"key of another cert", apns.Config{CertFile: mismatched}, []string{"does not belong"}},
		{"expired cert", apns.Config{CertFile: expired}, []string{"expired on", "token authentication"}},
		{"cert without UID", apns.Config{CertFile: noUIDFile}, []string{"Topic is required", "UID"}},
		{"bad p12", apns.Config{CertFile: badP12, CertPassword: "secret"}, []string{"PKCS#12", "CertPassword"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := apns.New(tc.cfg)
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
	if s, err := apns.New(tokenCfg); err != nil {
		t.Errorf("New(valid token config) = %v", err)
	} else {
		s.CloseIdleConnections()
	}
	if s, err := apns.New(apns.Config{CertFile: noUIDFile, Topic: topic}); err != nil {
		t.Errorf("New(certificate without UID, Topic set) = %v", err)
	} else {
		s.CloseIdleConnections()
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pkcs8PEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeP8(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "AuthKey_"+apnstest.DefaultKeyID+".p8")
	writeFile(t, path, pkcs8PEM(t, key))
	return path
}

// selfSigned makes a self-signed client certificate like Apple's push
// certificates: the bundle id in the subject's UID (none if uid is "").
func selfSigned(t *testing.T, uid string, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	subject := pkix.Name{CommonName: "Apple Push Services: " + uid}
	if uid != "" {
		subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: uid}}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
