package xmpp

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits bound what one stanza may cost. They are enforced while the bytes
// are read, so an oversized or over-deep stanza is rejected before it is
// held in memory.
type Limits struct {
	// MaxBytes is the largest number of bytes one top-level element
	// (including whitespace before it) may take.
	MaxBytes int
	// MaxDepth is the deepest nesting of elements inside a top-level
	// element; the top-level element itself is depth 1.
	MaxDepth int
	// MaxAttrs is the largest number of attributes on one element.
	MaxAttrs int
}

// ErrStreamClosed is returned by Reader.Next when the peer closed its stream
// with </stream:stream>.
var ErrStreamClosed = errors.New("xmpp: stream closed by peer")

// errTooBig is returned by budgetReader when a stanza exceeds its byte budget.
var errTooBig = errors.New("stanza byte budget exhausted")

// StreamHeader is the opening <stream:stream> of a peer.
type StreamHeader struct {
	To, From, ID, Version, Lang string
	// NS is the default (content) namespace: jabber:client or jabber:server.
	NS string
	// Attrs holds every attribute as given, including namespace declarations.
	Attrs []xml.Attr
}

// budgetReader is the byte source of the decoder. It counts the bytes of
// the element being read and fails once the budget is spent.
type budgetReader struct {
	src       Source
	remaining int
}

func (b *budgetReader) ReadByte() (byte, error) {
	if b.remaining <= 0 {
		return 0, errTooBig
	}
	c, err := b.src.ReadByte()
	if err == nil {
		b.remaining--
	}
	return c, err
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.remaining <= 0 {
		return 0, errTooBig
	}
	if len(p) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.src.Read(p)
	b.remaining -= n
	return n, err
}

type nsBinding struct {
	prefix, uri string
	depth       int
}

// Reader reads one XMPP stream: the header, then one top-level element at a
// time, within Limits. It is not safe for concurrent use.
type Reader struct {
	// streamName is the raw (prefixed) name of the stream element, which
	// only its own end tag may close.
	streamName xml.Name
	src        Source
	budget     budgetReader
	dec        *xml.Decoder
	limits     Limits
	ns         []nsBinding
	// Buffered is set by tests; production code leaves it nil.
}

// NewReader returns a Reader on r. Call ReadHeader first.
func NewReader(r io.Reader, limits Limits) *Reader {
	rd := &Reader{limits: limits}
	rd.Reset(r)
	return rd
}

// Reset starts reading a new stream from src (after STARTTLS or SASL).
// Any buffered input of the old stream is discarded. A src that is not a
// Source is read through a bufio.Reader.
func (r *Reader) Reset(src io.Reader) {
	if s, ok := src.(Source); ok {
		r.src = s
	} else if br, ok := r.src.(*bufio.Reader); ok {
		br.Reset(src)
	} else {
		r.src = bufio.NewReaderSize(src, 4096)
	}
	r.budget = budgetReader{src: r.src}
	r.dec = xml.NewDecoder(&r.budget)
	r.dec.Strict = true
	r.ns = r.ns[:0]
}

// SetLimits changes the limits for the next elements (e.g. after authentication).
func (r *Reader) SetLimits(l Limits) { r.limits = l }

// Buffered returns how many bytes are buffered but not yet parsed.
func (r *Reader) Buffered() int { return r.src.Buffered() }

func (r *Reader) token() (xml.Token, error) {
	tok, err := r.dec.RawToken()
	if err != nil {
		return nil, r.mapErr(err)
	}
	return tok, nil
}

