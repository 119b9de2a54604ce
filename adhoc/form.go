package adhoc

import (
	"fmt"
	"strings"

	"wren.im/wren/xmpp"
)

// Data form types (XEP-0004 §3.1).
const (
	FormTypeForm   = "form"
	FormTypeSubmit = "submit"
	FormTypeCancel = "cancel"
	FormTypeResult = "result"
)

// Field types (XEP-0004 §3.3) used by Wren.
const (
	FieldBoolean    = "boolean"
	FieldFixed      = "fixed"
	FieldHidden     = "hidden"
	FieldJIDSingle  = "jid-single"
	FieldListSingle = "list-single"
	FieldTextMulti  = "text-multi"
	FieldTextSingle = "text-single"
	FieldTextPriv   = "text-private"
)

// Form is a XEP-0004 data form: the payload of most commands.
type Form struct {
	// Type is FormTypeForm, FormTypeSubmit, FormTypeCancel or FormTypeResult.
	Type         string
	Title        string
	Instructions string
	Fields       []Field
}

// Field is one field of a data form.
type Field struct {
	Var      string
	Type     string // empty: text-single
	Label    string
	Desc     string
	Required bool
	Values   []string
	Options  []Option
}

// Option is a choice of a list field.
type Option struct {
	Label, Value string
}

// ParseForm reads a <x xmlns='jabber:x:data'/> element. It returns nil
// when x is not a data form.
func ParseForm(x *xmpp.Element) *Form {
	if !x.Is(xmpp.NSDataForms, "x") {
		return nil
	}
	f := &Form{
		Type:         x.Attr("type"),
		Title:        x.ChildText(xmpp.NSDataForms, "title"),
		Instructions: x.ChildText(xmpp.NSDataForms, "instructions"),
	}
	for _, c := range x.Elements() {
		if !c.Is(xmpp.NSDataForms, "field") {
			continue
		}
		fd := Field{
			Var:      c.Attr("var"),
			Type:     c.Attr("type"),
			Label:    c.Attr("label"),
			Desc:     c.ChildText(xmpp.NSDataForms, "desc"),
			Required: c.Child(xmpp.NSDataForms, "required") != nil,
		}
		for _, v := range c.Elements() {
			switch {
			case v.Is(xmpp.NSDataForms, "value"):
				fd.Values = append(fd.Values, v.Text())
			case v.Is(xmpp.NSDataForms, "option"):
				fd.Options = append(fd.Options, Option{Label: v.Attr("label"), Value: v.ChildText(xmpp.NSDataForms, "value")})
			}
		}
		f.Fields = append(f.Fields, fd)
	}
	return f
}

// FindForm returns the first data form among the children of el, or nil.
func FindForm(el *xmpp.Element) *Form {
	if el == nil {
		return nil
	}
	return ParseForm(el.Child(xmpp.NSDataForms, "x"))
}

// Element returns the <x xmlns='jabber:x:data'/> element of f.
func (f *Form) Element() *xmpp.Element {
	x := xmpp.NewElement(xmpp.NSDataForms, "x", "type", f.Type)
	if f.Title != "" {
		x.AddChild(xmpp.NSDataForms, "title").AppendText(f.Title)
	}
	if f.Instructions != "" {
		x.AddChild(xmpp.NSDataForms, "instructions").AppendText(f.Instructions)
	}
	for _, fd := range f.Fields {
		c := x.AddChild(xmpp.NSDataForms, "field", "var", fd.Var, "type", fd.Type, "label", fd.Label)
		if fd.Desc != "" {
			c.AddChild(xmpp.NSDataForms, "desc").AppendText(fd.Desc)
		}
		if fd.Required {
			c.AddChild(xmpp.NSDataForms, "required")
		}
		for _, v := range fd.Values {
			c.AddChild(xmpp.NSDataForms, "value").AppendText(v)
		}
		for _, o := range fd.Options {
			c.AddChild(xmpp.NSDataForms, "option", "label", o.Label).AddChild(xmpp.NSDataForms, "value").AppendText(o.Value)
		}
	}
	return x
}

// Field returns the field named name, or nil.
func (f *Form) Field(name string) *Field {
	if f == nil {
		return nil
	}
	for i := range f.Fields {
		if f.Fields[i].Var == name {
			return &f.Fields[i]
		}
	}
	return nil
}

// Value returns the first value of the field named name with surrounding
// white space removed, or "" when the form has no such field.
func (f *Form) Value(name string) string {
	fd := f.Field(name)
	if fd == nil || len(fd.Values) == 0 {
		return ""
	}
	return strings.TrimSpace(fd.Values[0])
}

// FormType returns the value of the hidden FORM_TYPE field, or "".
func (f *Form) FormType() string { return f.Value("FORM_TYPE") }

// Set gives the field named name the values, adding a field of type typ
// when the form has none by that name. It returns f.
func (f *Form) Set(name, typ string, values ...string) *Form {
	if fd := f.Field(name); fd != nil {
		fd.Values = values
		return f
	}
	f.Fields = append(f.Fields, Field{Var: name, Type: typ, Values: values})
	return f
}

// ParseBool reads a XEP-0004 boolean value: "1" or "true", "0" or "false".
func ParseBool(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (use 1, true, 0 or false)", s)
}
