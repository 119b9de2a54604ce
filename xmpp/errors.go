package xmpp

import (
	"errors"
	"fmt"
)

// Stream error conditions (RFC 6120 §4.9.3) used by Wren.
const (
	StreamBadFormat            = "bad-format"
	StreamConflict             = "conflict"
	StreamConnectionTimeout    = "connection-timeout"
	StreamHostUnknown          = "host-unknown"
	StreamImproperAddressing   = "improper-addressing"
	StreamInternalServerError  = "internal-server-error"
	StreamInvalidFrom          = "invalid-from"
	StreamInvalidNamespace     = "invalid-namespace"
	StreamInvalidXML           = "invalid-xml"
	StreamNotAuthorized        = "not-authorized"
	StreamNotWellFormed        = "not-well-formed"
	StreamPolicyViolation      = "policy-violation"
	StreamResourceConstraint   = "resource-constraint"
	StreamRestrictedXML        = "restricted-xml"
	StreamSystemShutdown       = "system-shutdown"
	StreamUndefinedCondition   = "undefined-condition"
	StreamUnsupportedEncoding  = "unsupported-encoding"
	StreamUnsupportedStanza    = "unsupported-stanza-type"
	StreamUnsupportedVersion   = "unsupported-version"
	StreamUnsupportedFeature   = "unsupported-feature"
	StreamReset                = "reset"
	StreamSeeOtherHost         = "see-other-host"
	StreamRemoteConnectionFail = "remote-connection-failed"
)

// StreamError is a stream-level error: the stream is closed after sending it.
type StreamError struct {
	Condition string
	Text      string
	// Extra is an application-specific condition element, or nil.
	Extra *Element
}

func (e *StreamError) Error() string {
	if e.Text != "" {
		return "stream error " + e.Condition + ": " + e.Text
	}
	return "stream error " + e.Condition
}

// Element returns the <stream:error/> element.
func (e *StreamError) Element() *Element {
	el := NewElement(NSStream, "error")
	el.AddChild(NSStreams, e.Condition)
	if e.Text != "" {
		t := el.AddChild(NSStreams, "text")
		t.Attrs = []Attr{{Space: NSXML, Local: "lang", Value: "en"}}
		t.AppendText(e.Text)
	}
	if e.Extra != nil {
		el.Append(e.Extra)
	}
	return el
}

// NewStreamError returns a stream error with a human-readable text.
func NewStreamError(condition, format string, args ...any) *StreamError {
	return &StreamError{Condition: condition, Text: fmt.Sprintf(format, args...)}
}

// AsStreamError returns the *StreamError inside err, if any.
func AsStreamError(err error) (*StreamError, bool) {
	var se *StreamError
	ok := errors.As(err, &se)
	return se, ok
}

// Stanza error types (RFC 6120 §8.3.2).
const (
	ErrTypeAuth     = "auth"
	ErrTypeCancel   = "cancel"
	ErrTypeContinue = "continue"
	ErrTypeModify   = "modify"
	ErrTypeWait     = "wait"
)

// Stanza error conditions (RFC 6120 §8.3.3) with their usual type.
const (
	CondBadRequest            = "bad-request"
	CondConflict              = "conflict"
	CondFeatureNotImplemented = "feature-not-implemented"
	CondForbidden             = "forbidden"
	CondGone                  = "gone"
	CondInternalServerError   = "internal-server-error"
	CondItemNotFound          = "item-not-found"
	CondJIDMalformed          = "jid-malformed"
	CondNotAcceptable         = "not-acceptable"
	CondNotAllowed            = "not-allowed"
	CondNotAuthorized         = "not-authorized"
	CondPolicyViolation       = "policy-violation"
	CondRecipientUnavailable  = "recipient-unavailable"
	CondRedirect              = "redirect"
	CondRegistrationRequired  = "registration-required"
	CondRemoteServerNotFound  = "remote-server-not-found"
	CondRemoteServerTimeout   = "remote-server-timeout"
	CondResourceConstraint    = "resource-constraint"
	CondServiceUnavailable    = "service-unavailable"
	CondSubscriptionRequired  = "subscription-required"
	CondUndefinedCondition    = "undefined-condition"
	CondUnexpectedRequest     = "unexpected-request"
)

// defaultErrType maps each condition to the type RFC 6120 §8.3.3 gives it.
func defaultErrType(cond string) string {
	switch cond {
	case CondBadRequest, CondJIDMalformed, CondNotAcceptable, CondPolicyViolation, CondRedirect:
		return ErrTypeModify
	case CondForbidden, CondNotAuthorized, CondRegistrationRequired, CondSubscriptionRequired:
		return ErrTypeAuth
	case CondRecipientUnavailable, CondRemoteServerTimeout, CondResourceConstraint, CondUnexpectedRequest:
		return ErrTypeWait
	default:
		return ErrTypeCancel
	}
}

// StanzaError describes a stanza-level error to return to a sender.
type StanzaError struct {
	Type      string // empty: the condition's default type
	Condition string
	Text      string
	// By is the entity that generated the error (optional).
	By string
	// Extra is an application-specific condition element, or nil.
	Extra *Element
}

func (e *StanzaError) Error() string {
	if e.Text != "" {
		return e.Condition + ": " + e.Text
	}
	return e.Condition
}

// Element returns the <error/> child element.
func (e *StanzaError) Element() *Element {
	typ := e.Type
	if typ == "" {
		typ = defaultErrType(e.Condition)
	}
	el := NewElement(NSClient, "error", "type", typ, "by", e.By)
	el.AddChild(NSStanzas, e.Condition)
	if e.Text != "" {
		t := el.AddChild(NSStanzas, "text")
		t.Attrs = []Attr{{Space: NSXML, Local: "lang", Value: "en"}}
		t.AppendText(e.Text)
	}
	if e.Extra != nil {
		el.Append(e.Extra)
	}
	return el
}

// NewStanzaError returns a stanza error with the condition's default type.
func NewStanzaError(condition, text string) *StanzaError {
	return &StanzaError{Condition: condition, Text: text}
}

// ErrorReply builds the error response to stanza: to and from swapped, type
// 'error', the original payload kept (RFC 6120 §8.3.1). It returns nil when
// stanza is itself an error, which must never be answered with an error.
func ErrorReply(stanza *Element, serr *StanzaError) *Element {
	if stanza.Attr("type") == "error" {
		return nil
	}
	r := &Element{Space: stanza.Space, Local: stanza.Local}
	r.Attrs = make([]Attr, 0, len(stanza.Attrs)+1)
	for _, a := range stanza.Attrs {
		if a.Space == "" && (a.Local == "to" || a.Local == "from" || a.Local == "type") {
			continue
		}
		r.Attrs = append(r.Attrs, a)
	}
	r.SetAttr("from", stanza.Attr("to"))
	r.SetAttr("to", stanza.Attr("from"))
	r.SetAttr("type", "error")
	if stanza.Local != "iq" || stanza.Attr("type") == "set" || stanza.Attr("type") == "get" {
		r.Children = append(r.Children, stanza.Children...)
	}
	r.Append(serr.Element())
	return r
}

// ResultReply builds an empty IQ result for iq, with to/from swapped.
func ResultReply(iq *Element) *Element {
	return NewElement(iq.Space, "iq", "type", "result", "id", iq.Attr("id"), "from", iq.Attr("to"), "to", iq.Attr("from"))
}
