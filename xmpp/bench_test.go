package xmpp

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

const benchStanza = `<message to='bob@example.com/phone' from='alice@example.com/desk' type='chat' id='a1b2c3'><body>Hello Bob, how are you doing today?</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/><origin-id xmlns='urn:xmpp:sid:0' id='5f0a0f3e-2d1c'/></message>`

// BenchmarkReaderNext measures parsing one typical chat message off a
// stream (framing, limits, namespace resolution, tree building).
func BenchmarkReaderNext(b *testing.B) {
	const perStream = 1000
	stream := hdr + strings.Repeat(benchStanza, perStream)
	b.SetBytes(int64(len(benchStanza)))
	b.ReportAllocs()
	r := NewReader(strings.NewReader(stream), Limits{MaxBytes: 1 << 16, MaxDepth: 16, MaxAttrs: 32})
	left := 0
	for i := 0; i < b.N; i++ {
		if left == 0 {
			r = NewReader(strings.NewReader(stream), Limits{MaxBytes: 1 << 16, MaxDepth: 16, MaxAttrs: 32})
			if _, err := r.ReadHeader(); err != nil {
				b.Fatal(err)
			}
			left = perStream
		}
		if _, err := r.Next(); err != nil && err != io.ErrUnexpectedEOF {
			b.Fatal(err)
		}
		left--
	}
}

// BenchmarkAppendXML measures serialising the same message for a client.
func BenchmarkAppendXML(b *testing.B) {
	el, err := ParseElement([]byte(benchStanza))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var buf []byte
	for i := 0; i < b.N; i++ {
		buf = el.AppendXML(buf[:0], NSClient)
	}
	if !bytes.Contains(buf, []byte("Hello Bob")) {
		b.Fatal("bad output")
	}
}
