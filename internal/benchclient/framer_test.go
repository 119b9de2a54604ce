package benchclient

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const sampleStream = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='a>b' from='localhost' version='1.0'>` +
	`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>` +
	"\n \t" +
	`<message to='a@b' id='m&amp;1' type="chat"><body>1 2 &lt;x&gt;</body><!-- c<o>mment --><x xmlns='y'><![CDATA[<not a tag>]]></x></message>` +
	` <presence/>` +
	`<iq type='result' id="q1" attr="a'b>"><query xmlns='jabber:iq:roster'><item jid='c@d'/></query></iq>` +
	`</stream:stream>`

var wantElements = []string{
	`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>`,
	`<message to='a@b' id='m&amp;1' type="chat"><body>1 2 &lt;x&gt;</body><!-- c<o>mment --><x xmlns='y'><![CDATA[<not a tag>]]></x></message>`,
	`<presence/>`,
	`<iq type='result' id="q1" attr="a'b>"><query xmlns='jabber:iq:roster'><item jid='c@d'/></query></iq>`,
}

// readAll frames a whole stream and returns the header and elements.
func readAll(t *testing.T, r io.Reader, max int) (string, []string) {
	t.Helper()
	f := NewFramer(r, max)
	var hdr string
	var els []string
	for {
		kind, el, err := f.Next()
		if errors.Is(err, ErrStreamEnd) {
			return hdr, els
		}
		if err != nil {
			t.Fatalf("Next after %d elements: %v", len(els), err)
		}
		switch kind {
		case Header:
			if hdr != "" {
				t.Fatalf("second header %q", el)
			}
			hdr = string(el)
		case Element:
			els = append(els, string(el))
		}
	}
}

func TestFramerSplitsElements(t *testing.T) {
	readers := map[string]func() io.Reader{
		"whole":     func() io.Reader { return strings.NewReader(sampleStream) },
		"bytewise":  func() io.Reader { return iotest.OneByteReader(strings.NewReader(sampleStream)) },
		"halfreads": func() io.Reader { return iotest.HalfReader(strings.NewReader(sampleStream)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			// A small maximum makes the buffer grow and compact.
			hdr, els := readAll(t, mk(), 256)
			if !strings.HasPrefix(hdr, "<stream:stream ") || !strings.HasSuffix(hdr, "version='1.0'>") {
				t.Errorf("header = %q", hdr)
			}
			if len(els) != len(wantElements) {
				t.Fatalf("got %d elements %q, want %d", len(els), els, len(wantElements))
			}
			for i := range els {
				if els[i] != wantElements[i] {
					t.Errorf("element %d = %q, want %q", i, els[i], wantElements[i])
				}
			}
		})
	}
}

func TestFramerLimitsAndEOF(t *testing.T) {
	big := `<stream:stream>` + `<message><body>` + strings.Repeat("x", 5000) + `</body></message>`
	f := NewFramer(strings.NewReader(big), 1024)
	if _, _, err := f.Next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Next(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized element: err = %v, want ErrTooLarge", err)
	}
	f = NewFramer(strings.NewReader(`<stream:stream><message>`), 0)
	f.Next()
	if _, _, err := f.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated stream: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestExtractors(t *testing.T) {
	el := []byte(wantElements[1])
	if !HasName(el, "message") || HasName(el, "mess") || Name(el) != "message" {
		t.Errorf("name of %q: %q", el, Name(el))
	}
	if v, ok := Attr(el, "id"); !ok || v != "m&1" {
		t.Errorf("id = %q, %v", v, ok)
	}
	if v, ok := Attr(el, "type"); !ok || v != "chat" {
		t.Errorf("type = %q, %v", v, ok)
	}
	if _, ok := Attr(el, "from"); ok {
		t.Error("from found on a message without it")
	}
	if v, ok := ChildText(el, "body"); !ok || v != "1 2 <x>" {
		t.Errorf("body = %q, %v", v, ok)
	}
	iq := []byte(wantElements[3])
	if v, _ := Attr(iq, "attr"); v != "a'b>" {
		t.Errorf("attr = %q", v)
	}
	if c := Child(iq, "item"); string(c) != "<item jid='c@d'/>" {
		t.Errorf("item = %q", c)
	}
	if c := Child(iq, "it"); c != nil {
		t.Errorf("prefix match: %q", c)
	}
	if in := Inner([]byte("<success xmlns='x'>dj1h</success>")); string(in) != "dj1h" {
		t.Errorf("inner = %q", in)
	}
	if in := Inner([]byte("<success/>")); in != nil {
		t.Errorf("inner of empty = %q", in)
	}
	if got := Unescape([]byte("a&#65;&#x42;&bogus;")); got != "aAB&bogus;" {
		t.Errorf("Unescape = %q", got)
	}
	if got := Escape(`<a&'">`); got != "&lt;a&amp;&apos;&quot;&gt;" {
		t.Errorf("Escape = %q", got)
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	check := func(q float64, want time.Duration) {
		t.Helper()
		got := h.Quantile(q)
		if d := got - want; d > want/25 || d < -want/25 {
			t.Errorf("q%.2f = %v, want %v ±4%%", q, got, want)
		}
	}
	check(0.5, 500*time.Millisecond)
	check(0.99, 990*time.Millisecond)
	if h.Max() != time.Second || h.Count() != 1000 {
		t.Errorf("max %v count %d", h.Max(), h.Count())
	}
	var g Histogram
	g.Record(3 * time.Second)
	h.Merge(&g)
	if h.Max() != 3*time.Second || h.Quantile(1) != 3*time.Second {
		t.Errorf("after merge: max %v q1 %v", h.Max(), h.Quantile(1))
	}
	for v := uint64(0); v < 1<<40; v = v*3/2 + 1 {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucket of %d = %d", v, b)
		}
		if mid := bucketValue(b); float64(mid) < float64(v)*0.96 || float64(mid) > float64(v)*1.04+1 {
			t.Fatalf("value %d -> bucket %d -> %d", v, b, mid)
		}
	}
}

func BenchmarkFramer(b *testing.B) {
	msg := `<message to='bench1@localhost' from='bench0@localhost/x' type='chat' id='m1'><body>12345 678901234</body></message>`
	data := []byte(`<stream:stream>` + strings.Repeat(msg, 1000))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		f := NewFramer(strings.NewReader(string(data)), 0)
		f.Next()
		for range 1000 {
			if _, _, err := f.Next(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
