package pep

import (
	"strings"
	"testing"

	"wren.im/wren/xmpp"
)

func opts(kv ...string) []formValue {
	var out []formValue
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, formValue{name: kv[i], values: []string{kv[i+1]}})
	}
	return out
}

func TestApplyAndSatisfies(t *testing.T) {
	fields := configFields(100)
	c := defaultConfig()
	if err := apply(fields, &c, opts("pubsub#access_model", "whitelist", "pubsub#max_items", "max",
		"pubsub#persist_items", "true", "pubsub#send_last_published_item", "never", "pubsub#notify_retract", "false")); err != nil {
		t.Fatal(err)
	}
	if c.AccessModel != AccessWhitelist || c.MaxItems != 0 || c.SendLast != SendLastNever || c.NotifyRetract || c.keep(100) != 100 {
		t.Fatalf("config after apply: %+v", c)
	}
	for _, o := range [][]string{
		{"pubsub#access_model", "whitelist"},
		{"pubsub#max_items", "max"},
		{"pubsub#max_items", "100"},
		{"pubsub#max_items", "5000"}, // capped to 100: the same
		{"pubsub#persist_items", "1"},
		{"pubsub#notify_retract", "0"},
	} {
		if err := satisfies(fields, c, opts(o...), 100); err != nil {
			t.Errorf("%v: %v", o, err)
		}
	}
	for _, o := range [][]string{
		{"pubsub#access_model", "open"},
		{"pubsub#access_model", "roster"},
		{"pubsub#max_items", "1"},
		{"pubsub#max_items", "-1"},
		{"pubsub#persist_items", "maybe"},
		{"pubsub#unknown", "x"},
	} {
		if err := satisfies(fields, c, opts(o...), 100); err == nil {
			t.Errorf("%v: satisfied", o)
		}
	}
	if err := apply(fields, &c, []formValue{{name: "pubsub#access_model", values: []string{"open", "presence"}}}); err == nil {
		t.Error("two values accepted")
	}
	// Not persistent: only the last item is kept.
	c.PersistItems = false
	if c.keep(100) != 1 {
		t.Errorf("keep of a non-persistent node = %d", c.keep(100))
	}
}

func TestConfigRoundTrip(t *testing.T) {
	c := defaultConfig()
	c.AccessModel = AccessOpen
	c.MaxItems = 7
	got, err := decodeConfig(c.encode())
	if err != nil || got != c {
		t.Fatalf("decode(encode) = %+v, %v", got, err)
	}
	// Options stored by an older version keep their defaults.
	got, err = decodeConfig([]byte(`{"access_model":"open"}`))
	if err != nil || got.AccessModel != AccessOpen || !got.PersistItems || got.SendLast != SendLastOnSubAndPresence {
		t.Fatalf("partial config = %+v, %v", got, err)
	}
	if _, err := decodeConfig([]byte(`{`)); err == nil {
		t.Fatal("broken JSON accepted")
	}
}

func TestConfigForm(t *testing.T) {
	fields := configFields(256)
	x := configForm(fields, defaultConfig(), "form")
	typ, formType, values := readForm(x)
	if typ != "form" || formType != formNodeConfig {
		t.Fatalf("form type %q FORM_TYPE %q", typ, formType)
	}
	// Submitting the form back unchanged is accepted and changes nothing.
	c := defaultConfig()
	if err := apply(fields, &c, values); err != nil || c != defaultConfig() {
		t.Fatalf("submitting the default form: %+v, %v", c, err)
	}
	s := x.String()
	for _, want := range []string{"pubsub#access_model", "<option><value>whitelist</value></option>", "pubsub#max_items", "at most 256"} {
		if !strings.Contains(s, want) {
			t.Errorf("form lacks %q: %s", want, s)
		}
	}
}

func TestPubsubError(t *testing.T) {
	e := pubsubError(xmpp.CondConflict, "precondition-not-met", "why")
	el := e.Element()
	if el.Child(xmpp.NSStanzas, "conflict") == nil || el.Child(NSErrors, "precondition-not-met") == nil || el.Attr("type") != "cancel" {
		t.Fatalf("error element %s", el)
	}
	u := unsupported("subscribe").Element()
	if u.Child(NSErrors, "unsupported").Attr("feature") != "subscribe" {
		t.Fatalf("unsupported %s", u)
	}
}
