package xmpp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"
)

// Fuzz targets for the stream reader, the serialiser and the JID library.
//
//	go test -run x -fuzz FuzzReader -fuzztime 2m ./xmpp
//	go test -run x -fuzz FuzzStreamHeader -fuzztime 2m ./xmpp
//	go test -run x -fuzz FuzzJID -fuzztime 2m ./xmpp
//
// Plain `go test` replays the seeds below and testdata/fuzz/<Target>/.

// fuzzLimits are deliberately small so that the fuzzer reaches the byte,
// depth and attribute limits with short inputs.
var fuzzLimits = Limits{MaxBytes: 512, MaxDepth: 6, MaxAttrs: 6}

// fuzzHeader is the stream header that FuzzReader inputs follow.
const fuzzHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>`

// readerSeeds are stream contents after the header: realistic stanzas and
// hostile input.
var readerSeeds = []string{
	// Realistic traffic.
	`<message to='juliet@example.com/balcony' id='m1' type='chat' xml:lang='en'><body>Art thou not Romeo?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
	`<presence><show>away</show><status>at &lt;lunch&gt; &amp; back soon</status><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>`,
	`<iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver=''/></iq>`,
	`<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>`,
	`<iq type='get' id='d1' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
	`<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`,
	`<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Juliet</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>`,
	`<message to='a@example.com'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:push:summary</value></field></x></message>`,
	`<enable xmlns='urn:xmpp:sm:3' resume='true'/><r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='42'/>`,
	`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>cD10bHMtZXhwb3J0ZXIsLG49dXNlcixyPWZ5a28rZDJsYmJGZ09OUnY5cWt4ZGF3TA==</auth>`,
	`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
	"   \n\t <presence/> \r\n <presence type='unavailable'/>",
	`<message><body>multi` + "\r\nline\rtext\ttab" + `</body></message>`,
	`<message><body><![CDATA[<not> & markup]]></body></message>`,
	`<message><body>ünïcödé ✓ 😀 &#x1F600; &#233;</body></message>`,
	`<presence/></stream:stream>`,
	`</stream:stream>`,
	// Namespaces and prefixes.
	`<message><x:foo xmlns:x='urn:x' x:attr='1' xml:lang='de'><x:bar/><baz/></x:foo></message>`,
	`<message xmlns:a='urn:a' xmlns:b='urn:a' a:x='1' b:y='2'/>`,
	`<message xmlns:a='urn:a' xmlns:b='urn:a' a:x='1' b:x='2'/>`,
	`<message><a xmlns=''><b/></a></message>`,
	`<message><a xmlns='urn:a'><b xmlns='jabber:client'/><c xmlns='urn:c'><d/></c></a></message>`,
	`<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>`,
	`<foo:message/>`,
	`<message xmlns:p=''/>`,
	`<message p:attr='1'/>`,
	`<message xmlns:p='urn:p'><p:x/></message><p:y/>`,
	`<message xmlns:xml='urn:notxml' xml:lang='en'/>`,
	`<message><:a/><a:/></message>`,
	// Hostile.
	`<!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><message><body>&lol2;</body></message>`,
	`<message><body>&xxe;</body></message>`,
	`<!ENTITY xxe SYSTEM "file:///etc/passwd">`,
	`<message><body>&#0;&#x1;</body></message>`,
	`<message><body>&#xD800;&#xFFFE;&#1114112;</body></message>`,
	`<!-- comment --><message/>`,
	`<?php echo 1; ?><message/>`,
	`<?xml version='1.0'?><message/>`,
	"<message><body>\xff\xfe\xc3\x28</body></message>",
	"<message to='\xed\xa0\x80'/>",
	"<messa\xffge/>",
	`<message><body>]]></body></message>`,
	`<message><body></message>`,
	`<message></body>`,
	`</message>`,
	`hello`,
	`<message to='a' to='b'/>`,
	`<message a='1' b='2' c='3' d='4' e='5' f='6' g='7'/>`,
	`<message to='` + strings.Repeat("a", 600) + `'/>`,
	`<message><body>` + strings.Repeat("x", 600) + `</body></message>`,
	strings.Repeat("<a>", 10) + strings.Repeat("</a>", 10),
	strings.Repeat("<a>", 6) + strings.Repeat("</a>", 6),
	strings.Repeat("<a xmlns:p='urn:p'>", 5) + strings.Repeat("</a>", 5),
	strings.Repeat(" ", 700) + `<presence/>`,
	`<message to="double" from='single' id=unquoted/>`,
	`<message to='a<b'/>`,
	`<message>` + strings.Repeat("<b/>", 100) + `</message>`,
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
	`<message></stream:stream>`,
	`</foo:stream>`,
}

