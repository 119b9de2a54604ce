package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"wren.im/wren/storage"
)

const testDomain = "example.org"

// accounts is an in-memory account table for Server.Lookup.
type accounts map[string]storage.Account

func (a accounts) lookup(_ context.Context, username string) (storage.Account, error) {
	acct, ok := a[username]
	if !ok {
		return storage.Account{}, fmt.Errorf("account %q: %w", username, storage.ErrNotFound)
	}
	return acct, nil
}

// add creates an account with credentials from NewCredentials.
func (a accounts) add(tb testing.TB, username, password string, iterations int) storage.Account {
	tb.Helper()
	s1, s256, err := NewCredentials(password, iterations)
	if err != nil {
		tb.Fatalf("NewCredentials: %v", err)
	}
	acct := storage.Account{Username: username, Created: time.Now(), SHA1: s1, SHA256: s256}
	a[username] = acct
	return acct
}

// Test users.
const (
	julietPass = "r0m30myr0m30"
	odd        = "o,n=e" // needs saslname escaping
	oddPass    = "pass,word=x"
)

// newTestServer returns a server without TLS that knows juliet, the odd user,
// "only256" (no SHA-1 credential) and "only1" (no SHA-256 credential), each
// with the password julietPass except the odd user.
func newTestServer(tb testing.TB) (*Server, accounts) {
	tb.Helper()
	accts := accounts{}
	accts.add(tb, "juliet", julietPass, 4096)
	accts.add(tb, odd, oddPass, 4096)
	a := accts.add(tb, "only256", julietPass, 4096)
	a.SHA1 = storage.ScramCredential{}
	accts["only256"] = a
	a = accts.add(tb, "only1", julietPass, 4096)
	a.SHA256 = storage.ScramCredential{}
	accts["only1"] = a
	return &Server{Domain: testDomain, Lookup: accts.lookup}, accts
}

// runMellium runs a complete exchange between mellium's client and srv. It
// returns the server's error; a client-side failure fails the test.
func runMellium(tb testing.TB, srv *Server, mech sasl.Mechanism, user, pass, authzid string, opts ...sasl.Option) (*Exchange, error) {
	tb.Helper()
	creds := sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(pass), []byte(authzid)
	})
	client := sasl.NewClient(mech, append(opts, creds)...)
	clientMore, msg, err := client.Step(nil)
	if err != nil {
		tb.Fatalf("client start: %v", err)
	}
	ex, err := srv.Start(context.Background(), mech.Name)
	if err != nil {
		tb.Fatalf("Start(%s): %v", mech.Name, err)
	}
	for range 5 {
		resp, done, err := ex.Step(msg)
		if err != nil {
			if ex.Username() != "" {
				tb.Errorf("Username() = %q after failure", ex.Username())
			}
			return ex, err
		}
		if !done && !clientMore {
			tb.Fatalf("server sent a challenge %q but the client is finished", resp)
		}
		if clientMore {
			clientMore, msg, err = client.Step(resp)
			if err != nil {
				tb.Fatalf("client rejected server message %q: %v", resp, err)
			}
		}
		if done {
			if clientMore {
				tb.Fatal("server reported success but the client expects more")
			}
			return ex, nil
		}
	}
	tb.Fatal("exchange did not end")
	return nil, nil
}

// testClient is a small SCRAM client written from RFC 5802 for the cases
// mellium's client cannot produce: the y flag, tls-server-end-point, wrong
// channel binding data, tampered messages.
type testClient struct {
	hash    func() hash.Hash
	user    string // sent escaped
	pass    string
	authzid string // sent escaped
	gs2Flag string // "n", "y" or "p=<cb-name>"
	cbData  []byte // channel binding data for "p="
	cnonce  string
	// tamper, if set, rewrites the client-final-message-without-proof
	// before the proof is computed over it.
	tamper func(withoutProof string) string

	gs2Header       string
	bare            string
	serverSignature []byte
}