func (r *Reader) mapErr(err error) error {
	var se *StreamError
	switch {
	case errors.As(err, &se):
		return err
	case errors.Is(err, errTooBig):
		return NewStreamError(StreamPolicyViolation, "stanza larger than %d bytes", r.limits.MaxBytes)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return io.ErrUnexpectedEOF
	}
	if strings.Contains(err.Error(), "unsupported charset") || strings.Contains(err.Error(), "CharsetReader") {
		return NewStreamError(StreamUnsupportedEncoding, "only UTF-8 is supported")
	}
	var syn *xml.SyntaxError
	if errors.As(err, &syn) {
		if strings.Contains(syn.Msg, "unexpected EOF") {
			return io.ErrUnexpectedEOF
		}
		if strings.Contains(syn.Msg, "UTF-8") || strings.Contains(syn.Msg, "invalid character") {
			return NewStreamError(StreamNotWellFormed, "%s", syn.Msg)
		}
		return NewStreamError(StreamNotWellFormed, "%s", syn.Msg)
	}
	if strings.HasPrefix(err.Error(), "xml: ") {
		// Other decoder errors (e.g. an unsupported XML version).
		return NewStreamError(StreamNotWellFormed, "%s", strings.TrimPrefix(err.Error(), "xml: "))
	}
	// Network errors pass through unchanged.
	return err
}

// ReadHeader reads the optional XML declaration and the opening
// <stream:stream> tag. It returns a *StreamError for a bad header.
func (r *Reader) ReadHeader() (StreamHeader, error) {
	r.budget.remaining = r.limits.MaxBytes
	if r.budget.remaining <= 0 {
		r.budget.remaining = 4096
	}
	for {
		tok, err := r.token()
		if err != nil {
			return StreamHeader{}, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return StreamHeader{}, NewStreamError(StreamRestrictedXML, "processing instructions are not allowed")
			}
			if enc := procInstParam(string(t.Inst), "encoding"); enc != "" && !strings.EqualFold(enc, "utf-8") {
				return StreamHeader{}, NewStreamError(StreamUnsupportedEncoding, "only UTF-8 is supported, not %s", enc)
			}
		case xml.CharData:
			if !isSpace(t) {
				return StreamHeader{}, NewStreamError(StreamBadFormat, "text before the stream header")
			}
		case xml.StartElement:
			return r.header(t)
		case xml.Comment, xml.Directive:
			return StreamHeader{}, NewStreamError(StreamRestrictedXML, "comments, DTDs and directives are not allowed")
		default:
			return StreamHeader{}, NewStreamError(StreamBadFormat, "expected a stream header")
		}
	}
}

func (r *Reader) header(t xml.StartElement) (StreamHeader, error) {
	h := StreamHeader{Attrs: t.Attr}
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			h.NS = a.Value
			r.ns = append(r.ns, nsBinding{"", a.Value, 0})
		case a.Name.Space == "xmlns":
			r.ns = append(r.ns, nsBinding{a.Name.Local, a.Value, 0})
		case a.Name.Space == "xml" && a.Name.Local == "lang":
			h.Lang = a.Value
		case a.Name.Space == "":
			switch a.Name.Local {
			case "to":
				h.To = a.Value
			case "from":
				h.From = a.Value
			case "id":
				h.ID = a.Value
			case "version":
				h.Version = a.Value
			}
		}
	}
	r.streamName = t.Name
	space, ok := r.lookup(t.Name.Space)
	if t.Name.Local != "stream" {
		return h, NewStreamError(StreamBadFormat, "expected <stream:stream>, got <%s>", t.Name.Local)
	}
	if !ok || space != NSStream {
		return h, NewStreamError(StreamInvalidNamespace, "the stream element must be in namespace %s", NSStream)
	}
	if h.NS != NSClient && h.NS != NSServer && h.NS != "jabber:component:accept" {
		return h, NewStreamError(StreamInvalidNamespace, "unsupported stream content namespace %q", h.NS)
	}
	return h, nil
}

