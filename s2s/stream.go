package s2s

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"wren.im/wren/xmpp"
)

// Namespaces of server-to-server streams.
const (
	NSDialback        = "jabber:server:dialback"
	NSDialbackFeature = "urn:xmpp:features:dialback"
)

// writeTimeout bounds one write to a peer; a peer that does not read for
// this long is disconnected.
const writeTimeout = 30 * time.Second

// conn is the transport of one stream: the TCP connection, TLS once
// negotiated, the bounded reader and a buffered writer. Reads carry a
// deadline: a fixed one while the stream is negotiated, a rolling idle one
// afterwards.
type conn struct {
	raw    net.Conn
	tls    *tls.Conn
	dl     *deadlineConn
	reader *xmpp.Reader
	writer *bufio.Writer
}

func newConn(raw net.Conn, limits xmpp.Limits) *conn {
	c := &conn{raw: raw, dl: &deadlineConn{Conn: raw}}
	c.reader = xmpp.NewReader(c.dl, limits)
	c.writer = bufio.NewWriterSize(c.dl, 4096)
	return c
}

// useTLS switches the conn to an established TLS connection and resets
// the reader for the new stream.
func (c *conn) useTLS(t *tls.Conn) {
	c.tls = t
	c.dl.src = t
	c.reader.Reset(c.dl)
	c.writer.Reset(c.dl)
}

// handshake runs the TLS handshake on c as a client or server.
func (c *conn) handshake(ctx context.Context, cfg *tls.Config, client bool) error {
	if err := c.writer.Flush(); err != nil {
		return err
	}
	var t *tls.Conn
	if client {
		t = tls.Client(c.raw, cfg)
	} else {
		t = tls.Server(c.raw, cfg)
	}
	if err := t.HandshakeContext(ctx); err != nil {
		return &tlsError{err}
	}
	c.useTLS(t)
	return nil
}

// write serialises elements and flushes them, bounded in time.
func (c *conn) write(b []byte) error {
	c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.writer.Write(b); err != nil {
		return err
	}
	return c.writer.Flush()
}

// writeClose writes a stream error (if any) and the closing tag, bounded
// in time, and closes the connection.
func (c *conn) writeClose(se *xmpp.StreamError) {
	c.raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if se != nil {
		c.writer.Write(xmpp.AppendStreamElement(nil, se.Element()))
	}
	c.writer.WriteString("</stream:stream>")
	c.writer.Flush()
	c.raw.Close()
}

// tlsError marks a failed TLS handshake.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// header returns the opening tag of a server-to-server stream. The
// dialback prefix is declared so that peers can use <db:result/>.
func header(from, to, id string) []byte {
	h := xmpp.Header(xmpp.StreamHeader{NS: xmpp.NSServer, From: from, To: to, ID: id, Version: "1.0"})
	// Declare the dialback namespace on the stream element.
	return append(h[:len(h)-1], " xmlns:db='"+NSDialback+"'>"...)
}

// dbElement serialises a dialback element with the db: prefix that the
// stream header declares: some servers match the prefixed name literally.
func dbElement(local, from, to, id, typ, key string) []byte {
	el := xmpp.NewElement(NSDialback, local, "from", from, "to", to, "id", id, "type", typ)
	el.AppendText(key)
	return dbPrefixed(el)
}

// dbPrefixed serialises a dialback element as <db:local>...</db:local>.
func dbPrefixed(el *xmpp.Element) []byte {
	b := el.AppendXML(nil, NSDialback)
	out := append([]byte("<db:"), b[1:]...)
	if len(el.Children) > 0 {
		end := "</" + el.Local + ">"
		out = append(out[:len(out)-len(end)], "</db:"+el.Local+">"...)
	}
	return out
}

// toClientNS moves the elements of a stanza received on a server or
// component stream from that stream's namespace into jabber:client, the
// namespace stanzas have inside Wren.
func toClientNS(el *xmpp.Element, ns string) {
	if el.Space == ns {
		el.Space = xmpp.NSClient
	}
	for _, n := range el.Children {
		if c, ok := n.(*xmpp.Element); ok {
			toClientNS(c, ns)
		}
	}
}

// appendStanza serialises a stanza (namespaced jabber:client inside Wren)
// for a server or component stream: written with jabber:client as the
// default namespace in scope, its elements take the stream's namespace,
// and payloads that carry stanzas of their own (forwarded messages) keep
// an explicit jabber:client.
func appendStanza(buf []byte, el *xmpp.Element) []byte {
	return el.AppendXML(buf, xmpp.NSClient)
}

// deadlineConn sets a read deadline before every read.
type deadlineConn struct {
	net.Conn
	src     io.Reader // the TLS connection once negotiated
	fixed   time.Time
	idle    time.Duration
	stopped atomic.Bool
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if !c.fixed.IsZero() {
		c.Conn.SetReadDeadline(c.fixed)
	} else if c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	if c.src != nil {
		return c.src.Read(p)
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if w, ok := c.src.(io.Writer); ok {
		return w.Write(p)
	}
	return c.Conn.Write(p)
}

// stopReads makes the current and every later Read fail at once.
func (c *deadlineConn) stopReads() {
	c.stopped.Store(true)
	c.Conn.SetReadDeadline(time.Now())
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func isNetClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, xmpp.ErrStreamClosed)
}
