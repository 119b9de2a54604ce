package xmpp

import (
	"errors"
	"io"
	"strings"
	"testing"
)

const hdr = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`

var testLimits = Limits{MaxBytes: 1024, MaxDepth: 8, MaxAttrs: 8}

func readAll(t *testing.T, in string) ([]*Element, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), testLimits)
	h, err := r.ReadHeader()
	if err != nil {
		return nil, err
	}
	if h.To != "example.com" || h.NS != NSClient || h.Version != "1.0" {
		t.Fatalf("header = %+v", h)
	}
	var out []*Element
	for {
		el, err := r.Next()
		if err != nil {
			return out, err
		}
		out = append(out, el)
	}
}

func TestReaderStanzas(t *testing.T) {
	in := hdr + ` <message to='a@b' xml:lang='en'><body>hi &amp; &lt;there&gt;</body><x:foo xmlns:x='urn:x' x:attr='1'/></message>
	<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq></stream:stream>`
	els, err := readAll(t, in)
	if !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("err = %v, want ErrStreamClosed", err)
	}
	if len(els) != 2 {
		t.Fatalf("got %d elements", len(els))
	}
	m := els[0]
	if !m.Is(NSClient, "message") || m.Attr("to") != "a@b" || m.Lang() != "en" {
		t.Fatalf("message = %s", m)
	}
	if got := m.ChildText(NSClient, "body"); got != "hi & <there>" {
		t.Fatalf("body = %q", got)
	}
	foo := m.Child("urn:x", "foo")
	if foo == nil || len(foo.Attrs) != 1 || foo.Attrs[0].Space != "urn:x" {
		t.Fatalf("foo = %#v", foo)
	}
	if q := els[1].Child(NSRoster, "query"); q == nil {
		t.Fatalf("roster query missing in %s", els[1])
	}
	// Round trip keeps the meaning.
	want := `<message to='a@b' xml:lang='en'><body>hi &amp; &lt;there&gt;</body><foo xmlns='urn:x' xmlns:ns1='urn:x' ns1:attr='1'/></message>`
	if got := m.String(); got != want {
		t.Fatalf("serialised\n got %s\nwant %s", got, want)
	}
}

func TestReaderHostile(t *testing.T) {
	cases := []struct {
		name, in, cond string
	}{
		{"dtd", `<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY a "aaaa">]>` + hdr, StreamRestrictedXML},
		{"comment", hdr + `<!-- hi --><message/>`, StreamRestrictedXML},
		{"pi", hdr + `<?foo bar?><message/>`, StreamRestrictedXML},
		{"entity", hdr + `<message><body>&lol;</body></message>`, StreamNotWellFormed},
		{"mismatch", hdr + `<message><body></message>`, StreamNotWellFormed},
		{"bad utf8", hdr + "<message><body>\xff\xfe</body></message>", StreamNotWellFormed},
		{"too big", hdr + `<message><body>` + strings.Repeat("a", 2000) + `</body></message>`, StreamPolicyViolation},
		{"huge attr", hdr + `<message to='` + strings.Repeat("a", 2000) + `'/>`, StreamPolicyViolation},
		{"too deep", hdr + strings.Repeat("<a>", 20) + strings.Repeat("</a>", 20), StreamPolicyViolation},
		{"attrs", hdr + `<message a='1' b='1' c='1' d='1' e='1' f='1' g='1' h='1' i='1'/>`, StreamPolicyViolation},
		{"undeclared prefix", hdr + `<foo:message/>`, StreamInvalidNamespace},
		{"top text", hdr + `hello`, StreamBadFormat},
		{"dup attr", hdr + `<message to='a' to='b'/>`, StreamNotWellFormed},
		{"wrong stream ns", `<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='example.com'>`, StreamInvalidNamespace},
		{"wrong content ns", `<stream:stream xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>`, StreamInvalidNamespace},
		{"not a stream", `<html>`, StreamBadFormat},
		{"prefixed digit name", hdr + `<message xmlns:p='urn:x'><p:0/></message>`, StreamNotWellFormed},
		{"xml version", hdr + `<?xml version='1.1'?>`, StreamNotWellFormed},
		{"header xml version", `<?xml version='1.1'?>` + hdr[21:], StreamNotWellFormed},
		{"foreign stream end", hdr + `</foo:stream>`, StreamNotWellFormed},
		{"encoding", `<?xml version='1.0' encoding='ISO-8859-1'?>` + hdr[21:], StreamUnsupportedEncoding},
		{"second header, never closed", hdr + `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>`, StreamBadFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readAll(t, c.in)
			se, ok := AsStreamError(err)
			if !ok {
				t.Fatalf("err = %v, want stream error %s", err, c.cond)
			}
			if se.Condition != c.cond {
				t.Fatalf("condition = %s (%s), want %s", se.Condition, se.Text, c.cond)
			}
		})
	}
}

func TestReaderUnclosedAtEOF(t *testing.T) {
	_, err := readAll(t, hdr+`<message><body>half`)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
}

func TestReaderWhitespaceKeepalivesDoNotAccumulate(t *testing.T) {
	// 10 KiB of keepalives in 1 KiB limit: each run of whitespace is its own budget.
	in := hdr
	for i := 0; i < 100; i++ {
		in += strings.Repeat(" ", 100) + "<presence/>"
	}
	els, err := readAll(t, in)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(els) != 100 {
		t.Fatalf("got %d elements, err %v", len(els), err)
	}
}

func TestEscaping(t *testing.T) {
	e := NewElement(NSClient, "message", "to", `a'b"c<d>&`)
	e.AddChild(NSClient, "body").AppendText("x<y>&z\x01\r")
	want := `<message to='a&apos;b&quot;c&lt;d&gt;&amp;'><body>x&lt;y&gt;&amp;z` + "\uFFFD" + `&#13;</body></message>`
	if got := e.String(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// What we write must parse back to the same content.
	els, err := readAll(t, hdr+e.String())
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(els) != 1 {
		t.Fatalf("reparse: %v", err)
	}
	if els[0].Attr("to") != `a'b"c<d>&` || els[0].ChildText("", "body") != "x<y>&z\uFFFD\r" {
		t.Fatalf("reparsed = %s", els[0])
	}
}

func TestErrorReplyNeverAnswersError(t *testing.T) {
	m := NewElement(NSClient, "message", "type", "error", "from", "a@b/c", "to", "d@e")
	if ErrorReply(m, NewStanzaError(CondServiceUnavailable, "")) != nil {
		t.Fatal("an error was answered with an error")
	}
	iq := NewElement(NSClient, "iq", "type", "get", "id", "7", "from", "a@b/c", "to", "d@e")
	r := ErrorReply(iq, NewStanzaError(CondServiceUnavailable, ""))
	if r.Attr("to") != "a@b/c" || r.Attr("from") != "d@e" || r.Attr("type") != "error" || r.Attr("id") != "7" {
		t.Fatalf("reply = %s", r)
	}
	if r.Child(NSClient, "error").Attr("type") != "cancel" {
		t.Fatalf("reply = %s", r)
	}
}
