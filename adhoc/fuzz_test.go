package adhoc

import (
	"testing"

	"wren.im/wren/xmpp"
)

// FuzzParseForm feeds data forms from the network (ad-hoc command
// submissions) to the form parser: no input may panic, and a parsed
// form's values are reachable through its own accessors.
func FuzzParseForm(f *testing.F) {
	f.Add(`<x xmlns='jabber:x:data' type='submit'><field var='token'><value>abc</value></field><field var='android-id'><value>1</value></field></x>`)
	f.Add(`<command xmlns='http://jabber.org/protocol/commands' node='register-push-fcm' action='execute'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:x</value></field><field var='a'/><field/></x></command>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := xmpp.ParseElement([]byte(s))
		if err != nil {
			return
		}
		var form *Form
		if el.Local == "x" {
			form = ParseForm(el)
		} else {
			form = FindForm(el)
		}
		if form == nil {
			return
		}
		for _, fl := range form.Fields {
			form.Value(fl.Var)
		}
		form.Element()
	})
}
