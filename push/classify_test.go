package push

import (
	"testing"

	"wren.im/wren/xmpp"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name            string
		xml             string
		push, important bool
		body            string
	}{
		{"chat with body", `<message from='a@x/r' type='chat'><body>hi</body></message>`, true, true, "hi"},
		{"empty body", `<message from='a@x/r'><body></body></message>`, true, false, ""},
		{"omemo", `<message from='a@x/r'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>`, true, true, ""},
		{"omemo2", `<message from='a@x/r'><encrypted xmlns='urn:xmpp:omemo:2'/></message>`, true, true, ""},
		{"call", `<message from='a@x/r'><propose xmlns='urn:xmpp:jingle-message:0' id='1'/></message>`, true, true, ""},
		{"chat state", `<message from='a@x/r'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, true, false, ""},
		{"groupchat", `<message from='room@muc/n' type='groupchat'><body>hi</body></message>`, true, false, "hi"},
		{"error", `<message from='a@x/r' type='error'><body>hi</body></message>`, false, false, ""},
		{"mam result", `<message from='a@x'><result xmlns='urn:xmpp:mam:2'/></message>`, false, false, ""},
		{"sent carbon", `<message from='a@x'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='a@x/o'><body>mine</body></message></forwarded></sent></message>`, false, false, ""},
		{"received carbon", `<message from='a@x'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='b@x/o'><body>yours</body></message></forwarded></received></message>`, true, true, "yours"},
		{"presence", `<presence from='a@x/r'/>`, false, false, ""},
		{"subscribe", `<presence from='a@x/r' type='subscribe'/>`, true, false, ""},
		{"iq", `<iq from='a@x/r' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`, false, false, ""},
	} {
		el, err := xmpp.ParseElement([]byte(c.xml))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		info, push := classify(el)
		if push != c.push || info.important != c.important || info.body != c.body {
			t.Errorf("%s: push=%v important=%v body=%q, want %v %v %q", c.name, push, info.important, info.body, c.push, c.important, c.body)
		}
	}
}
