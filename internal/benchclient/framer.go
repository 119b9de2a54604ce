// Package benchclient is a lean XMPP client for load generation: raw TCP,
// STARTTLS, SCRAM-SHA-1/SHA-256, in-band registration, resource binding and
// a byte-level framer that splits a stream into top-level elements without
// building a DOM. It trusts the server to send well-formed XML and checks
// only what it needs, so that the load tool is not the bottleneck of a
// benchmark. It is not a general purpose client.
package benchclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrStreamEnd is returned by Framer.Next when the peer closed the stream
// with </stream:stream>.
var ErrStreamEnd = errors.New("benchclient: stream closed by peer")

// ErrTooLarge is returned by Framer.Next when one element does not fit in
// the framer's maximum buffer size.
var ErrTooLarge = errors.New("benchclient: element exceeds the buffer limit")

// Kind tells what Framer.Next found.
type Kind int

const (
	// Header is the opening <stream:stream ...> tag.
	Header Kind = iota + 1
	// Element is a complete top-level element (a stanza or a stream-level
	// element such as <stream:features/>).
	Element
)

// Framer splits an XMPP stream into its header and top-level elements. It
// keeps a scan state across reads, so that every byte is looked at once. It
// skips the XML declaration, comments and whitespace between elements.
type Framer struct {
	r   io.Reader
	buf []byte
	max int

	start int // first unconsumed byte
	pos   int // scan position (start <= pos <= len(buf))
	depth int // 0 before the header, 1 inside the stream, >1 inside an element
	elem  int // start of the current top-level element, -1 if none
}

// DefaultMaxElement is the largest element a Framer accepts unless told
// otherwise.
const DefaultMaxElement = 1 << 20

// NewFramer returns a framer reading from r that accepts elements of up to
// max bytes (DefaultMaxElement if max <= 0).
func NewFramer(r io.Reader, max int) *Framer {
	if max <= 0 {
		max = DefaultMaxElement
	}
	return &Framer{r: r, buf: make([]byte, 0, 4096), max: max, elem: -1}
}

// Reset makes the framer read a new stream from r (after STARTTLS or
// SASL). Buffered bytes are dropped.
func (f *Framer) Reset(r io.Reader) {
	f.r = r
	f.buf = f.buf[:0]
	f.start, f.pos, f.depth, f.elem = 0, 0, 0, -1
}

// Buffered reports whether unconsumed bytes are held in the buffer.
func (f *Framer) Buffered() bool { return f.start < len(f.buf) }

// Next returns the next stream header or top-level element. The returned
// slice aliases the framer's buffer and is valid only until the next call.
// It returns ErrStreamEnd at </stream:stream>.
func (f *Framer) Next() (Kind, []byte, error) {
	for {
		kind, el, ok, err := f.scan()
		if err != nil {
			return 0, nil, err
		}
		if ok {
			return kind, el, nil
		}
		if err := f.fill(); err != nil {
			return 0, nil, err
		}
	}
}