// headerSeeds are whole stream openings.
var headerSeeds = []string{
	fuzzHeader,
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`,
	`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" xmlns:db="jabber:server:dialback" from="a.example" to="b.example" version="1.0">`,
	`<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='push.example.com'>`,
	`<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'>`,
	`<stream xmlns='http://etherx.jabber.org/streams'>`,
	`<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>`,
	`<stream:stream xmlns='urn:other' xmlns:stream='http://etherx.jabber.org/streams'>`,
	`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`,
	`<stream:stream xmlns='jabber:client'>`,
	`<html><body>`,
	`GET / HTTP/1.1` + "\r\nHost: example.com\r\n\r\n",
	"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	`<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>`,
	`<?xml version='1.0' encoding='UTF-16'?>`,
	`<?xml version='1.0'?><?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
	`<?foo bar?>`,
	`<!DOCTYPE stream [<!ENTITY a "b">]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
	`<!-- hi --><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`,
	`   text<stream:stream>`,
	`</stream:stream>`,
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + strings.Repeat("a", 5000) + `'>`,
	"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='\xff\xfe'>",
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a&amp;b' from="x'y" id='&#x41;' xml:lang='en-GB'>`,
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a' to='b'>`,
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xml='urn:x' xml:lang='en'>`,
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'/>`,
	`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'`,
	``,
}

// FuzzReader feeds the bytes that follow a valid stream header to
// Reader.Next until it fails. The reader must not panic, must make
// progress, must fail only with the documented errors, must respect its
// limits, and every element it returns must survive a serialise/parse
// round trip unchanged.
func FuzzReader(f *testing.F) {
	for _, s := range readerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := io.MultiReader(strings.NewReader(fuzzHeader), bytes.NewReader(data))
		r := NewReader(in, fuzzLimits)
		h, err := r.ReadHeader()
		if err != nil {
			t.Fatalf("the fixed header was refused: %v", err)
		}
		if h.NS != NSClient || h.To != "example.com" {
			t.Fatalf("header = %+v", h)
		}
		// Every element takes at least four bytes (<a/>), so a reader that
		// makes progress returns an error within len(data)/4+1 calls.
		for i := 0; ; i++ {
			if i > len(data)/4+1 {
				t.Fatalf("Next returned %d elements from %d bytes", i, len(data))
			}
			el, err := r.Next()
			if err != nil {
				checkReaderErr(t, err)
				return
			}
			if el == nil {
				t.Fatal("Next returned neither an element nor an error")
			}
			checkLimits(t, el, 1)
			checkRoundTrip(t, el)
		}
	})
}

// FuzzStreamHeader feeds arbitrary bytes to ReadHeader. It must not panic
// and must fail only with a *StreamError or io.ErrUnexpectedEOF. A header it
// accepts must come back unchanged through Header and ReadHeader.
func FuzzStreamHeader(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), Limits{MaxBytes: 1024, MaxDepth: 6, MaxAttrs: 6})
		h, err := r.ReadHeader()
		if err != nil {
			var se *StreamError
			if !errors.As(err, &se) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadHeader error %T %q is neither a *StreamError nor io.ErrUnexpectedEOF", err, err)
			}
			return
		}
		switch h.NS {
		case NSClient, NSServer, "jabber:component:accept":
		default:
			t.Fatalf("accepted content namespace %q", h.NS)
		}
		out := Header(h)
		h2, err := NewReader(bytes.NewReader(out), Limits{MaxBytes: len(out) + 1}).ReadHeader()
		if err != nil {
			t.Fatalf("Header(%+v) = %q does not parse: %v", h, out, err)
		}
		if h2.To != h.To || h2.From != h.From || h2.ID != h.ID || h2.Version != h.Version || h2.Lang != h.Lang || h2.NS != h.NS {
			t.Fatalf("header round trip:\n in  %+v\n out %q\n got %+v", h, out, h2)
		}
	})
}