func procInstParam(inst, name string) string {
	i := strings.Index(inst, name+"=")
	if i < 0 {
		return ""
	}
	v := inst[i+len(name)+1:]
	if len(v) < 2 {
		return ""
	}
	q := v[0]
	v = v[1:]
	if j := strings.IndexByte(v, q); j >= 0 {
		return v[:j]
	}
	return ""
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

func (r *Reader) lookup(prefix string) (string, bool) {
	if prefix == "xml" {
		return NSXML, true
	}
	for i := len(r.ns) - 1; i >= 0; i-- {
		if r.ns[i].prefix == prefix {
			return r.ns[i].uri, true
		}
	}
	return "", prefix == ""
}

// Next reads the next top-level element of the stream. Whitespace between
// elements is skipped. It returns ErrStreamClosed at </stream:stream>,
// io.ErrUnexpectedEOF if the connection ends mid-stream, a *StreamError for
// a protocol violation, or the underlying network error.
func (r *Reader) Next() (*Element, error) {
	r.budget.remaining = r.limits.MaxBytes
	var stack []*Element
	var rawNames []xml.Name
	for {
		tok, err := r.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth := len(stack) + 1
			if r.limits.MaxDepth > 0 && depth > r.limits.MaxDepth {
				return nil, NewStreamError(StreamPolicyViolation, "elements nested deeper than %d", r.limits.MaxDepth)
			}
			if r.limits.MaxAttrs > 0 && len(t.Attr) > r.limits.MaxAttrs {
				return nil, NewStreamError(StreamPolicyViolation, "more than %d attributes on <%s>", r.limits.MaxAttrs, t.Name.Local)
			}
			el, err := r.start(t, depth)
			if err != nil {
				return nil, err
			}
			if depth == 1 && el.Space == NSStream && el.Local == "stream" {
				// A stream header inside an open stream: refuse it at once
				// instead of waiting for an end that may never come.
				return nil, NewStreamError(StreamBadFormat, "<stream:stream> is not allowed inside an open stream")
			}
			if len(stack) > 0 {
				parent := stack[len(stack)-1]
				parent.Children = append(parent.Children, el)
			}
			stack = append(stack, el)
			rawNames = append(rawNames, t.Name)
		case xml.EndElement:
			if len(stack) == 0 {
				if t.Name == r.streamName {
					return nil, ErrStreamClosed
				}
				return nil, NewStreamError(StreamNotWellFormed, "unexpected end tag </%s>", t.Name.Local)
			}
			top := rawNames[len(rawNames)-1]
			if top != t.Name {
				return nil, NewStreamError(StreamNotWellFormed, "end tag </%s> does not match <%s>", t.Name.Local, top.Local)
			}
			r.popNS(len(stack))
			el := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			rawNames = rawNames[:len(rawNames)-1]
			if len(stack) == 0 {
				return el, nil
			}
		case xml.CharData:
			if len(t) == 0 {
				// An empty CDATA section carries nothing.
				continue
			}
			if len(stack) == 0 {
				if !isSpace(t) {
					return nil, NewStreamError(StreamBadFormat, "text outside of a stanza")
				}
				// Whitespace keepalive: its bytes do not count against the next stanza.
				r.budget.remaining = r.limits.MaxBytes
				continue
			}
			parent := stack[len(stack)-1]
			if n := len(parent.Children); n > 0 {
				if prev, ok := parent.Children[n-1].(Text); ok {
					parent.Children[n-1] = prev + Text(t)
					continue
				}
			}
			parent.Children = append(parent.Children, Text(t))
		case xml.Comment, xml.Directive:
			return nil, NewStreamError(StreamRestrictedXML, "comments, DTDs and directives are not allowed")
		case xml.ProcInst:
			return nil, NewStreamError(StreamRestrictedXML, "processing instructions are not allowed")
		}
	}
}

func (r *Reader) start(t xml.StartElement, depth int) (*Element, error) {
	if !validName(t.Name) {
		return nil, NewStreamError(StreamNotWellFormed, "invalid element name %q", t.Name.Local)
	}
	// Namespace declarations first: they apply to the element's own name.
	for _, a := range t.Attr {
		if !validName(a.Name) {
			return nil, NewStreamError(StreamNotWellFormed, "invalid attribute name %q", a.Name.Local)
		}
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			r.ns = append(r.ns, nsBinding{"", a.Value, depth})
		case a.Name.Space == "xmlns":
			if a.Value == "" {
				return nil, NewStreamError(StreamNotWellFormed, "empty namespace for prefix %s", a.Name.Local)
			}
			r.ns = append(r.ns, nsBinding{a.Name.Local, a.Value, depth})
		}
	}
	space, ok := r.lookup(t.Name.Space)
	if !ok {
		return nil, NewStreamError(StreamInvalidNamespace, "undeclared namespace prefix %q", t.Name.Space)
	}
	el := &Element{Space: space, Local: t.Name.Local}
	if n := len(t.Attr); n > 0 {
		el.Attrs = make([]Attr, 0, n)
	}
	for _, a := range t.Attr {
		if a.Name.Local == "xmlns" && a.Name.Space == "" || a.Name.Space == "xmlns" {
			continue
		}
		at := Attr{Local: a.Name.Local, Value: a.Value}
		if a.Name.Space != "" {
			s, ok := r.lookup(a.Name.Space)
			if !ok {
				return nil, NewStreamError(StreamInvalidNamespace, "undeclared namespace prefix %q", a.Name.Space)
			}
			at.Space = s
		}
		for _, prev := range el.Attrs {
			if prev.Space == at.Space && prev.Local == at.Local {
				return nil, NewStreamError(StreamNotWellFormed, "duplicate attribute %s", at.Local)
			}
		}
		el.Attrs = append(el.Attrs, at)
	}
	return el, nil
}

