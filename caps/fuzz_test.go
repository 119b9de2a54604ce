package caps

import (
	"testing"

	"wren.im/wren/xmpp"
)

// FuzzParseInfo feeds disco#info answers (which come from clients and
// remote servers) to the caps parser and hash computation: no input may
// panic, and a parsed answer must hash to a stable verification string.
func FuzzParseInfo(f *testing.F) {
	f.Add(`<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='Exodus 0.9.1'/><feature var='http://jabber.org/protocol/caps'/></query>`)
	f.Add(`<query xmlns='http://jabber.org/protocol/disco#info'><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field><field var='os'><value>Mac</value><value>Linux</value></field></x></query>`)
	f.Add(`<query xmlns='http://jabber.org/protocol/disco#info'><identity category='a' type='b' xml:lang='en'/><identity category='a' type='b' xml:lang='en'/></query>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := xmpp.ParseElement([]byte(s))
		if err != nil {
			return
		}
		info, err := ParseInfo(el)
		if err != nil {
			return
		}
		v1, err1 := info.Ver(HashSHA1)
		v2, err2 := info.Ver(HashSHA1)
		if (err1 == nil) != (err2 == nil) || v1 != v2 {
			t.Fatalf("unstable ver: %q %v / %q %v", v1, err1, v2, err2)
		}
	})
}
