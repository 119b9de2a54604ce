package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

func TestSlixmppLogin(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t, "--config", writeConfig(t, "[auth]\nchannel_binding = false\n"))
	s.addUser("alice")
	runScenario(t, s, "login")
}

func TestSlixmppChannelBindingDowngradeRefused(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t)
	s.addUser("alice")
	runScenario(t, s, "downgrade")
}

func TestSlixmppWrongPassword(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t, "--config", writeConfig(t, "[auth]\nchannel_binding = false\n"))
	s.addUser("alice")
	runScenario(t, s, "wrong-password")
	if !strings.Contains(s.logs.String(), "client authentication failed") {
		t.Fatalf("the server did not log the failed authentication")
	}
}

func TestSlixmppChatRosterPresenceOffline(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t)
	s.addUser("alice")
	s.addUser("bob")
	runScenario(t, s, "chat")
}

func TestSlixmppStreamManagementResume(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t)
	s.addUser("alice")
	s.addUser("bob")
	runScenario(t, s, "sm-resume")
	if !strings.Contains(s.logs.String(), "client session resumed") {
		t.Fatal("the server did not log the resumption")
	}
}

func TestSlixmppStreamManagementBadResume(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t)
	s.addUser("bob")
	s.addUser("mallory")
	runScenario(t, s, "sm-bad-resume")
}

func TestSlixmppStreamManagementExpired(t *testing.T) {
	requirePython(t, "slixmpp")
	s := startServer(t, "--config", writeConfig(t, "[stream_management]\nresume_timeout = \"1s\"\n"))
	s.addUser("alice")
	s.addUser("bob")
	runScenario(t, s, "sm-expired")
}

// melliumClient logs in with mellium's client over STARTTLS and SCRAM-SHA-256.
func melliumClient(t *testing.T, s *Server, user, resource string) *xmpp.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pem, err := os.ReadFile(s.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := net.Dial("tcp", "127.0.0.1:"+s.Port)
	if err != nil {
		t.Fatal(err)
	}
	j := jid.MustParse(user + "@" + s.Domain + "/" + resource)
	sess, err := xmpp.NewClientSession(ctx, j, conn,
		xmpp.StartTLS(&tls.Config{ServerName: s.Domain, RootCAs: pool, MinVersion: tls.VersionTLS12}),
		xmpp.SASL("", "secret-"+user, sasl.ScramSha256),
		xmpp.BindResource(),
	)
	if err != nil {
		conn.Close()
		t.Fatalf("mellium client %s: %v", user, err)
	}
	t.Cleanup(func() { sess.Close(); conn.Close() })
	return sess
}

type message struct {
	From string `xml:"from,attr"`
	Body string `xml:"body"`
}

// serveMessages runs the session's input loop and forwards message bodies.
func serveMessages(sess *xmpp.Session) <-chan message {
	ch := make(chan message, 16)
	go sess.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return nil
		}
		var m message
		if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&m); err != nil {
			return nil
		}
		ch <- m
		return nil
	}))
	return ch
}

func TestGoSendxmpp(t *testing.T) {
	requireTool(t, "/usr/bin/go-sendxmpp", "go-sendxmpp")
	s := startServer(t)
	s.addUser("alice")
	s.addUser("bob")

	bob := melliumClient(t, s, "bob", "listener")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := serveMessages(bob)
	if err := bob.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	send := func(body string, directTLS bool) {
		t.Helper()
		port := s.Port
		args := []string{"-u", "alice@" + s.Domain, "-p", "secret-alice", "-j", "127.0.0.1:" + port, "--timeout", "10"}
		if directTLS {
			args = []string{"-u", "alice@" + s.Domain, "-p", "secret-alice", "-j", "127.0.0.1:" + s.TLSPort, "-t", "--timeout", "10"}
		}
		args = append(args, "bob@"+s.Domain)
		cmd := exec.CommandContext(ctx, "/usr/bin/go-sendxmpp", args...)
		// go-sendxmpp verifies the certificate against the system roots;
		// point Go's crypto/x509 at the server's self-signed certificate.
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+s.CA, "HOME="+t.TempDir())
		cmd.Stdin = strings.NewReader(body + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go-sendxmpp (direct TLS %v): %v\n%s", directTLS, err, out)
		}
		select {
		case m := <-msgs:
			if strings.TrimSpace(m.Body) != body {
				t.Fatalf("bob got %q, want %q", m.Body, body)
			}
			if !strings.HasPrefix(m.From, "alice@"+s.Domain+"/") {
				t.Fatalf("message from %q, want alice's full JID", m.From)
			}
		case <-ctx.Done():
			t.Fatalf("bob did not receive %q", body)
		}
	}
	send("hello over starttls", false)
	send("hello over direct tls", true)
	// Debian's go-sendxmpp is built on a go-xmpp without SCRAM: it can only
	// use PLAIN, which Wren offers inside TLS and checks against the stored
	// SCRAM keys. Both logins must have happened that way.
	logins := aliceLoginRE.FindAllStringSubmatch(s.logs.String(), -1)
	if len(logins) != 2 || logins[0][1] != "PLAIN" || logins[1][1] != "PLAIN" {
		t.Fatalf("go-sendxmpp logins seen in the server log: %v, want 2 with PLAIN over TLS", logins)
	}
}

