package c2s

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"wren.im/wren/xmpp"
)

// tlsRecord returns a TLS-like record: type, version 3.3, big-endian
// length, body.
func tlsRecord(typ byte, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

func fill(n int, c byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c + byte(i%7)
	}
	return b
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close(); client.Close() })
	return r.c, client
}

func pipePair(t *testing.T) (server, client net.Conn) {
	server, client = net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// needPeek skips tests that need waitReadable to block, which it only does
// where readable peeks at the socket.
func needPeek(t *testing.T) {
	t.Helper()
	switch runtime.GOOS {
	case "windows", "plan9", "js", "wasip1":
		t.Skip("waitReadable does not block on " + runtime.GOOS)
	}
}

func TestDeadlineConnRecordsNeverSpanTwo(t *testing.T) {
	recs := [][]byte{
		tlsRecord(0x17, []byte("hello")),
		tlsRecord(0x17, nil), // zero-length record
		tlsRecord(0x16, fill(300, 'a')),
		tlsRecord(0x17, fill(40, 'k')),   // split across writes below
		tlsRecord(0x17, fill(6000, 'A')), // larger than most reads
		tlsRecord(0x15, []byte{1, 0}),
	}
	var all []byte
	// Boundaries between headers and bodies, at the end of each.
	var bounds []int
	for _, r := range recs {
		bounds = append(bounds, len(all)+5)
		if len(r) > 5 {
			bounds = append(bounds, len(all)+len(r))
		}
		all = append(all, r...)
	}
	// Three records and the first 3 header bytes of the fourth in one
	// write; then the rest of that header and 2 body bytes; then the rest.
	split1 := len(recs[0]) + len(recs[1]) + len(recs[2]) + 3
	split2 := split1 + 4
	writes := [][]byte{all[:split1], all[split1:split2], all[split2:]}

	for _, tr := range []struct {
		name string
		pair func(*testing.T) (net.Conn, net.Conn)
	}{{"pipe", pipePair}, {"tcp", tcpPair}} {
		for _, bufSize := range []int{65536, 4096, 3, 1} {
			t.Run(fmt.Sprintf("%s/buf%d", tr.name, bufSize), func(t *testing.T) {
				srv, cli := tr.pair(t)
				dc := &deadlineConn{Conn: srv, records: true, idle: 5 * time.Second}
				werr := make(chan error, 1)
				go func() {
					for _, w := range writes {
						if _, err := cli.Write(w); err != nil {
							werr <- err
							return
						}
					}
					werr <- nil
				}()
				var got []byte
				buf := make([]byte, bufSize)
				for len(got) < len(all) {
					n, err := dc.Read(buf)
					if err != nil {
						t.Fatalf("Read after %d bytes: %v", len(got), err)
					}
					if n == 0 {
						t.Fatalf("Read returned (0, nil) after %d bytes", len(got))
					}
					off := len(got)
					end := off + n
					next := nextBound(bounds, off)
					if end > next {
						t.Fatalf("Read returned bytes [%d,%d) crossing the record boundary at %d", off, end, next)
					}
					if dc.buffered() > 0 && end != next && end != off+bufSize {
						// Bytes read ahead: a read ends at the record part
						// or the caller's buffer, never earlier.
						t.Fatalf("Read returned [%d,%d) with %d bytes read ahead, want it to end at %d", off, end, dc.buffered(), min(next, off+bufSize))
					}
					got = append(got, buf[:n]...)
				}
				if !bytes.Equal(got, all) {
					t.Fatalf("read bytes differ from written ones at %d", firstDifference(got, all))
				}
				if dc.hdrN != 0 || dc.left != 0 {
					t.Fatalf("at a record boundary: hdrN=%d left=%d", dc.hdrN, dc.left)
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func nextBound(bounds []int, off int) int {
	for _, b := range bounds {
		if b > off {
			return b
		}
	}
	return int(^uint(0) >> 1)
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestDeadlineConnNoRecordsReadsEverything(t *testing.T) {
	srv, cli := pipePair(t)
	dc := &deadlineConn{Conn: srv}
	var all []byte
	for _, r := range [][]byte{tlsRecord(0x17, []byte("one")), tlsRecord(0x17, nil), tlsRecord(0x17, fill(300, 'x'))} {
		all = append(all, r...)
	}
	go cli.Write(all)
	buf := make([]byte, 4096)
	n, err := dc.Read(buf)
	if err != nil || n != len(all) || !bytes.Equal(buf[:n], all) {
		t.Fatalf("Read = %d, %v; want all %d bytes at once", n, err, len(all))
	}
	if dc.hdrN != 0 || dc.left != 0 {
		t.Fatalf("framing followed without records: hdrN=%d left=%d", dc.hdrN, dc.left)
	}

	// Plain XMPP (not TLS records) is not cut at "record" boundaries either.
	plain := []byte("<stream:stream xmlns='jabber:client'>")
	go cli.Write(plain)
	n, err = dc.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], plain) {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

func TestDeadlineConnAccount(t *testing.T) {
	dc := &deadlineConn{records: true}
	body := fill(0x0102, 'a') // length needs both bytes: 258
	stream := append(tlsRecord(0x17, body), tlsRecord(0x17, nil)...)
	stream = append(stream, tlsRecord(0x17, []byte{9})...)
	// One byte at a time.
	for i, c := range stream {
		dc.account([]byte{c})
		var wantHdrN, wantLeft int
		switch {
		case i < 4:
			wantHdrN = i + 1
		case i < 5+258:
			wantLeft = 5 + 258 - 1 - i
		case i < 5+258+4:
			wantHdrN = i - (5 + 258) + 1
		case i == 5+258+4: // the empty record's header is complete
		case i < 5+258+5+4:
			wantHdrN = i - (5 + 258 + 5) + 1
		case i == 5+258+5+4:
			wantLeft = 1
		}
		if dc.hdrN != wantHdrN || dc.left != wantLeft {
			t.Fatalf("after byte %d: hdrN=%d left=%d, want %d, %d", i, dc.hdrN, dc.left, wantHdrN, wantLeft)
		}
	}
	if dc.hdrN != 0 || dc.left != 0 {
		t.Fatalf("at the end: hdrN=%d left=%d", dc.hdrN, dc.left)
	}
	// All at once (as after a read that was not limited).
	dc = &deadlineConn{records: true}
	dc.account(stream[:len(stream)-1])
	if dc.hdrN != 0 || dc.left != 1 {
		t.Fatalf("in bulk: hdrN=%d left=%d, want 0, 1", dc.hdrN, dc.left)
	}
	// Header split 2+3, body in two pieces.
	dc = &deadlineConn{records: true}
	rec := tlsRecord(0x16, fill(0x1234, 'z'))
	dc.account(rec[:2])
	dc.account(rec[2:5])
	if dc.hdrN != 0 || dc.left != 0x1234 {
		t.Fatalf("after a split header: hdrN=%d left=%d, want 0, %d", dc.hdrN, dc.left, 0x1234)
	}
	dc.account(rec[5:105])
	if dc.left != 0x1234-100 {
		t.Fatalf("left = %d, want %d", dc.left, 0x1234-100)
	}
}

// selfSigned returns a certificate for "localhost" and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// holdConn collects writes while hold is set and sends them in one write
// on flush, so that several TLS records reach the peer together.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	buf  []byte
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	if h.hold {
		h.buf = append(h.buf, p...)
		h.mu.Unlock()
		return len(p), nil
	}
	h.mu.Unlock()
	return h.Conn.Write(p)
}

func (h *holdConn) setHold() {
	h.mu.Lock()
	h.hold = true
	h.mu.Unlock()
}

// flush sends what was held in one write and returns it.
func (h *holdConn) flush() ([]byte, error) {
	h.mu.Lock()
	b := h.buf
	h.buf, h.hold = nil, false
	h.mu.Unlock()
	_, err := h.Conn.Write(b)
	return b, err
}

// countRecords counts the TLS records in b, which must hold whole ones.
func countRecords(t *testing.T, b []byte) int {
	t.Helper()
	n := 0
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("partial record header")
		}
		l := int(b[3])<<8 | int(b[4])
		if len(b) < 5+l {
			t.Fatalf("partial record")
		}
		b = b[5+l:]
		n++
	}
	return n
}

// tlsOverDeadlineConn connects a tls.Client to a tls.Server that reads
// through a deadlineConn with records set, and completes the handshake.
func tlsOverDeadlineConn(t *testing.T, version uint16) (dc *deadlineConn, srv *tls.Conn, hc *holdConn, cli *tls.Conn) {
	t.Helper()
	cert, roots := selfSigned(t)
	rawSrv, rawCli := tcpPair(t)
	dc = &deadlineConn{Conn: rawSrv, records: true, idle: 5 * time.Second}
	srv = tls.Server(dc, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version})
	hc = &holdConn{Conn: rawCli}
	cli = tls.Client(hc, &tls.Config{
		RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version,
		// Full-size records, so that one record outgrows a read buffer.
		DynamicRecordSizingDisabled: true,
	})
	herr := make(chan error, 1)
	go func() { herr <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-herr; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if got := srv.ConnectionState().Version; got != version {
		t.Fatalf("negotiated version %x, want %x", got, version)
	}
	if dc.hdrN != 0 || dc.left != 0 {
		t.Fatalf("after the handshake: hdrN=%d left=%d, want a record boundary", dc.hdrN, dc.left)
	}
	return dc, srv, hc, cli
}

func readExactly(t *testing.T, r io.Reader, want string) {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != want {
		t.Fatalf("Read = %q, %v; want %q", buf[:n], err, want)
	}
}

func TestDeadlineConnTLS(t *testing.T) {
	needPeek(t)
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			dc, srv, hc, cli := tlsOverDeadlineConn(t, v.version)

			// Two application-data records in one TCP write.
			hc.setHold()
			if _, err := cli.Write([]byte("first")); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Write([]byte("second")); err != nil {
				t.Fatal(err)
			}
			sent, err := hc.flush()
			if err != nil {
				t.Fatal(err)
			}
			if n := countRecords(t, sent); n != 2 {
				t.Fatalf("client sent %d records, want 2", n)
			}

			dc.idle = 2 * time.Second
			if err := dc.waitReadable(); err != nil {
				t.Fatalf("waitReadable with data sent: %v", err)
			}
			readExactly(t, srv, "first")
			if dc.hdrN != 0 || dc.left != 0 {
				t.Fatalf("after one record: hdrN=%d left=%d", dc.hdrN, dc.left)
			}
			// crypto/tls must not have pulled the second record in: it is
			// read ahead by the connection (buffered) or still on the
			// socket (readable).
			dc.idle = 200 * time.Millisecond
			if dc.buffered() == 0 {
				if err := dc.waitReadable(); err != nil {
					t.Fatalf("waitReadable with the second record pending: %v (did TLS read ahead?)", err)
				}
			}
			readExactly(t, srv, "second")

			// Drained: waitReadable blocks until the idle deadline.
			dc.idle = 150 * time.Millisecond
			start := time.Now()
			err = dc.waitReadable()
			if !errors.Is(err, os.ErrDeadlineExceeded) || !isTimeout(err) {
				t.Fatalf("waitReadable on a drained connection = %v, want a deadline error", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("deadline error %v is not a net.Error timeout", err)
			}
			if d := time.Since(start); d < 100*time.Millisecond {
				t.Fatalf("waitReadable returned after %v, before the deadline", d)
			}

			// It returns promptly when the client sends more.
			dc.idle = 5 * time.Second
			done := make(chan error, 1)
			go func() { done <- dc.waitReadable() }()
			select {
			case err := <-done:
				t.Fatalf("waitReadable returned %v with nothing sent", err)
			case <-time.After(100 * time.Millisecond):
			}
			start = time.Now()
			if _, err := cli.Write([]byte("third")); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("waitReadable after the client wrote: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("waitReadable did not return when the client wrote")
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("waitReadable took %v", d)
			}
			// The earlier deadline error did not break the TLS connection.
			readExactly(t, srv, "third")

			// A record larger than the reader's buffer comes through a
			// PooledReader waiting with waitReadable, as in a session.
			big := bytes.Repeat([]byte("0123456789abcdef"), 1500) // 24000 bytes: two records
			in := xmpp.NewPooledReader(xmpp.NewBufferPool(ioBufferSize))
			in.Reset(srv, waitInputOf(dc))
			dc.idle = 2 * time.Second
			wdone := make(chan error, 1)
			go func() { _, err := cli.Write(big); wdone <- err }()
			got := make([]byte, len(big))
			if _, err := io.ReadFull(in, got); err != nil {
				t.Fatalf("reading a large write: %v", err)
			}
			if err := <-wdone; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, big) {
				t.Fatal("large write corrupted")
			}
			if in.Holding() {
				t.Fatal("pooled reader holds a buffer after the data")
			}
			dc.idle = 150 * time.Millisecond
			if err := dc.waitReadable(); !isTimeout(err) {
				t.Fatalf("waitReadable after the large write = %v, want a deadline error", err)
			}

			// The client closes its side (close_notify; the TCP connection
			// stays open, so that unread tickets do not turn into a reset):
			// waitReadable returns and the read reports EOF.
			dc.idle = 2 * time.Second
			if err := cli.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if err := dc.waitReadable(); err != nil {
				t.Fatalf("waitReadable after close_notify: %v", err)
			}
			if n, err := srv.Read(make([]byte, 16)); n != 0 || err != io.EOF {
				t.Fatalf("Read after close = %d, %v, want io.EOF", n, err)
			}
		})
	}
}

func TestDeadlineConnTLSStanzas(t *testing.T) {
	needPeek(t)
	dc, srv, hc, cli := tlsOverDeadlineConn(t, tls.VersionTLS13)
	in := xmpp.NewPooledReader(xmpp.NewBufferPool(ioBufferSize))
	in.Reset(srv, waitInputOf(dc))
	r := xmpp.NewReader(in, xmpp.Limits{MaxBytes: 1 << 16, MaxDepth: 8, MaxAttrs: 8})
	dc.idle = 2 * time.Second

	header := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`
	body := strings.Repeat("x", 3*ioBufferSize+17) // larger than the read buffer
	if _, err := cli.Write([]byte(header + `<message id='big'><body>` + body + `</body></message>`)); err != nil {
		t.Fatal(err)
	}
	h, err := r.ReadHeader()
	if err != nil || h.To != "example.com" {
		t.Fatalf("ReadHeader = %+v, %v", h, err)
	}
	el, err := r.Next()
	if err != nil || el.Attr("id") != "big" || el.ChildText(xmpp.NSClient, "body") != body {
		t.Fatalf("big message: %v, %v", el, err)
	}
	if in.Holding() {
		t.Fatal("holding a buffer after a complete stanza")
	}

	// Two stanzas in two records in one TCP write.
	hc.setHold()
	cli.Write([]byte(`<presence id='p1'/>`))
	cli.Write([]byte(`<iq type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>`))
	if _, err := hc.flush(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p1", "i1"} {
		// The session loop: wait while nothing is buffered, then parse.
		if in.Buffered() == 0 && dc.buffered() == 0 {
			if err := dc.waitReadable(); err != nil {
				t.Fatalf("before %s: %v", id, err)
			}
		}
		el, err := r.Next()
		if err != nil || el.Attr("id") != id {
			t.Fatalf("stanza %s: %v, %v", id, el, err)
		}
		if in.Holding() || in.Buffered() != 0 {
			t.Fatalf("after %s: holding=%v buffered=%d", id, in.Holding(), in.Buffered())
		}
	}
	dc.idle = 150 * time.Millisecond
	if err := dc.waitReadable(); !isTimeout(err) {
		t.Fatalf("idle wait = %v, want a deadline error", err)
	}
	if in.Holding() {
		t.Fatal("holding a buffer while idle")
	}
	dc.idle = 2 * time.Second
	cli.Write([]byte(`</stream:stream>`))
	if _, err := r.Next(); !errors.Is(err, xmpp.ErrStreamClosed) {
		t.Fatalf("stream end: %v", err)
	}
	// Idle inside Next: the pooled reader's wait fails at the deadline,
	// with no buffer held. (The XML decoder keeps that error, so this
	// comes last.)
	dc.idle = 150 * time.Millisecond
	if _, err := r.Next(); !isTimeout(err) {
		t.Fatalf("Next on an idle connection = %v, want a deadline error", err)
	}
	if in.Holding() || in.Buffered() != 0 {
		t.Fatalf("after an idle Next: holding=%v buffered=%d", in.Holding(), in.Buffered())
	}
}

func TestDeadlineConnWaitReadable(t *testing.T) {
	needPeek(t)
	t.Run("data already there", func(t *testing.T) {
		t.Parallel()
		srv, cli := tcpPair(t)
		dc := &deadlineConn{Conn: srv, idle: 2 * time.Second}
		if _, err := cli.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if err := dc.waitReadable(); err != nil {
			t.Fatalf("waitReadable: %v", err)
		}
		// Nothing was consumed: waiting again succeeds at once.
		dc.idle = 100 * time.Millisecond
		for range 3 {
			start := time.Now()
			if err := dc.waitReadable(); err != nil {
				t.Fatalf("waitReadable again: %v (was the data consumed?)", err)
			}
			if d := time.Since(start); d > 90*time.Millisecond {
				t.Fatalf("waitReadable with data took %v", d)
			}
		}
		got := make([]byte, 3)
		if _, err := io.ReadFull(dc, got); err != nil || string(got) != "abc" {
			t.Fatalf("Read = %q, %v", got, err)
		}
		if err := dc.waitReadable(); !isTimeout(err) {
			t.Fatalf("waitReadable after reading everything = %v, want a deadline error", err)
		}
	})
	t.Run("blocks until data arrives", func(t *testing.T) {
		t.Parallel()
		srv, cli := tcpPair(t)
		dc := &deadlineConn{Conn: srv, idle: 5 * time.Second}
		done := make(chan error, 1)
		go func() { done <- dc.waitReadable() }()
		select {
		case err := <-done:
			t.Fatalf("waitReadable returned %v before any data", err)
		case <-time.After(150 * time.Millisecond):
		}
		cli.Write([]byte("x"))
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("waitReadable: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("waitReadable did not return after data arrived")
		}
		b := make([]byte, 8)
		if n, err := dc.Read(b); n != 1 || b[0] != 'x' || err != nil {
			t.Fatalf("Read = %q, %v", b[:n], err)
		}
	})
	t.Run("idle deadline", func(t *testing.T) {
		t.Parallel()
		srv, _ := tcpPair(t)
		dc := &deadlineConn{Conn: srv, idle: 150 * time.Millisecond}
		for range 2 { // the deadline rolls: each wait gets a fresh one
			start := time.Now()
			err := dc.waitReadable()
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("waitReadable = %v, want os.ErrDeadlineExceeded", err)
			}
			if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
				t.Fatalf("waitReadable failed after %v, want about 150ms", d)
			}
		}
	})
	t.Run("fixed deadline wins over idle", func(t *testing.T) {
		t.Parallel()
		srv, _ := tcpPair(t)
		dc := &deadlineConn{Conn: srv, fixed: time.Now().Add(150 * time.Millisecond), idle: time.Minute}
		start := time.Now()
		if err := dc.waitReadable(); !isTimeout(err) {
			t.Fatalf("waitReadable = %v, want a deadline error", err)
		}
		if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
			t.Fatalf("waitReadable failed after %v, want about 150ms", d)
		}
		// A fixed deadline does not move: the next wait fails at once.
		start = time.Now()
		if err := dc.waitReadable(); !isTimeout(err) {
			t.Fatalf("second waitReadable = %v", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("second waitReadable took %v past a fixed deadline", d)
		}
	})
	t.Run("stopReads", func(t *testing.T) {
		t.Parallel()
		srv, cli := tcpPair(t)
		dc := &deadlineConn{Conn: srv} // no deadline at all
		done := make(chan error, 1)
		go func() { done <- dc.waitReadable() }()
		select {
		case err := <-done:
			t.Fatalf("waitReadable returned %v before stopReads", err)
		case <-time.After(100 * time.Millisecond):
		}
		dc.stopReads()
		select {
		case err := <-done:
			if !isTimeout(err) {
				t.Fatalf("waitReadable after stopReads = %v, want a deadline error", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("stopReads did not end a blocked waitReadable")
		}
		// Later waits and reads fail at once, even with data and an idle timeout.
		cli.Write([]byte("late"))
		dc.idle = time.Minute
		if err := dc.waitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("waitReadable after stopReads = %v", err)
		}
		if n, err := dc.Read(make([]byte, 8)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after stopReads = %d, %v", n, err)
		}
	})
	t.Run("peer closes", func(t *testing.T) {
		t.Parallel()
		srv, cli := tcpPair(t)
		dc := &deadlineConn{Conn: srv, idle: 5 * time.Second, records: true}
		done := make(chan error, 1)
		go func() { done <- dc.waitReadable() }()
		select {
		case err := <-done:
			t.Fatalf("waitReadable returned %v before the close", err)
		case <-time.After(100 * time.Millisecond):
		}
		cli.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("waitReadable after the peer closed: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("waitReadable did not return when the peer closed")
		}
		if n, err := dc.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("Read = %d, %v, want io.EOF", n, err)
		}
	})
	t.Run("peer resets", func(t *testing.T) {
		t.Parallel()
		srv, cli := tcpPair(t)
		dc := &deadlineConn{Conn: srv, idle: 2 * time.Second}
		done := make(chan error, 1)
		go func() { done <- dc.waitReadable() }()
		select {
		case err := <-done:
			t.Fatalf("waitReadable returned %v before the reset", err)
		case <-time.After(100 * time.Millisecond):
		}
		cli.(*net.TCPConn).SetLinger(0) // close with RST
		cli.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("waitReadable after a reset: %v", err)
			}
		case <-time.After(time.Second):
			t.Fatal("waitReadable did not return when the peer reset the connection")
		}
		if n, err := dc.Read(make([]byte, 8)); n != 0 || !isNetClosed(err) {
			t.Fatalf("Read after a reset = %d, %v, want a closed-connection error", n, err)
		}
	})
	t.Run("peer closes after data", func(t *testing.T) {
		t.Parallel()
		srv, cli := tcpPair(t)
		dc := &deadlineConn{Conn: srv, idle: 2 * time.Second}
		cli.Write([]byte("bye"))
		cli.Close()
		if err := dc.waitReadable(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(dc)
		if err != nil || string(got) != "bye" {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
	})
}

func TestDeadlineConnWaitReadableNotSocket(t *testing.T) {
	srv, _ := pipePair(t)
	dc := &deadlineConn{Conn: srv, idle: time.Minute}
	done := make(chan error, 1)
	go func() { done <- dc.waitReadable() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitReadable on a pipe = %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("waitReadable blocked on a connection that is not a socket")
	}
	dc.stopReads()
	if err := dc.waitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waitReadable after stopReads = %v", err)
	}
}

func TestDeadlineConnReadDeadlines(t *testing.T) {
	srv, cli := pipePair(t)
	dc := &deadlineConn{Conn: srv, records: true, idle: 150 * time.Millisecond}
	start := time.Now()
	if _, err := dc.Read(make([]byte, 64)); !isTimeout(err) {
		t.Fatalf("Read with nothing sent = %v, want a deadline error", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("Read failed after %v", d)
	}
	if dc.hdrN != 0 || dc.left != 0 {
		t.Fatalf("a failed read moved the framing: hdrN=%d left=%d", dc.hdrN, dc.left)
	}
	// The connection still works, and framing resumes where it was.
	dc.idle = 2 * time.Second
	rec := tlsRecord(0x17, []byte("data"))
	go cli.Write(rec)
	b := make([]byte, 64)
	if n, err := dc.Read(b); n != 5 || err != nil {
		t.Fatalf("header Read = %d, %v", n, err)
	}
	if n, err := dc.Read(b); n != 4 || err != nil || string(b[:n]) != "data" {
		t.Fatalf("body Read = %q, %v", b[:n], err)
	}
}

// waitInputOf is the wait of a reader over TLS on c: input read ahead
// counts, else the socket is waited for.
func waitInputOf(c *deadlineConn) func() error {
	return func() error {
		if c.buffered() > 0 {
			return nil
		}
		return c.waitReadable()
	}
}
