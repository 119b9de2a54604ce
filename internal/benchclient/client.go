package benchclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ErrConflict is returned by Conn.Register when the account exists.
var ErrConflict = errors.New("benchclient: account already exists")

// Config describes how to connect and whom to log in as.
type Config struct {
	// Addr is the server's host:port.
	Addr string
	// Domain is the XMPP domain (the 'to' of the stream header).
	Domain string
	// User and Password are the account's credentials (localpart only).
	User, Password string
	// Resource is the resource to bind; empty lets the server choose.
	Resource string
	// TLS configures STARTTLS; nil connects without TLS, which only works
	// with servers that allow it (typically on loopback).
	TLS *tls.Config
	// Mechanism is ScramSHA1 (the default) or ScramSHA256.
	Mechanism string
	// Keys caches SCRAM keys across logins; may be nil.
	Keys *KeyCache
	// MaxElement bounds one received element (DefaultMaxElement if 0).
	MaxElement int
}

// Conn is one client connection. After the login, one goroutine may call
// Next while another calls Write and Flush.
type Conn struct {
	cfg      *Config
	raw      net.Conn // TCP
	conn     net.Conn // TCP or TLS on top of it
	fr       *Framer
	w        *bufio.Writer
	features []byte // copy of the last <stream:features/>
	jid      string
	ids      int
}

// longAgo is a deadline in the past, used to abort blocked I/O.
var longAgo = time.Unix(1, 0)

// Dial connects to cfg.Addr, opens the stream and negotiates STARTTLS when
// cfg.TLS is set. The connection is ready for Register or Login. ctx
// bounds the whole negotiation.
func Dial(ctx context.Context, cfg *Config) (*Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", cfg.Addr, err)
	}
	c := &Conn{cfg: cfg, raw: raw, conn: raw}
	c.fr = NewFramer(raw, cfg.MaxElement)
	c.w = bufio.NewWriterSize(raw, 4096)
	err = c.guard(ctx, func() error {
		if err := c.openStream(); err != nil {
			return err
		}
		if cfg.TLS == nil {
			return nil
		}
		if Child(c.features, "starttls") == nil {
			return errors.New("server does not offer STARTTLS")
		}
		if err := c.writeFlush("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
			return err
		}
		el, err := c.nextElement()
		if err != nil {
			return err
		}
		if !HasName(el, "proceed") {
			return fmt.Errorf("STARTTLS refused: %.200s", el)
		}
		tc := tls.Client(raw, cfg.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		c.conn = tc
		c.fr.Reset(tc)
		c.w.Reset(tc)
		return c.openStream()
	})
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// guard runs f with the connection's deadline taken from ctx, and aborts
// blocked I/O when ctx is cancelled.
func (c *Conn) guard(ctx context.Context, f func() error) error {
	if d, ok := ctx.Deadline(); ok {
		c.raw.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(longAgo) })
	err := f()
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
	}
	c.raw.SetDeadline(time.Time{})
	return err
}