var aliceLoginRE = regexp.MustCompile(`msg="client authenticated".*user=alice@localhost mechanism=(\S+)`)

func TestMelliumPingAndOfflineDelivery(t *testing.T) {
	s := startServer(t)
	s.addUser("alice")
	s.addUser("carol")
	alice := melliumClient(t, s, "alice", "go")
	go alice.Serve(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// XEP-0199 ping to the server.
	resp, err := alice.SendIQElement(ctx, xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:xmpp:ping", Local: "ping"}}),
		stanza.IQ{Type: stanza.GetIQ, To: jid.MustParse(s.Domain)})
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	resp.Close()

	// carol is offline: the message is stored and delivered at her login.
	msg := stanza.Message{To: jid.MustParse("carol@" + s.Domain), Type: stanza.ChatMessage}
	body := xmlstream.Wrap(xmlstream.Token(xml.CharData("stored for later")), xml.StartElement{Name: xml.Name{Local: "body"}})
	if err := alice.Send(ctx, msg.Wrap(body)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	carol := melliumClient(t, s, "carol", "go")
	msgs := serveMessages(carol)
	if err := carol.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m.Body != "stored for later" {
			t.Fatalf("carol got %q", m.Body)
		}
	case <-ctx.Done():
		t.Fatal("carol did not get the offline message")
	}
}

func TestAioxmppChatWithStreamManagement(t *testing.T) {
	requirePython(t, "aioxmpp")
	s := startServer(t)
	s.addUser("alice")
	s.addUser("bob")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "aioxmpp_scenarios.py", "chat", "--port", s.Port, "--domain", s.Domain).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS chat") {
		t.Fatalf("aioxmpp scenario failed: %v\n%s", err, out)
	}
	t.Logf("aioxmpp chat:\n%s", out)
}

// TestNoPlaintextPasswordOnDisk creates accounts, logs in and changes a
// password in-band, then scans every file the server wrote for the
// passwords: only SCRAM salts and keys may be stored.
func TestNoPlaintextPasswordOnDisk(t *testing.T) {
	s := startServer(t)
	s.addUser("alice")
	alice := melliumClient(t, s, "alice", "disk")
	go alice.Serve(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const newPassword = "a-brand-new-secret-9731"
	q := xmlstream.Wrap(xmlstream.MultiReader(
		xmlstream.Wrap(xmlstream.Token(xml.CharData("alice")), xml.StartElement{Name: xml.Name{Local: "username"}}),
		xmlstream.Wrap(xmlstream.Token(xml.CharData(newPassword)), xml.StartElement{Name: xml.Name{Local: "password"}}),
	), xml.StartElement{Name: xml.Name{Space: "jabber:iq:register", Local: "query"}})
	resp, err := alice.SendIQElement(ctx, q, stanza.IQ{Type: stanza.SetIQ, To: jid.MustParse(s.Domain)})
	if err != nil {
		t.Fatalf("password change: %v", err)
	}
	tok, err := resp.Token()
	if start, ok := tok.(xml.StartElement); err != nil || !ok || !hasAttr(start, "type", "result") {
		t.Fatalf("password change answered %v (%v), want a result", tok, err)
	}
	resp.Close()
	s.Stop()
	err = filepath.WalkDir(s.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, pw := range []string{"secret-alice", newPassword} {
			if bytes.Contains(b, []byte(pw)) {
				t.Errorf("%s contains the plaintext password %q", path, pw)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func hasAttr(start xml.StartElement, name, value string) bool {
	for _, a := range start.Attr {
		if a.Name.Local == name {
			return a.Value == value
		}
	}
	return false
}
