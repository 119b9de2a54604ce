package xmpp

import (
	"strconv"
	"unicode/utf8"
)

// Bytes serialises e as it would appear inside a jabber:client stream.
func (e *Element) Bytes() []byte {
	return e.AppendXML(nil, NSClient)
}

// AppendXML appends the serialisation of e to buf. parentNS is the default
// namespace in scope where e is written (NSClient for stanzas on a c2s
// stream); an xmlns declaration is written only where it differs.
func (e *Element) AppendXML(buf []byte, parentNS string) []byte {
	buf = append(buf, '<')
	buf = append(buf, e.Local...)
	if e.Space != parentNS {
		buf = append(buf, ` xmlns='`...)
		buf = appendEscaped(buf, e.Space, true)
		buf = append(buf, '\'')
	}
	prefixes := 0
	for _, a := range e.Attrs {
		buf = append(buf, ' ')
		switch a.Space {
		case "":
		case NSXML:
			buf = append(buf, "xml:"...)
		default:
			prefixes++
			p := "ns" + strconv.Itoa(prefixes)
			buf = append(buf, "xmlns:"...)
			buf = append(buf, p...)
			buf = append(buf, `='`...)
			buf = appendEscaped(buf, a.Space, true)
			buf = append(buf, `' `...)
			buf = append(buf, p...)
			buf = append(buf, ':')
		}
		buf = append(buf, a.Local...)
		buf = append(buf, `='`...)
		buf = appendEscaped(buf, a.Value, true)
		buf = append(buf, '\'')
	}
	if len(e.Children) == 0 {
		return append(buf, "/>"...)
	}
	buf = append(buf, '>')
	for _, n := range e.Children {
		switch c := n.(type) {
		case *Element:
			buf = c.AppendXML(buf, e.Space)
		case Text:
			buf = appendEscaped(buf, string(c), false)
		}
	}
	buf = append(buf, "</"...)
	buf = append(buf, e.Local...)
	return append(buf, '>')
}

// appendEscaped appends s with XML special characters escaped. Characters
// not allowed in XML 1.0 are replaced by U+FFFD so that generated output is
// always well-formed.
func appendEscaped(buf []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		var esc string
		width := 1
		switch {
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case attr && c == '\'':
			esc = "&apos;"
		case attr && c == '"':
			esc = "&quot;"
		case attr && (c == '\n' || c == '\r' || c == '\t'):
			esc = "&#" + strconv.Itoa(int(c)) + ";"
		case c == '\r':
			esc = "&#13;"
		case c < 0x20 && c != '\n' && c != '\t':
			esc = "\uFFFD"
		case c >= utf8.RuneSelf:
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if (r == utf8.RuneError && w == 1) || r == 0xFFFE || r == 0xFFFF {
				esc = "\uFFFD"
			}
		}
		if esc != "" {
			buf = append(buf, s[last:i]...)
			buf = append(buf, esc...)
			last = i + width
		}
		i += width
	}
	return append(buf, s[last:]...)
}

// AppendStreamElement appends an element of the stream namespace
// (<stream:features/>, <stream:error/>) using the stream: prefix that the
// stream header declares. Its children keep their own namespaces.
func AppendStreamElement(buf []byte, el *Element) []byte {
	buf = append(buf, "<stream:"...)
	buf = append(buf, el.Local...)
	if len(el.Children) == 0 {
		return append(buf, "/>"...)
	}
	buf = append(buf, '>')
	for _, c := range el.Elements() {
		buf = c.AppendXML(buf, "")
	}
	buf = append(buf, "</stream:"...)
	buf = append(buf, el.Local...)
	return append(buf, '>')
}
