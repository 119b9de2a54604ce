package push

import (
	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

// Namespaces that make a message worth waking a device for.
const (
	nsCarbons       = "urn:xmpp:carbons:2"
	nsForward       = "urn:xmpp:forward:0"
	nsMAM           = "urn:xmpp:mam:2"
	nsJingleMessage = "urn:xmpp:jingle-message:0"
	nsMUCUser       = "http://jabber.org/protocol/muc#user"
	nsConference    = "jabber:x:conference"
)

// stanzaInfo is what a notification needs to know about one stanza.
type stanzaInfo struct {
	// important asks for an alert: a body, an encrypted payload, a call
	// proposal or an invitation.
	important bool
	// subscription is a presence subscription request.
	subscription bool
	sender       string // bare JID of the sender
	body         string
}

// classify decides whether a stanza queued for a sleeping device is worth
// a push, and how urgent it is.
func classify(el *xmpp.Element) (stanzaInfo, bool) {
	switch el.Local {
	case "presence":
		if el.Attr("type") == "subscribe" {
			return stanzaInfo{subscription: true, sender: bareOf(el.Attr("from"))}, true
		}
		return stanzaInfo{}, false
	case "message":
	default:
		return stanzaInfo{}, false
	}
	if el.Attr("type") == "error" || el.Child(nsMAM, "result") != nil {
		// Errors, and archive results the client asked for itself.
		return stanzaInfo{}, false
	}
	if c := el.Child(nsCarbons, "sent"); c != nil {
		// The user's own message from another device.
		return stanzaInfo{}, false
	}
	if c := el.Child(nsCarbons, "received"); c != nil {
		inner := forwarded(c)
		if inner == nil {
			return stanzaInfo{}, false
		}
		el = inner
	}
	info := stanzaInfo{sender: bareOf(el.Attr("from"))}
	groupchat := el.Attr("type") == "groupchat"
	if b := el.Child(xmpp.NSClient, "body"); b != nil {
		info.body = b.Text()
		info.important = !groupchat && info.body != ""
	}
	for _, c := range el.Elements() {
		switch {
		case c.Space == "eu.siacs.conversations.axolotl" && c.Local == "encrypted",
			c.Space == "urn:xmpp:omemo:2" && c.Local == "encrypted",
			c.Space == "urn:xmpp:openpgp:0" && c.Local == "openpgp",
			c.Space == "jabber:x:encrypted" && c.Local == "x":
			info.important = !groupchat
		case c.Space == nsJingleMessage && c.Local == "propose",
			c.Space == nsConference && c.Local == "x",
			c.Space == nsMUCUser && c.Local == "x" && c.Child(nsMUCUser, "invite") != nil:
			info.important = true
		}
	}
	return info, true
}

// forwarded returns the message inside a carbons or forwarding wrapper.
func forwarded(wrapper *xmpp.Element) *xmpp.Element {
	fwd := wrapper.Child(nsForward, "forwarded")
	if fwd == nil {
		return nil
	}
	return fwd.Child(xmpp.NSClient, "message")
}

func bareOf(s string) string {
	j, err := jid.Parse(s)
	if err != nil {
		return ""
	}
	return j.Bare().String()
}
