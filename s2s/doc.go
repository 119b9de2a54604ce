// Package s2s federates Wren with other XMPP servers: server-to-server
// streams (RFC 6120) in both directions, over STARTTLS or direct TLS
// (XEP-0368), authenticated with SASL EXTERNAL and certificates
// (XEP-0178) or with Server Dialback (XEP-0220, keys as in XEP-0185).
//
// Outgoing, a Service keeps one stream per remote domain: the first stanza
// for a domain starts it (SRV lookup of _xmpps-server._tcp and
// _xmpp-server._tcp, or a configured address), stanzas queue while it is
// set up and are returned to their senders with remote-server-not-found or
// remote-server-timeout when that fails. Idle streams are closed.
//
// Incoming, a Service accepts streams from other servers, authenticates
// the domains they speak for and routes their stanzas, refusing any whose
// 'from' is not one of them.
//
// With Config.Bidi, streams are bidirectional (XEP-0288) when both sides
// support it: an incoming stream also carries the stanzas for the domains
// authenticated on it, and an outgoing stream the stanzas of the domain it
// was opened to.
package s2s
