package xmpp

import (
	"strings"
)

// Attr is one attribute. Space is the namespace URI of a prefixed attribute
// (NSXML for xml:lang), empty for ordinary attributes.
type Attr struct {
	Space, Local, Value string
}

// Node is a child of an Element: either *Element or Text.
type Node interface{ node() }

// Text is character data inside an element.
type Text string

func (Text) node()     {}
func (*Element) node() {}

// Element is a parsed XML element with its namespace resolved. Stanzas are
// passed around the server as *Element; code that changes one must own it
// (use Copy before changing a shared element).
type Element struct {
	Space, Local string
	Attrs        []Attr
	Children     []Node
}

// NewElement returns an element with the given namespace, name and
// attributes given as name/value pairs.
func NewElement(space, local string, attrs ...string) *Element {
	e := &Element{Space: space, Local: local}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			e.Attrs = append(e.Attrs, Attr{Local: attrs[i], Value: attrs[i+1]})
		}
	}
	return e
}

// Attr returns the value of the unprefixed attribute name, or "".
func (e *Element) Attr(name string) string {
	for _, a := range e.Attrs {
		if a.Space == "" && a.Local == name {
			return a.Value
		}
	}
	return ""
}

// HasAttr reports whether the unprefixed attribute name is present.
func (e *Element) HasAttr(name string) bool {
	for _, a := range e.Attrs {
		if a.Space == "" && a.Local == name {
			return true
		}
	}
	return false
}

// Lang returns xml:lang, or "".
func (e *Element) Lang() string {
	for _, a := range e.Attrs {
		if a.Space == NSXML && a.Local == "lang" {
			return a.Value
		}
	}
	return ""
}

// SetAttr sets the unprefixed attribute name; an empty value removes it.
func (e *Element) SetAttr(name, value string) *Element {
	for i, a := range e.Attrs {
		if a.Space == "" && a.Local == name {
			if value == "" {
				e.Attrs = append(e.Attrs[:i:i], e.Attrs[i+1:]...)
			} else {
				e.Attrs[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attrs = append(e.Attrs, Attr{Local: name, Value: value})
	}
	return e
}

// Child returns the first child element with that namespace and local name
// (an empty space matches any namespace), or nil.
func (e *Element) Child(space, local string) *Element {
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok && c.Local == local && (space == "" || c.Space == space) {
			return c
		}
	}
	return nil
}

// ChildNS returns the first child element in namespace space, or nil.
func (e *Element) ChildNS(space string) *Element {
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok && c.Space == space {
			return c
		}
	}
	return nil
}

// Elements returns the child elements in order.
func (e *Element) Elements() []*Element {
	var out []*Element
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok {
			out = append(out, c)
		}
	}
	return out
}

// FirstElement returns the first child element, or nil.
func (e *Element) FirstElement() *Element {
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok {
			return c
		}
	}
	return nil
}

// Text returns the concatenated character data directly inside e.
func (e *Element) Text() string {
	var b strings.Builder
	for _, n := range e.Children {
		if t, ok := n.(Text); ok {
			b.WriteString(string(t))
		}
	}
	return b.String()
}

// ChildText returns the text of the first matching child, or "".
func (e *Element) ChildText(space, local string) string {
	if c := e.Child(space, local); c != nil {
		return c.Text()
	}
	return ""
}

// Append adds children and returns e.
func (e *Element) Append(children ...Node) *Element {
	e.Children = append(e.Children, children...)
	return e
}

// AppendText adds a text node and returns e.
func (e *Element) AppendText(s string) *Element {
	if s != "" {
		e.Children = append(e.Children, Text(s))
	}
	return e
}

// AddChild creates a child element, appends it and returns the child.
func (e *Element) AddChild(space, local string, attrs ...string) *Element {
	c := NewElement(space, local, attrs...)
	e.Children = append(e.Children, c)
	return c
}

// RemoveChildren removes every child element for which drop returns true.
func (e *Element) RemoveChildren(drop func(*Element) bool) {
	out := e.Children[:0]
	for _, n := range e.Children {
		if c, ok := n.(*Element); ok && drop(c) {
			continue
		}
		out = append(out, n)
	}
	for i := len(out); i < len(e.Children); i++ {
		e.Children[i] = nil
	}
	e.Children = out
}

// Copy returns a deep copy of e.
func (e *Element) Copy() *Element {
	c := &Element{Space: e.Space, Local: e.Local}
	if len(e.Attrs) > 0 {
		c.Attrs = append([]Attr(nil), e.Attrs...)
	}
	if len(e.Children) > 0 {
		c.Children = make([]Node, len(e.Children))
		for i, n := range e.Children {
			if ce, ok := n.(*Element); ok {
				c.Children[i] = ce.Copy()
			} else {
				c.Children[i] = n
			}
		}
	}
	return c
}

// ShallowCopy returns a copy of e with its own attribute slice and child
// slice; the children themselves are shared.
func (e *Element) ShallowCopy() *Element {
	c := &Element{Space: e.Space, Local: e.Local}
	c.Attrs = append([]Attr(nil), e.Attrs...)
	c.Children = append([]Node(nil), e.Children...)
	return c
}

// Is reports whether e has that namespace and local name.
func (e *Element) Is(space, local string) bool {
	return e != nil && e.Space == space && e.Local == local
}

// IsStanza reports whether e is a message, presence or iq in the client or
// server namespace.
func (e *Element) IsStanza() bool {
	if e.Space != NSClient && e.Space != NSServer {
		return false
	}
	switch e.Local {
	case "message", "presence", "iq":
		return true
	}
	return false
}

// String serialises e (for logs and tests).
func (e *Element) String() string {
	return string(e.Bytes())
}
