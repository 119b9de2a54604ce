// Package xmpp is the protocol core that every other Wren package builds on:
// the element tree, the bounded stream reader, serialisation, stream and
// stanza errors, and the namespaces of the standards Wren speaks.
package xmpp

// Namespaces used across Wren.
const (
	NSStream          = "http://etherx.jabber.org/streams"
	NSClient          = "jabber:client"
	NSServer          = "jabber:server"
	NSXML             = "http://www.w3.org/XML/1998/namespace"
	NSTLS             = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL            = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBind            = "urn:ietf:params:xml:ns:xmpp-bind"
	NSSession         = "urn:ietf:params:xml:ns:xmpp-session"
	NSStreams         = "urn:ietf:params:xml:ns:xmpp-streams"
	NSStanzas         = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSRoster          = "jabber:iq:roster"
	NSRosterVer       = "urn:xmpp:features:rosterver"
	NSPreApprove      = "urn:xmpp:features:pre-approval"
	NSDelay           = "urn:xmpp:delay"
	NSDiscoInfo       = "http://jabber.org/protocol/disco#info"
	NSDiscoItems      = "http://jabber.org/protocol/disco#items"
	NSPing            = "urn:xmpp:ping"
	NSVersion         = "jabber:iq:version"
	NSVCard           = "vcard-temp"
	NSPrivate         = "jabber:iq:private"
	NSRegister        = "jabber:iq:register"
	NSRegisterFeature = "http://jabber.org/features/iq-register"
	NSSM              = "urn:xmpp:sm:3"
	NSCSI             = "urn:xmpp:csi:0"
	NSSASLCB          = "urn:xmpp:sasl-cb:0"
	NSDataForms       = "jabber:x:data"
	NSOffline         = "msgoffline"
	NSCaps            = "http://jabber.org/protocol/caps"
)