func (r *Reader) popNS(depth int) {
	for len(r.ns) > 0 && r.ns[len(r.ns)-1].depth >= depth {
		r.ns = r.ns[:len(r.ns)-1]
	}
}

// Header returns the serialised opening tag of a stream sent by a server.
func Header(h StreamHeader) []byte {
	var b []byte
	b = append(b, "<?xml version='1.0'?><stream:stream xmlns='"...)
	b = appendEscaped(b, h.NS, true)
	b = append(b, "' xmlns:stream='"+NSStream+"'"...)
	for _, kv := range [][2]string{{"id", h.ID}, {"from", h.From}, {"to", h.To}, {"version", h.Version}, {"xml:lang", h.Lang}} {
		if kv[1] != "" {
			b = append(b, ' ')
			b = append(b, kv[0]...)
			b = append(b, "='"...)
			b = appendEscaped(b, kv[1], true)
			b = append(b, '\'')
		}
	}
	return append(b, '>')
}

// ErrorString is a helper for logs: the condition of a stream error or the error text.
func ErrorString(err error) string {
	if se, ok := AsStreamError(err); ok {
		return se.Condition
	}
	return fmt.Sprint(err)
}

// storedHeader opens a virtual stream for ParseElement.
const storedHeader = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`

// ParseElement parses one serialised element whose default namespace is
// jabber:client, as written by Element.Bytes (stored stanzas).
func ParseElement(b []byte) (*Element, error) {
	r := NewReader(io.MultiReader(strings.NewReader(storedHeader), bytesReader(b)), Limits{MaxBytes: len(b) + 1024})
	if _, err := r.ReadHeader(); err != nil {
		return nil, err
	}
	return r.Next()
}

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }

// validName reports whether a raw name's prefix (if any) and local part
// are NCNames (Namespaces in XML 1.0). encoding/xml accepts some names
// that are not, such as a local part starting with a digit after a prefix.
func validName(n xml.Name) bool {
	return (n.Space == "" || isNCName(n.Space)) && isNCName(n.Local)
}

func isNCName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if i == 0 {
			if !isNameStart(r) {
				return false
			}
			continue
		}
		if !isNameStart(r) && !isNameRest(r) {
			return false
		}
	}
	return true
}

// isNameStart implements NameStartChar of XML 1.0 (5th edition) minus ':'.
func isNameStart(r rune) bool {
	switch {
	case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r == '_':
		return true
	case r >= 0xC0 && r <= 0xD6, r >= 0xD8 && r <= 0xF6, r >= 0xF8 && r <= 0x2FF,
		r >= 0x370 && r <= 0x37D, r >= 0x37F && r <= 0x1FFF, r >= 0x200C && r <= 0x200D,
		r >= 0x2070 && r <= 0x218F, r >= 0x2C00 && r <= 0x2FEF, r >= 0x3001 && r <= 0xD7FF,
		r >= 0xF900 && r <= 0xFDCF, r >= 0xFDF0 && r <= 0xFFFD, r >= 0x10000 && r <= 0xEFFFF:
		return true
	}
	return false
}

// isNameRest implements the NameChar additions to NameStartChar.
func isNameRest(r rune) bool {
	return r == '-' || r == '.' || (r >= '0' && r <= '9') || r == 0xB7 ||
		(r >= 0x300 && r <= 0x36F) || (r >= 0x203F && r <= 0x2040)
}
