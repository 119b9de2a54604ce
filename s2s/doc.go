// Package s2s will carry server-to-server federation (RFC 6120 s2s streams,
// XEP-0220 dialback, XEP-0178 SASL EXTERNAL, XEP-0288 bidi, XEP-0368 SRV
// lookup). Until it lands, the router bounces stanzas for other domains with
// remote-server-not-found; see docs/compliance.md.
package s2s