// FuzzJID checks mellium.im/xmpp/jid, which Wren relies on for every
// address: whatever Parse accepts, its String form must parse to an equal
// JID, and that form must be stable.
func FuzzJID(f *testing.F) {
	for _, s := range []string{
		"juliet@example.com/balcony",
		"juliet@example.com",
		"example.com",
		"example.com/resource",
		"example.com.",
		"JULIET@EXAMPLE.COM/Balcony",
		"romeo@[::1]/x",
		"romeo@127.0.0.1",
		"user@xn--bcher-kva.example",
		"user@bücher.example",
		"ᾛ@example.com",
		"juliet@example.com/foo@bar/baz",
		"a@b@c",
		"@example.com",
		"example.com/",
		"/resource",
		"",
		"@",
		"/",
		"xn--",
		"juliet@example.com/ ",
		"\xff@example.com",
		"juliet@\xfe",
		"user\u200b@example.com",
		strings.Repeat("a", 1024) + "@example.com",
		"a@" + strings.Repeat("b", 1024),
		"a@b/" + strings.Repeat("r", 1024),
		"foo\"bar@example.com",
		"user@exa mple.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := jid.Parse(s)
		if err != nil {
			return
		}
		str := j.String()
		j2, err := jid.Parse(str)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", s, str, err)
		}
		if !j.Equal(j2) {
			t.Fatalf("Parse(%q) = %q (local %q, domain %q, resource %q); reparsed: local %q, domain %q, resource %q",
				s, str, j.Localpart(), j.Domainpart(), j.Resourcepart(),
				j2.Localpart(), j2.Domainpart(), j2.Resourcepart())
		}
		if str2 := j2.String(); str2 != str {
			t.Fatalf("String not stable: %q then %q", str, str2)
		}
	})
}

// checkReaderErr fails unless err is one of the errors Next documents for
// an in-memory source.
func checkReaderErr(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrStreamClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return
	}
	var se *StreamError
	if errors.As(err, &se) {
		if se.Condition == "" {
			t.Fatalf("stream error without a condition: %v", err)
		}
		return
	}
	t.Fatalf("Next error %T %q is not a *StreamError, ErrStreamClosed or io.ErrUnexpectedEOF", err, err)
}

// checkLimits fails if el (at nesting depth) breaks fuzzLimits.
func checkLimits(t *testing.T, el *Element, depth int) {
	t.Helper()
	if depth > fuzzLimits.MaxDepth {
		t.Fatalf("element <%s> at depth %d, limit %d", el.Local, depth, fuzzLimits.MaxDepth)
	}
	if len(el.Attrs) > fuzzLimits.MaxAttrs {
		t.Fatalf("element <%s> has %d attributes, limit %d", el.Local, len(el.Attrs), fuzzLimits.MaxAttrs)
	}
	for _, c := range el.Elements() {
		checkLimits(t, c, depth+1)
	}
}

// checkRoundTrip serialises el, parses it back and compares.
func checkRoundTrip(t *testing.T, el *Element) {
	t.Helper()
	b := el.AppendXML(nil, NSClient)
	el2, err := ParseElement(b)
	if err != nil {
		t.Fatalf("serialisation does not parse: %v\n element %#v\n bytes   %q", err, el, b)
	}
	if d := elementDiff(el, el2); d != "" {
		t.Fatalf("round trip changed the element: %s\n bytes %q", d, b)
	}
	if b2 := el2.AppendXML(nil, NSClient); !bytes.Equal(b, b2) {
		t.Fatalf("serialisation not stable:\n first  %q\n second %q", b, b2)
	}
}

