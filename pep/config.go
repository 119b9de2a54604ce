package pep

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"wren.im/wren/xmpp"
)

// Access models (XEP-0060 §4.5) supported by PEP nodes.
const (
	// AccessOpen lets anyone retrieve items and receive notifications.
	AccessOpen = "open"
	// AccessPresence (the default) limits both to contacts subscribed to
	// the owner's presence (subscription from or both), and the owner.
	AccessPresence = "presence"
	// AccessWhitelist limits both to the owner: Wren keeps no other
	// affiliations, so the whitelist is the owner alone, which is what
	// private storage (XEP-0223) and bookmarks (XEP-0402) ask for.
	AccessWhitelist = "whitelist"
)

// Values of pubsub#send_last_published_item.
const (
	SendLastNever            = "never"
	SendLastOnSub            = "on_sub"
	SendLastOnSubAndPresence = "on_sub_and_presence"
)

// Form types of the pubsub data forms.
const (
	formNodeConfig     = NS + "#node_config"
	formPublishOptions = NS + "#publish-options"
)

// nodeConfig is the configuration of a node. It is stored as JSON; a
// field missing from stored JSON keeps its default.
type nodeConfig struct {
	AccessModel  string `json:"access_model"`
	PublishModel string `json:"publish_model"`
	PersistItems bool   `json:"persist_items"`
	// MaxItems is the number of items kept; 0 means "max", the server's
	// limit (which may change with the configuration file).
	MaxItems             int    `json:"max_items"`
	SendLast             string `json:"send_last_published_item"`
	DeliverNotifications bool   `json:"deliver_notifications"`
	DeliverPayloads      bool   `json:"deliver_payloads"`
	NotifyRetract        bool   `json:"notify_retract"`
	NotifyDelete         bool   `json:"notify_delete"`
	NotifyConfig         bool   `json:"notify_config"`
	NotificationType     string `json:"notification_type"`
	Title                string `json:"title,omitempty"`
	PayloadType          string `json:"type,omitempty"`
}

// defaultConfig is the configuration of a node created without options:
// the usual PEP defaults (one persistent item, presence access, last item
// sent to contacts coming online).
func defaultConfig() nodeConfig {
	return nodeConfig{
		AccessModel:          AccessPresence,
		PublishModel:         "publishers",
		PersistItems:         true,
		MaxItems:             1,
		SendLast:             SendLastOnSubAndPresence,
		DeliverNotifications: true,
		DeliverPayloads:      true,
		NotifyRetract:        true,
		NotifyDelete:         true,
		NotificationType:     "headline",
	}
}

func decodeConfig(b []byte) (nodeConfig, error) {
	c := defaultConfig()
	if len(b) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return defaultConfig(), fmt.Errorf("node configuration: %w", err)
	}
	return c, nil
}

func (c nodeConfig) encode() []byte {
	b, _ := json.Marshal(c) // a struct of strings, ints and bools
	return b
}

// keep returns how many items the node keeps under the server limit.
func (c nodeConfig) keep(limit int) int {
	if !c.PersistItems {
		// Not persistent: only the last item is kept, for retrieval and
		// for contacts coming online.
		return 1
	}
	if c.MaxItems <= 0 || c.MaxItems > limit {
		return limit
	}
	return c.MaxItems
}

// field is one option of the node configuration form.
type field struct {
	name    string // the var, such as pubsub#access_model
	typ     string // data form field type
	label   string
	options []string // for list-single
	get     func(c *nodeConfig) string
	// set checks and applies a submitted value; it returns an error
	// naming what is wrong.
	set func(c *nodeConfig, v string) error
}

