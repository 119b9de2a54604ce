// Package caps implements entity capabilities (XEP-0115): the
// verification string that stands for an entity's service discovery
// information, its check, a bounded cache from verification strings to
// features, and a resolver that asks an entity for the features behind a
// verification string it has not seen yet.
package caps

import (
	"cmp"
	"crypto"
	_ "crypto/sha1" // registers SHA-1 for crypto.Hash
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"wren.im/wren/xmpp"
)

// NS is the entity capabilities namespace.
const NS = xmpp.NSCaps

// HashSHA1 is the hash every entity must support (XEP-0115 §5.1), and the
// one Wren uses for its own verification string.
const HashSHA1 = "sha-1"

// Caps is the content of a <c xmlns='http://jabber.org/protocol/caps'/>
// element.
type Caps struct {
	// Node identifies the software ("https://conversations.im").
	Node string
	// Ver is the verification string (or, in legacy caps without Hash,
	// the software version).
	Ver string
	// Hash names the hash function of Ver (IANA name, "sha-1"); empty in
	// legacy caps (XEP-0115 before 1.5).
	Hash string
}

// FromElement returns the caps announced by a stanza (a presence or the
// stream features), and false when it carries none or they lack a node or
// ver.
func FromElement(el *xmpp.Element) (Caps, bool) {
	c := el.Child(NS, "c")
	if c == nil {
		return Caps{}, false
	}
	out := Caps{Node: c.Attr("node"), Ver: c.Attr("ver"), Hash: c.Attr("hash")}
	if out.Node == "" || out.Ver == "" {
		return Caps{}, false
	}
	return out, true
}

// Verifiable reports whether Ver is a hash this package can check, so
// that the features behind it may be cached for every entity announcing
// it. Other caps (legacy ones, unknown hashes) describe only the entity
// that sent them.
func (c Caps) Verifiable() bool {
	_, ok := hashFunc(c.Hash)
	return ok
}

// Key is the cache key of verifiable caps: the hash name and the
// verification string.
func (c Caps) Key() string { return c.Hash + " " + c.Ver }

// DiscoNode is the node to ask the entity's disco#info about
// (XEP-0115 §6.2): "node#ver".
func (c Caps) DiscoNode() string { return c.Node + "#" + c.Ver }

// Element returns <c xmlns='http://jabber.org/protocol/caps' hash='sha-1'
// node=node ver=ver/>, the element a server puts in its stream features
// (XEP-0115 §6.3) and a client in its presence.
func Element(node, ver string) *xmpp.Element {
	return xmpp.NewElement(NS, "c", "hash", HashSHA1, "node", node, "ver", ver)
}

// hashFunc maps the IANA hash names used in the hash attribute to Go's
// implementations. MD5 is left out on purpose (XEP-0115 §5.1 and §8.4).
func hashFunc(name string) (crypto.Hash, bool) {
	var h crypto.Hash
	switch name {
	case "sha-1":
		h = crypto.SHA1
	case "sha-224":
		h = crypto.SHA224
	case "sha-256":
		h = crypto.SHA256
	case "sha-384":
		h = crypto.SHA384
	case "sha-512":
		h = crypto.SHA512
	default:
		return 0, false
	}
	return h, h.Available()
}

// Identity is a service discovery identity.
type Identity struct {
	Category, Type, Lang, Name string
}

// Field is a field of an extended information form (XEP-0128).
type Field struct {
	Var    string
	Values []string
}

// Form is an extended information form: its FORM_TYPE and other fields.
type Form struct {
	Type   string
	Fields []Field
}

// Info is an entity's service discovery information as far as entity
// capabilities are concerned.
type Info struct {
	Identities []Identity
	Features   []string
	Forms      []Form
}

// ErrIllFormed is returned for disco#info results that XEP-0115 §5.4 says
// must not be trusted (duplicate identities, features or form types).
var ErrIllFormed = errors.New("caps: ill-formed disco#info")

// ParseInfo reads a disco#info <query/> (or an element with the same
// children) following the rules of XEP-0115 §5.4: forms without a hidden
// FORM_TYPE are ignored; duplicate identities or features, two forms of
// the same type, or a FORM_TYPE with several values make the whole
// result ill-formed (ErrIllFormed).
func ParseInfo(query *xmpp.Element) (Info, error) {
	var info Info
	seenID := map[Identity]bool{}
	seenFeature := map[string]bool{}
	seenForm := map[string]bool{}
	for _, el := range query.Elements() {
		switch {
		case el.Is(xmpp.NSDiscoInfo, "identity"):
			id := Identity{Category: el.Attr("category"), Type: el.Attr("type"), Lang: el.Lang(), Name: el.Attr("name")}
			if seenID[id] {
				return Info{}, fmt.Errorf("%w: identity %s/%s/%s/%s twice", ErrIllFormed, id.Category, id.Type, id.Lang, id.Name)
			}
			seenID[id] = true
			info.Identities = append(info.Identities, id)
		case el.Is(xmpp.NSDiscoInfo, "feature"):
			v := el.Attr("var")
			if seenFeature[v] {
				return Info{}, fmt.Errorf("%w: feature %s twice", ErrIllFormed, v)
			}
			seenFeature[v] = true
			info.Features = append(info.Features, v)
		case el.Is(xmpp.NSDataForms, "x"):
			f, ok, err := parseForm(el)
			if err != nil {
				return Info{}, err
			}
			if !ok {
				continue
			}
			if seenForm[f.Type] {
				return Info{}, fmt.Errorf("%w: two forms of type %s", ErrIllFormed, f.Type)
			}
			seenForm[f.Type] = true
			info.Forms = append(info.Forms, f)
		}
	}
	return info, nil
}