func saslEscape(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func (c *testClient) first() []byte {
	if c.gs2Flag == "" {
		c.gs2Flag = "n"
	}
	if c.cnonce == "" {
		c.cnonce = "Cl1entN0nce+/Xyz"
	}
	c.gs2Header = c.gs2Flag + ","
	if c.authzid != "" {
		c.gs2Header += "a=" + saslEscape(c.authzid)
	}
	c.gs2Header += ","
	c.bare = "n=" + saslEscape(c.user) + ",r=" + c.cnonce
	return []byte(c.gs2Header + c.bare)
}

func (c *testClient) final(serverFirst []byte) ([]byte, error) {
	var nonce, salt64, iter string
	for _, attr := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(attr, "r="):
			nonce = attr[2:]
		case strings.HasPrefix(attr, "s="):
			salt64 = attr[2:]
		case strings.HasPrefix(attr, "i="):
			iter = attr[2:]
		}
	}
	if !strings.HasPrefix(nonce, c.cnonce) || len(nonce) == len(c.cnonce) {
		return nil, fmt.Errorf("server nonce %q does not extend ours", nonce)
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return nil, err
	}
	i, err := strconv.Atoi(iter)
	if err != nil {
		return nil, err
	}
	without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(c.gs2Header), c.cbData...)) + ",r=" + nonce
	if c.tamper != nil {
		without = c.tamper(without)
	}
	authMessage := c.bare + "," + string(serverFirst) + "," + without
	salted, err := pbkdf2.Key(c.hash, c.pass, salt, i, c.hash().Size())
	if err != nil {
		return nil, err
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(c.hash, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	d := c.hash()
	d.Write(clientKey)
	clientSignature := mac(d.Sum(nil), authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ clientSignature[i]
	}
	c.serverSignature = mac(mac(salted, "Server Key"), authMessage)
	return []byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func (c *testClient) verify(serverFinal []byte) error {
	if want := "v=" + base64.StdEncoding.EncodeToString(c.serverSignature); string(serverFinal) != want {
		return fmt.Errorf("server-final-message %q, want %q", serverFinal, want)
	}
	return nil
}

// runTestClient runs a complete exchange between c and srv and returns the
// server's error. A server-final-message the client cannot verify fails the
// test.
func runTestClient(tb testing.TB, srv *Server, mech string, c *testClient) (*Exchange, error) {
	tb.Helper()
	ex, err := srv.Start(context.Background(), mech)
	if err != nil {
		tb.Fatalf("Start(%s): %v", mech, err)
	}
	serverFirst, done, err := ex.Step(c.first())
	if err != nil {
		return ex, err
	}
	if done {
		tb.Fatal("done after the client-first-message")
	}
	final, err := c.final(serverFirst)
	if err != nil {
		tb.Fatalf("client: %v", err)
	}
	serverFinal, done, err := ex.Step(final)
	if err != nil {
		if ex.Username() != "" {
			tb.Errorf("Username() = %q after failure", ex.Username())
		}
		return ex, err
	}
	if !done {
		tb.Fatal("not done after the client-final-message")
	}
	if err := c.verify(serverFinal); err != nil {
		tb.Fatal(err)
	}
	return ex, nil
}

// tlsPair is both ends of a completed TLS handshake.
type tlsPair struct {
	server, client tls.ConnectionState
	cert           *x509.Certificate // the server's certificate
}

// newTLSPair performs a TLS handshake of the given version over net.Pipe
// with a freshly generated ECDSA P-256 certificate (signed with
// ECDSA-SHA256).
func newTLSPair(tb testing.TB, version uint16) tlsPair {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: testDomain},
		DNSNames:     []string{testDomain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)

	sc, cc := net.Pipe()
	tb.Cleanup(func() { sc.Close(); cc.Close() })
	srv := tls.Server(sc, &tls.Config{
		Certificates:           []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:             version,
		MaxVersion:             version,
		SessionTicketsDisabled: true,
	})
	cli := tls.Client(cc, &tls.Config{
		RootCAs:    roots,
		ServerName: testDomain,
		MinVersion: version,
		MaxVersion: version,
	})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		tb.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		tb.Fatalf("server handshake: %v", err)
	}
	p := tlsPair{server: srv.ConnectionState(), client: cli.ConnectionState(), cert: cert}
	if p.server.Version != version || p.client.Version != version {
		tb.Fatalf("negotiated TLS version %x, want %x", p.server.Version, version)
	}
	return p
}

// wantErr fails the test unless err wraps want (or is nil when want is nil).
func wantErr(tb testing.TB, err, want error) {
	tb.Helper()
	switch {
	case want == nil && err != nil:
		tb.Fatalf("unexpected error: %v", err)
	case want != nil && !errors.Is(err, want):
		tb.Fatalf("error %v, want %v", err, want)
	}
}