// elementDiff describes the first difference between a and b, or returns
// "" when they are equal. Equal means the same namespace, local name and
// attributes (in order), and the same children once adjacent text nodes are
// merged and empty ones dropped: the XML infoset does not tell those apart.
func elementDiff(a, b *Element) string {
	return diffAt("/", a, b)
}

func diffAt(path string, a, b *Element) string {
	path += a.Local
	if a.Space != b.Space || a.Local != b.Local {
		return fmt.Sprintf("%s: name {%s}%s, got {%s}%s", path, a.Space, a.Local, b.Space, b.Local)
	}
	if len(a.Attrs) != len(b.Attrs) {
		return fmt.Sprintf("%s: attributes %q, got %q", path, a.Attrs, b.Attrs)
	}
	for i := range a.Attrs {
		if a.Attrs[i] != b.Attrs[i] {
			return fmt.Sprintf("%s: attribute %d is %q, got %q", path, i, a.Attrs[i], b.Attrs[i])
		}
	}
	ac, bc := normChildren(a.Children), normChildren(b.Children)
	if len(ac) != len(bc) {
		return fmt.Sprintf("%s: %d children, got %d", path, len(ac), len(bc))
	}
	for i := range ac {
		switch x := ac[i].(type) {
		case Text:
			y, ok := bc[i].(Text)
			if !ok {
				return fmt.Sprintf("%s: child %d is text %q, got an element", path, i, x)
			}
			if x != y {
				return fmt.Sprintf("%s: child %d is text %q, got %q", path, i, x, y)
			}
		case *Element:
			y, ok := bc[i].(*Element)
			if !ok {
				return fmt.Sprintf("%s: child %d is <%s>, got text", path, i, x.Local)
			}
			if d := diffAt(path+"/", x, y); d != "" {
				return d
			}
		default:
			return fmt.Sprintf("%s: child %d has unexpected type %T", path, i, ac[i])
		}
	}
	return ""
}

// normChildren merges adjacent text nodes and drops empty ones.
func normChildren(in []Node) []Node {
	var out []Node
	for _, n := range in {
		if t, ok := n.(Text); ok {
			if t == "" {
				continue
			}
			if k := len(out); k > 0 {
				if prev, ok := out[k-1].(Text); ok {
					out[k-1] = prev + t
					continue
				}
			}
		}
		out = append(out, n)
	}
	return out
}

// TestElementDiff keeps the equality helper honest.
func TestElementDiff(t *testing.T) {
	a := NewElement(NSClient, "message", "to", "a@b")
	a.AddChild(NSClient, "body").AppendText("hi")
	if d := elementDiff(a, a.Copy()); d != "" {
		t.Fatalf("copy differs: %s", d)
	}
	split := a.Copy()
	split.Children[0].(*Element).Children = []Node{Text(""), Text("h"), Text("i")}
	if d := elementDiff(a, split); d != "" {
		t.Fatalf("split text differs: %s", d)
	}
	for name, change := range map[string]func(*Element){
		"space":      func(e *Element) { e.Space = "urn:x" },
		"local":      func(e *Element) { e.Local = "presence" },
		"attr value": func(e *Element) { e.Attrs[0].Value = "c@d" },
		"attr space": func(e *Element) { e.Attrs[0].Space = NSXML },
		"attr count": func(e *Element) { e.SetAttr("id", "1") },
		"text":       func(e *Element) { e.Children[0].(*Element).Children[0] = Text("ho") },
		"child":      func(e *Element) { e.AddChild(NSClient, "thread") },
		"child type": func(e *Element) { e.Children[0].(*Element).Children[0] = NewElement(NSClient, "hi") },
		"child ns":   func(e *Element) { e.Children[0].(*Element).Space = "" },
	} {
		b := a.Copy()
		change(b)
		if elementDiff(a, b) == "" {
			t.Errorf("%s: change not detected", name)
		}
	}
}