// parseForm reads an extended information form; ok is false for a form
// that must be ignored (no FORM_TYPE, or one that is not hidden).
func parseForm(x *xmpp.Element) (f Form, ok bool, err error) {
	hasType := false
	for _, fe := range x.Elements() {
		if !fe.Is(xmpp.NSDataForms, "field") {
			continue
		}
		var values []string
		for _, v := range fe.Elements() {
			if v.Is(xmpp.NSDataForms, "value") {
				values = append(values, v.Text())
			}
		}
		if fe.Attr("var") == "FORM_TYPE" {
			if fe.Attr("type") != "hidden" {
				return Form{}, false, nil
			}
			values = slices.Compact(slices.Sorted(slices.Values(values)))
			if len(values) != 1 {
				return Form{}, false, fmt.Errorf("%w: FORM_TYPE with %d values", ErrIllFormed, len(values))
			}
			f.Type = values[0]
			hasType = true
			continue
		}
		f.Fields = append(f.Fields, Field{Var: fe.Attr("var"), Values: values})
	}
	return f, hasType, nil
}

// FormFromElement reads an extended information form as used in
// disco#info (a jabber:x:data <x/> with a hidden FORM_TYPE); ok is false
// when the form has no usable FORM_TYPE.
func FormFromElement(x *xmpp.Element) (Form, bool) {
	f, ok, err := parseForm(x)
	return f, ok && err == nil
}

// verString builds the string S of XEP-0115 §5.1.
func (info Info) verString() string {
	var b strings.Builder
	ids := slices.Clone(info.Identities)
	slices.SortFunc(ids, func(a, b Identity) int {
		return cmp.Or(strings.Compare(a.Category, b.Category), strings.Compare(a.Type, b.Type),
			strings.Compare(a.Lang, b.Lang), strings.Compare(a.Name, b.Name))
	})
	for _, id := range ids {
		b.WriteString(id.Category + "/" + id.Type + "/" + id.Lang + "/" + id.Name + "<")
	}
	for _, f := range slices.Sorted(slices.Values(info.Features)) {
		b.WriteString(f + "<")
	}
	forms := slices.Clone(info.Forms)
	slices.SortFunc(forms, func(a, b Form) int { return strings.Compare(a.Type, b.Type) })
	for _, f := range forms {
		b.WriteString(f.Type + "<")
		fields := slices.Clone(f.Fields)
		slices.SortFunc(fields, func(a, b Field) int { return strings.Compare(a.Var, b.Var) })
		for _, fd := range fields {
			b.WriteString(fd.Var + "<")
			for _, v := range slices.Sorted(slices.Values(fd.Values)) {
				b.WriteString(v + "<")
			}
		}
	}
	return b.String()
}

// Ver returns the verification string of info with the named hash
// ("sha-1", "sha-256", ...).
func (info Info) Ver(hash string) (string, error) {
	h, ok := hashFunc(hash)
	if !ok {
		return "", fmt.Errorf("caps: unsupported hash %q", hash)
	}
	d := h.New()
	d.Write([]byte(info.verString()))
	return base64.StdEncoding.EncodeToString(d.Sum(nil)), nil
}

// Verify checks that info hashes to the verification string of c.
func Verify(c Caps, info Info) error {
	ver, err := info.Ver(c.Hash)
	if err != nil {
		return err
	}
	if ver != c.Ver {
		return fmt.Errorf("caps: disco#info of %s hashes to %s, not to the announced %s", c.Node, ver, c.Ver)
	}
	return nil
}

// Compute returns the SHA-1 verification string of an entity with these
// identities, features and extended information forms (jabber:x:data
// <x/> elements as listed in disco#info; forms without a hidden FORM_TYPE
// are left out as XEP-0115 says). The server uses it for the caps in its
// stream features (XEP-0115 §6.3).
func Compute(ids []Identity, features []string, forms []*xmpp.Element) string {
	info := Info{Identities: ids, Features: features}
	for _, x := range forms {
		if f, ok := FormFromElement(x); ok {
			info.Forms = append(info.Forms, f)
		}
	}
	ver, _ := info.Ver(HashSHA1) // SHA-1 is always available
	return ver
}