// fill reads more data, compacting or growing the buffer as needed.
func (f *Framer) fill() error {
	keep := f.start
	if f.elem >= 0 && f.elem < keep {
		keep = f.elem
	}
	if keep > 0 {
		n := copy(f.buf, f.buf[keep:])
		f.buf = f.buf[:n]
		f.start -= keep
		f.pos -= keep
		if f.elem >= 0 {
			f.elem -= keep
		}
	}
	if len(f.buf) == cap(f.buf) {
		if cap(f.buf) >= f.max {
			return ErrTooLarge
		}
		nb := make([]byte, len(f.buf), min(2*cap(f.buf), f.max))
		copy(nb, f.buf)
		f.buf = nb
	}
	n, err := f.r.Read(f.buf[len(f.buf):cap(f.buf)])
	f.buf = f.buf[:len(f.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// scan advances over complete markup in the buffer. ok is true when an
// element or header is complete.
func (f *Framer) scan() (kind Kind, el []byte, ok bool, err error) {
	b := f.buf
	for {
		i := bytes.IndexByte(b[f.pos:], '<')
		if i < 0 {
			// Text (body content or whitespace): all of it is consumed.
			f.pos = len(b)
			if f.elem < 0 {
				f.start = f.pos
			}
			return 0, nil, false, nil
		}
		lt := f.pos + i
		if lt+1 >= len(b) {
			f.pos = lt
			if f.elem < 0 {
				f.start = lt
			}
			return 0, nil, false, nil
		}
		switch b[lt+1] {
		case '/':
			gt := bytes.IndexByte(b[lt:], '>')
			if gt < 0 {
				f.pos = lt
				return 0, nil, false, nil
			}
			end := lt + gt + 1
			f.depth--
			f.pos = end
			switch {
			case f.depth == 1 && f.elem >= 0:
				el := b[f.elem:end]
				f.elem = -1
				f.start = end
				return Element, el, true, nil
			case f.depth <= 0:
				f.start = end
				return 0, nil, false, ErrStreamEnd
			}
		case '?', '!':
			end, found := skipSpecial(b, lt)
			if !found {
				f.pos = lt
				return 0, nil, false, nil
			}
			f.pos = end
			if f.elem < 0 {
				f.start = end
			}
		default:
			gt, selfClosing, found := tagEnd(b, lt)
			if !found {
				f.pos = lt
				if f.elem < 0 {
					f.start = lt
				}
				return 0, nil, false, nil
			}
			end := gt + 1
			f.pos = end
			switch {
			case f.depth == 0:
				f.depth = 1
				f.start = end
				return Header, b[lt:end], true, nil
			case f.depth == 1 && selfClosing:
				f.start = end
				return Element, b[lt:end], true, nil
			case f.depth == 1:
				f.elem = lt
				f.depth = 2
			case !selfClosing:
				f.depth++
			}
		}
	}
}

// skipSpecial skips <?...?>, <!--...-->, <![CDATA[...]]> or <!...> starting
// at lt, returning the index after it.
func skipSpecial(b []byte, lt int) (int, bool) {
	rest := b[lt:]
	var term []byte
	switch {
	case bytes.HasPrefix(rest, []byte("<?")):
		term = []byte("?>")
	case bytes.HasPrefix(rest, []byte("<!--")):
		term = []byte("-->")
	case bytes.HasPrefix(rest, []byte("<![CDATA[")):
		term = []byte("]]>")
	case len(rest) < 9:
		// Could still become a comment or CDATA section: wait for more.
		return 0, false
	default:
		term = []byte(">")
	}
	i := bytes.Index(rest[2:], term)
	if i < 0 {
		return 0, false
	}
	return lt + 2 + i + len(term), true
}

// tagEnd finds the '>' closing the start tag at lt, honouring quoted
// attribute values.
func tagEnd(b []byte, lt int) (gt int, selfClosing, found bool) {
	var quote byte
	for i := lt + 1; i < len(b); i++ {
		c := b[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i, b[i-1] == '/', true
		}
	}
	return 0, false, false
}

// Name returns the qualified name of el's root element ("message",
// "stream:features").
func Name(el []byte) string {
	if len(el) < 2 || el[0] != '<' {
		return ""
	}
	for i := 1; i < len(el); i++ {
		switch el[i] {
		case ' ', '\t', '\r', '\n', '/', '>':
			return string(el[1:i])
		}
	}
	return ""
}

// HasName reports whether el's root element is called name, without
// allocating.
func HasName(el []byte, name string) bool {
	if len(el) < len(name)+2 || el[0] != '<' || string(el[1:1+len(name)]) != name {
		return false
	}
	switch el[1+len(name)] {
	case ' ', '\t', '\r', '\n', '/', '>':
		return true
	}
	return false
}

// Attr returns the unescaped value of attribute name on el's root element,
// and whether it is present.
func Attr(el []byte, name string) (string, bool) {
	gt, _, found := tagEnd(el, 0)
	if !found {
		return "", false
	}
	tag := el[:gt]
	i := bytes.IndexAny(tag, " \t\r\n")
	if i < 0 {
		return "", false
	}
	for i < len(tag) {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		ns := i
		for i < len(tag) && tag[i] != '=' && !isSpace(tag[i]) && tag[i] != '/' {
			i++
		}
		an := tag[ns:i]
		for i < len(tag) && (isSpace(tag[i]) || tag[i] == '=') {
			i++
		}
		if i >= len(tag) || (tag[i] != '"' && tag[i] != '\'') {
			return "", false
		}
		q := tag[i]
		vs := i + 1
		ve := bytes.IndexByte(tag[vs:], q)
		if ve < 0 {
			return "", false
		}
		if string(an) == name {
			return Unescape(tag[vs : vs+ve]), true
		}
		i = vs + ve + 1
	}
	return "", false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// Inner returns the content of el's root element (between its start and
// end tags), raw; nil for an empty element.
func Inner(el []byte) []byte {
	gt, self, found := tagEnd(el, 0)
	if !found || self {
		return nil
	}
	end := bytes.LastIndex(el, []byte("</"))
	if end <= gt {
		return nil
	}
	return el[gt+1 : end]
}

// Child returns the first descendant element of el called name (the
// whole element, raw), or nil. It matches on the qualified name only.
func Child(el []byte, name string) []byte {
	gt, self, found := tagEnd(el, 0)
	if !found || self {
		return nil
	}
	pat := "<" + name
	off := gt + 1
	for {
		i := bytes.Index(el[off:], []byte(pat))
		if i < 0 {
			return nil
		}
		s := off + i
		n := s + len(pat)
		if n >= len(el) {
			return nil
		}
		if c := el[n]; c != '>' && c != '/' && !isSpace(c) {
			off = n
			continue
		}
		cgt, cself, ok := tagEnd(el, s)
		if !ok {
			return nil
		}
		if cself {
			return el[s : cgt+1]
		}
		closing := "</" + name + ">"
		e := bytes.Index(el[cgt:], []byte(closing))
		if e < 0 {
			return nil
		}
		return el[s : cgt+e+len(closing)]
	}
}

// ChildText returns the unescaped text of the first descendant element
// called name, and whether it exists.
func ChildText(el []byte, name string) (string, bool) {
	c := Child(el, name)
	if c == nil {
		return "", false
	}
	return Unescape(Inner(c)), true
}

// Unescape replaces the five predefined XML entities and numeric character
// references in b.
func Unescape(b []byte) string {
	if bytes.IndexByte(b, '&') < 0 {
		return string(b)
	}
	var out []byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '&')
		if i < 0 {
			out = append(out, b...)
			break
		}
		out = append(out, b[:i]...)
		b = b[i:]
		semi := bytes.IndexByte(b, ';')
		if semi < 0 {
			out = append(out, b...)
			break
		}
		ent := string(b[1:semi])
		switch ent {
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "amp":
			out = append(out, '&')
		case "quot":
			out = append(out, '"')
		case "apos":
			out = append(out, '\'')
		default:
			var r rune
			if _, err := fmt.Sscanf(ent, "#x%x", &r); err == nil {
				out = append(out, string(r)...)
			} else if _, err := fmt.Sscanf(ent, "#%d", &r); err == nil {
				out = append(out, string(r)...)
			} else {
				out = append(out, b[:semi+1]...)
			}
		}
		b = b[semi+1:]
	}
	return string(out)
}

// Escape escapes s for use in XML text or a quoted attribute value.
func Escape(s string) string {
	var buf bytes.Buffer
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<':
			buf.WriteString("&lt;")
		case '>':
			buf.WriteString("&gt;")
		case '&':
			buf.WriteString("&amp;")
		case '"':
			buf.WriteString("&quot;")
		case '\'':
			buf.WriteString("&apos;")
		default:
			buf.WriteByte(c)
		}
	}
	return buf.String()
}