func parseBool(v string) (bool, error) {
	switch v {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", v)
}

func formatBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func boolField(name, label string, p func(c *nodeConfig) *bool) field {
	return field{
		name: name, typ: "boolean", label: label,
		get: func(c *nodeConfig) string { return formatBool(*p(c)) },
		set: func(c *nodeConfig, v string) error {
			b, err := parseBool(v)
			*p(c) = b
			return err
		},
	}
}

func listField(name, label string, options []string, p func(c *nodeConfig) *string) field {
	return field{
		name: name, typ: "list-single", label: label, options: options,
		get: func(c *nodeConfig) string { return *p(c) },
		set: func(c *nodeConfig, v string) error {
			if !slices.Contains(options, v) {
				return fmt.Errorf("%q is not supported (supported: %v)", v, options)
			}
			*p(c) = v
			return nil
		},
	}
}

func textField(name, label string, p func(c *nodeConfig) *string) field {
	return field{
		name: name, typ: "text-single", label: label,
		get: func(c *nodeConfig) string { return *p(c) },
		set: func(c *nodeConfig, v string) error {
			if len(v) > 1024 {
				return fmt.Errorf("longer than 1024 bytes")
			}
			*p(c) = v
			return nil
		},
	}
}

// configFields returns the configuration options of nodes; maxItems is the
// server's limit on items per node.
func configFields(maxItems int) []field {
	return []field{
		textField("pubsub#title", "A friendly name for the node", func(c *nodeConfig) *string { return &c.Title }),
		textField("pubsub#type", "The type of node data, usually the payload namespace", func(c *nodeConfig) *string { return &c.PayloadType }),
		listField("pubsub#access_model", "Who may retrieve items and receive notifications",
			[]string{AccessOpen, AccessPresence, AccessWhitelist}, func(c *nodeConfig) *string { return &c.AccessModel }),
		listField("pubsub#publish_model", "Who may publish",
			[]string{"publishers"}, func(c *nodeConfig) *string { return &c.PublishModel }),
		boolField("pubsub#persist_items", "Persist items", func(c *nodeConfig) *bool { return &c.PersistItems }),
		{
			name: "pubsub#max_items", typ: "text-single",
			label: fmt.Sprintf("Maximum number of items to keep (at most %d; max for the most allowed)", maxItems),
			get: func(c *nodeConfig) string {
				if c.MaxItems <= 0 {
					return "max"
				}
				return strconv.Itoa(c.MaxItems)
			},
			set: func(c *nodeConfig, v string) error {
				if v == "max" {
					c.MaxItems = 0
					return nil
				}
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return fmt.Errorf("%q is neither a positive number nor max", v)
				}
				c.MaxItems = min(n, maxItems)
				return nil
			},
		},
		listField("pubsub#send_last_published_item", "When to send the last published item",
			[]string{SendLastNever, SendLastOnSub, SendLastOnSubAndPresence}, func(c *nodeConfig) *string { return &c.SendLast }),
		boolField("pubsub#deliver_notifications", "Deliver event notifications", func(c *nodeConfig) *bool { return &c.DeliverNotifications }),
		boolField("pubsub#deliver_payloads", "Deliver payloads with event notifications", func(c *nodeConfig) *bool { return &c.DeliverPayloads }),
		boolField("pubsub#notify_retract", "Notify when items are removed", func(c *nodeConfig) *bool { return &c.NotifyRetract }),
		boolField("pubsub#notify_delete", "Notify when the node is deleted", func(c *nodeConfig) *bool { return &c.NotifyDelete }),
		boolField("pubsub#notify_config", "Notify when the node configuration changes", func(c *nodeConfig) *bool { return &c.NotifyConfig }),
		listField("pubsub#notification_type", "Message type of notifications",
			[]string{"headline", "normal"}, func(c *nodeConfig) *string { return &c.NotificationType }),
	}
}

// findField returns the field named name, or nil.
func findField(fields []field, name string) *field {
	for i := range fields {
		if fields[i].name == name {
			return &fields[i]
		}
	}
	return nil
}

// configForm returns the node configuration as a data form of type typ
// ("form" for a configure request, "result" elsewhere).
func configForm(fields []field, c nodeConfig, typ string) *xmpp.Element {
	x := xmpp.NewElement(xmpp.NSDataForms, "x", "type", typ)
	ft := x.AddChild(xmpp.NSDataForms, "field", "var", "FORM_TYPE", "type", "hidden")
	ft.AddChild(xmpp.NSDataForms, "value").AppendText(formNodeConfig)
	for _, f := range fields {
		fe := x.AddChild(xmpp.NSDataForms, "field", "var", f.name, "type", f.typ, "label", f.label)
		for _, o := range f.options {
			fe.AddChild(xmpp.NSDataForms, "option").AddChild(xmpp.NSDataForms, "value").AppendText(o)
		}
		fe.AddChild(xmpp.NSDataForms, "value").AppendText(f.get(&c))
	}
	return x
}

// formValue is one submitted field of a data form.
type formValue struct {
	name   string
	values []string
}

// readForm reads a submitted data form. It returns its type attribute,
// its FORM_TYPE ("" when absent) and the other fields in order.
func readForm(x *xmpp.Element) (typ, formType string, values []formValue) {
	typ = x.Attr("type")
	for _, fe := range x.Elements() {
		if !fe.Is(xmpp.NSDataForms, "field") {
			continue
		}
		var vs []string
		for _, v := range fe.Elements() {
			if v.Is(xmpp.NSDataForms, "value") {
				vs = append(vs, v.Text())
			}
		}
		if fe.Attr("var") == "FORM_TYPE" {
			if len(vs) > 0 {
				formType = vs[0]
			}
			continue
		}
		values = append(values, formValue{name: fe.Attr("var"), values: vs})
	}
	return typ, formType, values
}

// apply sets the submitted values on c. It fails on the first unknown
// field or bad value.
func apply(fields []field, c *nodeConfig, values []formValue) error {
	for _, v := range values {
		f := findField(fields, v.name)
		if f == nil {
			return fmt.Errorf("option %s is not supported", v.name)
		}
		val := ""
		switch {
		case len(v.values) > 1:
			return fmt.Errorf("option %s: one value expected", v.name)
		case len(v.values) == 1:
			val = v.values[0]
		case f.typ != "text-single":
			return fmt.Errorf("option %s: a value is required", v.name)
		}
		if err := f.set(c, val); err != nil {
			return fmt.Errorf("option %s: %w", v.name, err)
		}
	}
	return nil
}

// satisfies reports whether the configuration c of an existing node meets
// the publish options (XEP-0060 §7.1.5): every option must be supported,
// valid, and equal to the node's setting. For max_items, what counts is
// the number of items kept ("max" equals the server's limit).
func satisfies(fields []field, c nodeConfig, options []formValue, limit int) error {
	for _, o := range options {
		want := c
		if err := apply(fields, &want, []formValue{o}); err != nil {
			return err
		}
		if o.name == "pubsub#max_items" {
			if want.keep(limit) != c.keep(limit) {
				return fmt.Errorf("the node keeps %d items, not %d", c.keep(limit), want.keep(limit))
			}
			continue
		}
		f := findField(fields, o.name)
		if f.get(&want) != f.get(&c) {
			return fmt.Errorf("option %s of the node is %q", o.name, f.get(&c))
		}
	}
	return nil
}
