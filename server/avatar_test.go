package server

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"wren.im/wren/xmpp"
)

// testImage is a few bytes standing in for a PNG.
var testImage = []byte("\x89PNG\r\n\x1a\nnot really a picture, but bytes all the same")

func imageID(b []byte) string {
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

func vcardPhotoOf(t *testing.T, c *imClient, user string) (typ string, data []byte) {
	t.Helper()
	r := c.result("get", user, `<vCard xmlns='vcard-temp'/>`)
	ph := r.Child(xmpp.NSVCard, "vCard").Child(xmpp.NSVCard, "PHOTO")
	if ph == nil {
		return "", nil
	}
	data, err := base64.StdEncoding.DecodeString(ph.ChildText(xmpp.NSVCard, "BINVAL"))
	if err != nil {
		t.Fatalf("vCard BINVAL: %v", err)
	}
	return ph.ChildText(xmpp.NSVCard, "TYPE"), data
}

// TestAvatarConversion: a PEP avatar becomes the vCard photo, its hash is
// added to presence, and a vCard photo becomes a PEP avatar (XEP-0398).
func TestAvatarConversion(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	alice := ts.online(t, "alice", "pc")
	bob := ts.online(t, "bob", "pc")
	alice.drain()
	id := imageID(testImage)

	// PEP -> vCard. A metadata item whose image does not hash to its id
	// changes nothing.
	alice.result("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:data'><item id='`+id+`'><data xmlns='urn:xmpp:avatar:data'>`+base64.StdEncoding.EncodeToString(testImage)+`</data></item></publish></pubsub>`)
	alice.result("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'><item id='bad'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='`+strings.Repeat("0", 40)+`' bytes='1' type='image/png'/></metadata></item></publish></pubsub>`)
	if _, data := vcardPhotoOf(t, bob, "alice@localhost"); data != nil {
		t.Fatal("a metadata item pointing to no image set a vCard photo")
	}
	alice.result("set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'><item id='`+id+`'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='`+id+`' bytes='`+strconv.Itoa(len(testImage))+`' type='image/png'/><info id='x' url='https://example.org/a.png' bytes='1' type='image/png'/></metadata></item></publish></pubsub>`)
	typ, data := vcardPhotoOf(t, bob, "alice@localhost")
	if typ != "image/png" || string(data) != string(testImage) {
		t.Fatalf("vCard photo after the PEP avatar: %q %q", typ, data)
	}

	// The hash goes into alice's presence, unless her client set its own.
	bob.drain()
	alice.send(`<presence><show>away</show></presence>`)
	p := bob.expect("alice's presence", isPresence(alice.jid, ""))
	if got := p.Child("vcard-temp:x:update", "x").ChildText("vcard-temp:x:update", "photo"); got != id {
		t.Fatalf("presence photo hash %q, want %s: %s", got, id, p)
	}
	alice.send(`<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>`)
	p = bob.expect("alice's presence", isPresence(alice.jid, ""))
	if ph := p.Child("vcard-temp:x:update", "x").Child("vcard-temp:x:update", "photo"); ph == nil || ph.Text() != "" {
		t.Fatalf("the client's empty photo element was overwritten: %s", p)
	}

	// vCard -> PEP.
	bob.result("set", "", `<vCard xmlns='vcard-temp'><FN>Bob</FN><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>`+base64.StdEncoding.EncodeToString(testImage[:20])+`</BINVAL></PHOTO></vCard>`)
	bid := imageID(testImage[:20])
	r := alice.result("get", "bob@localhost", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub>`)
	items := r.Child("http://jabber.org/protocol/pubsub", "pubsub").Child("http://jabber.org/protocol/pubsub", "items")
	info := items.FirstElement().Child("urn:xmpp:avatar:metadata", "metadata").Child("urn:xmpp:avatar:metadata", "info")
	if info == nil || info.Attr("id") != bid || info.Attr("type") != "image/jpeg" || info.Attr("bytes") != "20" {
		t.Fatalf("PEP metadata after the vCard photo: %s", r)
	}
	r = alice.result("get", "bob@localhost", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'><item id='`+bid+`'/></items></pubsub>`)
	if !strings.Contains(r.String(), base64.StdEncoding.EncodeToString(testImage[:20])) {
		t.Fatalf("PEP data after the vCard photo: %s", r)
	}
	// Removing the photo from the vCard clears the PEP avatar.
	bob.result("set", "", `<vCard xmlns='vcard-temp'><FN>Bob</FN></vCard>`)
	r = alice.result("get", "bob@localhost", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata' max_items='1'/></pubsub>`)
	md := r.Child("http://jabber.org/protocol/pubsub", "pubsub").Child("http://jabber.org/protocol/pubsub", "items").FirstElement().Child("urn:xmpp:avatar:metadata", "metadata")
	if md == nil || md.Child("urn:xmpp:avatar:metadata", "info") != nil {
		t.Fatalf("PEP metadata after the photo was removed: %s", r)
	}
}