func (c *Conn) writeFlush(s string) error {
	if _, err := c.w.WriteString(s); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// openStream sends a stream header and reads the server's header and
// features.
func (c *Conn) openStream() error {
	hdr := "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" +
		Escape(c.cfg.Domain) + "' version='1.0'>"
	if err := c.writeFlush(hdr); err != nil {
		return err
	}
	kind, el, err := c.fr.Next()
	if err != nil {
		return fmt.Errorf("reading stream header: %w", err)
	}
	if kind != Header {
		return fmt.Errorf("expected a stream header, got %.200s", el)
	}
	el, err = c.nextElement()
	if err != nil {
		return err
	}
	if !HasName(el, "stream:features") {
		return fmt.Errorf("expected stream features, got %.200s", el)
	}
	c.features = append(c.features[:0], el...)
	return nil
}

// nextElement reads one top-level element and turns a stream error into
// an error.
func (c *Conn) nextElement() ([]byte, error) {
	kind, el, err := c.fr.Next()
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if kind != Element {
		return nil, errors.New("unexpected second stream header")
	}
	if HasName(el, "stream:error") {
		return nil, fmt.Errorf("stream error: %.300s", el)
	}
	return el, nil
}

func (c *Conn) nextID(prefix string) string {
	c.ids++
	return fmt.Sprintf("%s%d", prefix, c.ids)
}

// iq sends an IQ and waits for the reply with its id, skipping other
// stanzas. It returns the reply.
func (c *Conn) iq(typ, payload string) ([]byte, error) {
	id := c.nextID("q")
	if err := c.writeFlush("<iq type='" + typ + "' id='" + id + "'>" + payload + "</iq>"); err != nil {
		return nil, err
	}
	for {
		el, err := c.nextElement()
		if err != nil {
			return nil, err
		}
		if !HasName(el, "iq") {
			continue
		}
		if got, _ := Attr(el, "id"); got != id {
			continue
		}
		if t, _ := Attr(el, "type"); t == "error" {
			return nil, fmt.Errorf("iq error: %.300s", el)
		}
		return append([]byte(nil), el...), nil
	}
}

// Register creates the account cfg.User with cfg.Password by in-band
// registration (XEP-0077) on a connection from Dial. It returns
// ErrConflict if the account exists.
func (c *Conn) Register(ctx context.Context) error {
	return c.guard(ctx, func() error {
		_, err := c.iq("set", "<query xmlns='jabber:iq:register'><username>"+Escape(c.cfg.User)+
			"</username><password>"+Escape(c.cfg.Password)+"</password></query>")
		if err != nil && strings.Contains(err.Error(), "<conflict") {
			return ErrConflict
		}
		return err
	})
}

// Login authenticates with SCRAM, restarts the stream and binds a
// resource.
func (c *Conn) Login(ctx context.Context) error {
	return c.guard(ctx, func() error {
		if err := c.sasl(); err != nil {
			return err
		}
		c.fr.Reset(c.conn)
		if err := c.openStream(); err != nil {
			return err
		}
		res := ""
		if c.cfg.Resource != "" {
			res = "<resource>" + Escape(c.cfg.Resource) + "</resource>"
		}
		reply, err := c.iq("set", "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"+res+"</bind>")
		if err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		c.jid, _ = ChildText(reply, "jid")
		if s := Child(c.features, "session"); s != nil && Child(s, "optional") == nil {
			if _, err := c.iq("set", "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>"); err != nil {
				return fmt.Errorf("session: %w", err)
			}
		}
		return nil
	})
}

func (c *Conn) sasl() error {
	mech := c.cfg.Mechanism
	if mech == "" {
		mech = ScramSHA1
	}
	if !strings.Contains(string(Child(c.features, "mechanisms")), ">"+mech+"<") {
		return fmt.Errorf("server does not offer %s: %.300s", mech, c.features)
	}
	sc, err := NewScram(mech, c.cfg.User, c.cfg.Password, c.cfg.Keys)
	if err != nil {
		return err
	}
	if err := c.writeFlush("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + mech + "'>" +
		base64.StdEncoding.EncodeToString(sc.First()) + "</auth>"); err != nil {
		return err
	}
	data, done, err := c.saslReply()
	if err != nil {
		return err
	}
	if done {
		return errors.New("SASL success before the proof")
	}
	final, err := sc.Final(data)
	if err != nil {
		return err
	}
	if err := c.writeFlush("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
		base64.StdEncoding.EncodeToString(final) + "</response>"); err != nil {
		return err
	}
	data, done, err = c.saslReply()
	if err != nil {
		return err
	}
	if err := sc.Verify(data); err != nil {
		return err
	}
	if !done {
		// The server-final message came in a challenge; <success/> follows.
		if err := c.writeFlush("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"); err != nil {
			return err
		}
		if _, done, err = c.saslReply(); err != nil {
			return err
		} else if !done {
			return errors.New("SASL: unexpected extra challenge")
		}
	}
	return nil
}

// saslReply reads a challenge (done=false) or success (done=true) and
// decodes its data.
func (c *Conn) saslReply() (data []byte, done bool, err error) {
	el, err := c.nextElement()
	if err != nil {
		return nil, false, err
	}
	switch {
	case HasName(el, "challenge"):
	case HasName(el, "success"):
		done = true
	case HasName(el, "failure"):
		return nil, false, fmt.Errorf("SASL failure: %.300s", el)
	default:
		return nil, false, fmt.Errorf("SASL: unexpected %.200s", el)
	}
	in := strings.TrimSpace(string(Inner(el)))
	if in == "=" {
		in = ""
	}
	data, err = base64.StdEncoding.DecodeString(in)
	if err != nil {
		return nil, false, fmt.Errorf("SASL: bad base64: %w", err)
	}
	return data, done, nil
}

// RosterGet requests the roster and waits for it.
func (c *Conn) RosterGet(ctx context.Context) error {
	return c.guard(ctx, func() error {
		if _, err := c.iq("get", "<query xmlns='jabber:iq:roster'/>"); err != nil {
			return fmt.Errorf("roster get: %w", err)
		}
		return nil
	})
}

// SendPresence sends initial presence.
func (c *Conn) SendPresence() error { return c.writeFlush("<presence/>") }

// JID returns the full JID bound by Login.
func (c *Conn) JID() string { return c.jid }

// Write buffers raw XML; Flush sends it.
func (c *Conn) Write(p []byte) (int, error) { return c.w.Write(p) }

// WriteString buffers raw XML; Flush sends it.
func (c *Conn) WriteString(s string) (int, error) { return c.w.WriteString(s) }

// Flush sends buffered data.
func (c *Conn) Flush() error { return c.w.Flush() }

// Buffered returns the number of bytes waiting to be flushed.
func (c *Conn) Buffered() int { return c.w.Buffered() }

// Next returns the next top-level element; see Framer.Next.
func (c *Conn) Next() ([]byte, error) {
	el, err := c.nextElement()
	return el, err
}

// SetDeadline sets the read and write deadline of the underlying
// connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying connection.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// Close ends the stream (without waiting for the server's answer) and
// closes the connection.
func (c *Conn) Close() error {
	c.raw.SetWriteDeadline(time.Now().Add(time.Second))
	c.w.WriteString("</stream:stream>")
	c.w.Flush()
	return c.conn.Close()
}
