package server

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"wren.im/wren/xmpp"
)

// SCRAM-SHA-256-PLUS with tls-server-end-point through the live server:
// the channel binding covers the certificate this connection was served
// (recorded during its handshake), so a client that hashes the
// certificate it saw logs in, and one that binds to another does not.
func TestScramPlusServerEndPoint(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice")
	login := func(cbData func(leaf []byte) []byte) *xmpp.Element {
		rc := dialRaw(t, ts.addr())
		rc.open("localhost")
		rc.starttls()
		rc.open("localhost")
		f := rc.next()
		if !strings.Contains(f.String(), "SCRAM-SHA-256-PLUS") {
			t.Fatalf("no SCRAM-SHA-256-PLUS offered: %s", f)
		}
		leaf := rc.conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw
		gs2 := "p=tls-server-end-point,,"
		nonce := rand.Text()
		first := "n=alice,r=" + nonce
		rc.send(fmt.Sprintf(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>%s</auth>`,
			base64.StdEncoding.EncodeToString([]byte(gs2+first))))
		ch := rc.next()
		if !ch.Is(xmpp.NSSASL, "challenge") {
			return ch
		}
		serverFirst, err := base64.StdEncoding.DecodeString(ch.Text())
		if err != nil {
			t.Fatal(err)
		}
		attrs := map[string]string{}
		for _, kv := range strings.Split(string(serverFirst), ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				attrs[k] = v
			}
		}
		salt, _ := base64.StdEncoding.DecodeString(attrs["s"])
		iters, _ := strconv.Atoi(attrs["i"])
		salted, err := pbkdf2.Key(sha256.New, password, salt, iters, sha256.Size)
		if err != nil {
			t.Fatal(err)
		}
		cbind := base64.StdEncoding.EncodeToString(append([]byte(gs2), cbData(leaf)...))
		final := "c=" + cbind + ",r=" + attrs["r"]
		authMsg := first + "," + string(serverFirst) + "," + final
		mac := func(key []byte, msg string) []byte {
			h := hmac.New(sha256.New, key)
			h.Write([]byte(msg))
			return h.Sum(nil)
		}
		clientKey := mac(salted, "Client Key")
		stored := sha256.Sum256(clientKey)
		sig := mac(stored[:], authMsg)
		proof := make([]byte, len(clientKey))
		for i := range proof {
			proof[i] = clientKey[i] ^ sig[i]
		}
		rc.send(fmt.Sprintf(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>`,
			base64.StdEncoding.EncodeToString([]byte(final+",p="+base64.StdEncoding.EncodeToString(proof)))))
		return rc.next()
	}
	// RFC 5929 §4.1: SHA-256 of the certificate (signed with ECDSA-SHA256
	// or RSA-SHA256 by the test CA).
	if res := login(func(leaf []byte) []byte { h := sha256.Sum256(leaf); return h[:] }); !res.Is(xmpp.NSSASL, "success") {
		t.Fatalf("binding to the served certificate: %s", res)
	}
	if res := login(func(leaf []byte) []byte { h := sha256.Sum256(append(leaf, 0)); return h[:] }); !res.Is(xmpp.NSSASL, "failure") {
		t.Fatalf("binding to another certificate: %s, want failure", res)
	}
}
