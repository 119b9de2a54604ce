// Package auth implements the server side of SASL authentication for client
// streams: SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), their -PLUS
// variants with the tls-exporter (RFC 9266) and tls-server-end-point
// (RFC 5929) channel bindings, and PLAIN (RFC 4616) over TLS.
//
// Only SCRAM verifiers are stored (storage.ScramCredential: salt, iteration
// count, StoredKey, ServerKey); PLAIN passwords are checked against them.
//
// Each mechanism is a mellium.im/sasl Mechanism driven by a sasl.Negotiator.
// The mechanisms are built per exchange as closures that capture what the
// generic sasl interface cannot carry (the account lookup, the server
// certificate for tls-server-end-point, the authenticated username); the
// per-step protocol state travels through the negotiator's cache.
package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"mellium.im/sasl"
	"mellium.im/xmpp/jid"

	"wren.im/wren/storage"
)

// Errors returned by Exchange.Step (wrapped with details; test them with
// errors.Is). The caller maps them onto SASL <failure/> conditions
// (RFC 6120 §6.5). Any other error, such as a storage failure returned by
// Server.Lookup, is best reported as <temporary-auth-failure/>.
var (
	// ErrNotAuthorized means the credentials were not accepted: wrong
	// password, unknown user (deliberately indistinguishable to the client),
	// channel binding mismatch or a detected downgrade. Maps to
	// <not-authorized/>.
	ErrNotAuthorized = errors.New("auth: not authorized")
	// ErrMalformed means a client message violates the syntax of the
	// mechanism, is too large, or asks for something the mechanism cannot do
	// (such as an unsupported channel binding type). Maps to
	// <malformed-request/>.
	ErrMalformed = errors.New("auth: malformed request")
	// ErrInvalidAuthzid means the client asked to act as an identity other
	// than its own bare JID. Maps to <invalid-authzid/>.
	ErrInvalidAuthzid = errors.New("auth: invalid authzid")
	// ErrInvalidMechanism is returned by Server.Start for a mechanism that is
	// not offered on the stream. Maps to <invalid-mechanism/>.
	ErrInvalidMechanism = errors.New("auth: invalid mechanism")
	// ErrExchangeFinished is returned by Exchange.Step once the exchange has
	// succeeded or failed; a new exchange needs a new Server.Start.
	ErrExchangeFinished = errors.New("auth: exchange already finished")
	// ErrDowngrade accompanies ErrNotAuthorized when a client that supports
	// channel binding did not see the -PLUS mechanisms the server offers
	// (RFC 5802 §6). It is a protocol mismatch or an attack, not a password
	// guess.
	ErrDowngrade = errors.New("auth: channel binding downgrade")
	// ErrInvalidPassword is returned by NewCredentials for a password that is
	// empty or not allowed by the PRECIS OpaqueString profile.
	ErrInvalidPassword = errors.New("auth: invalid password")
)

// Mechanism names, as advertised in <mechanisms/>.
const (
	ScramSHA256Plus = "SCRAM-SHA-256-PLUS"
	ScramSHA1Plus   = "SCRAM-SHA-1-PLUS"
	ScramSHA256     = "SCRAM-SHA-256"
	ScramSHA1       = "SCRAM-SHA-1"
	Plain           = "PLAIN"
)

// Channel binding types (XEP-0440 advertisement and SCRAM gs2 header).
const (
	// TLSExporter is RFC 9266 tls-exporter, offered only on TLS 1.3.
	TLSExporter = "tls-exporter"
	// TLSServerEndPoint is RFC 5929 tls-server-end-point, a hash of the
	// server's certificate.
	TLSServerEndPoint = "tls-server-end-point"
)

// MaxMessageSize is the largest client message, after base64 decoding, that
// Exchange.Step accepts.
const MaxMessageSize = 4096

// DefaultUnknownUserIterations is the iteration count shown to a client that
// tries to log in as a user that does not exist, unless
// Server.UnknownUserIterations says otherwise.
const DefaultUnknownUserIterations = 4096

// Server configures SASL for one stream. Its fields must not change while an
// Exchange started from it is in progress.
type Server struct {
	// Domain is the XMPP domain of the users. An authzid is accepted only if
	// it is empty or the bare JID user@Domain of the authenticating user.
	Domain string
	// Lookup returns the account of a (normalised) username, or an error
	// wrapping storage.ErrNotFound for an unknown user.
	Lookup func(ctx context.Context, username string) (storage.Account, error)
	// TLS is the state of the stream's completed TLS handshake, nil when the
	// stream is not encrypted.
	TLS *tls.ConnectionState
	// ServerCert is the leaf certificate the server presented in the TLS
	// handshake, used for tls-server-end-point. If nil, that channel binding
	// is not offered.
	ServerCert *x509.Certificate
	// AllowPlain offers PLAIN; it is only ever offered when TLS != nil.
	AllowPlain bool
	// NoChannelBinding turns channel binding off: no -PLUS mechanisms and no
	// XEP-0440 advertisement. For deployments behind a TLS-terminating proxy,
	// where the client's TLS channel is not the server's.
	NoChannelBinding bool

	// UnknownUserSecret keys the derivation of the fake salt shown to a
	// client that tries to log in as a user that does not exist, so that
	// repeated attempts see the same salt, as they would for a real account.
	// It should be a random secret of at least 32 bytes shared by all streams
	// of the server and kept for the server's lifetime. If empty, a random
	// salt is made up for every attempt.
	UnknownUserSecret []byte
	// UnknownUserIterations is the iteration count shown to a client that
	// tries to log in as a user that does not exist. It should equal the
	// count used for new credentials. Zero means
	// DefaultUnknownUserIterations.
	UnknownUserIterations int
}

// Mechanisms returns the mechanism names to advertise, strongest first:
// SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS (only when the stream is encrypted
// and a channel binding is available), SCRAM-SHA-256, SCRAM-SHA-1, and PLAIN
// if AllowPlain is set and the stream is encrypted.
func (s *Server) Mechanisms() []string {
	var mechs []string
	if len(s.ChannelBindings()) > 0 {
		mechs = append(mechs, ScramSHA256Plus, ScramSHA1Plus)
	}
	mechs = append(mechs, ScramSHA256, ScramSHA1)
	if s.AllowPlain && s.TLS != nil {
		mechs = append(mechs, Plain)
	}
	return mechs
}

// ChannelBindings returns the channel binding types supported on this stream,
// for XEP-0440 advertisement: tls-exporter on TLS 1.3 only (RFC 9266 defines
// it for TLS 1.3; on TLS 1.2 it would be safe only with the extended master
// secret), and tls-server-end-point when ServerCert is set and RFC 5929
// defines a hash for its signature algorithm (it does not for Ed25519, for
// instance). The result is empty when the stream is not encrypted or the
// handshake is not complete.
func (s *Server) ChannelBindings() []string {
	if s.TLS == nil || !s.TLS.HandshakeComplete || s.NoChannelBinding {
		return nil
	}
	var cb []string
	if s.TLS.Version >= tls.VersionTLS13 {
		cb = append(cb, TLSExporter)
	}
	if s.ServerCert != nil {
		if _, ok := endPointHash(s.ServerCert); ok {
			cb = append(cb, TLSServerEndPoint)
		}
	}
	return cb
}

// Start begins one exchange with the named mechanism. It returns an error
// wrapping ErrInvalidMechanism for a name not in Mechanisms(). The context
// is used for the account lookup made by Exchange.Step.
func (s *Server) Start(ctx context.Context, mechanism string) (*Exchange, error) {
	if !slices.Contains(s.Mechanisms(), mechanism) {
		return nil, fmt.Errorf("%w: %q is not offered on this stream", ErrInvalidMechanism, mechanism)
	}
	if s.Lookup == nil {
		return nil, errors.New("auth: Server.Lookup is not set")
	}
	e := &Exchange{
		ctx:      ctx,
		cfg:      *s,
		bindings: s.ChannelBindings(),
		sNonce:   newServerNonce(),
	}
	if d, err := jid.New("", s.Domain, ""); err == nil {
		e.domain = d.Domainpart()
	}

	var mech sasl.Mechanism
	switch mechanism {
	case Plain:
		mech = e.plainMechanism()
	case ScramSHA256Plus:
		mech = e.scramMechanism(mechanism, scramSHA256, true)
	case ScramSHA1Plus:
		mech = e.scramMechanism(mechanism, scramSHA1, true)
	case ScramSHA256:
		mech = e.scramMechanism(mechanism, scramSHA256, false)
	case ScramSHA1:
		mech = e.scramMechanism(mechanism, scramSHA1, false)
	default:
		// Unreachable: Mechanisms only lists the names above.
		return nil, fmt.Errorf("%w: %q", ErrInvalidMechanism, mechanism)
	}
	var opts []sasl.Option
	if s.TLS != nil {
		opts = append(opts, sasl.TLSState(*s.TLS))
	}
	e.neg = sasl.NewServer(mech, nil, opts...)
	return e, nil
}

// Exchange is one SASL authentication exchange on a stream. It is not safe
// for concurrent use.
type Exchange struct {
	ctx      context.Context
	cfg      Server   // configuration as it was at Start
	domain   string   // cfg.Domain normalised; "" if it is not a valid domain
	bindings []string // channel bindings available on the stream
	neg      *sasl.Negotiator

	// sNonce is the server part of the SCRAM nonce. Tests replace it before
	// the first Step to reproduce published examples.
	sNonce string

	username string // set on success only
	claimed  string // the normalised username the client claimed, success or not
	finished bool
}

// Step consumes one client message (already base64-decoded; the initial
// response may be empty, in which case an empty challenge is returned) and
// returns the server message to send: a challenge when done is false, the
// additional data for <success/> when done is true (for SCRAM the "v=..."
// server-final message, for PLAIN nothing). On error the exchange is over and
// the caller sends <failure/> with the condition for the error; calling Step
// again returns ErrExchangeFinished.
func (e *Exchange) Step(clientMsg []byte) (serverMsg []byte, done bool, err error) {
	if e.finished {
		return nil, false, ErrExchangeFinished
	}
	if len(clientMsg) > MaxMessageSize {
		e.finished = true
		return nil, false, fmt.Errorf("%w: message of %d bytes exceeds the limit of %d", ErrMalformed, len(clientMsg), MaxMessageSize)
	}
	// The mechanism keeps parts of the message across steps; do not alias
	// the caller's buffer.
	more, resp, err := e.neg.Step(bytes.Clone(clientMsg))
	if err != nil {
		e.finished = true
		return nil, false, err
	}
	if !more {
		e.finished = true
	}
	return resp, !more, nil
}

// Claimed returns the normalised username the client tried to log in as
// (known once its first message was parsed, whether or not it succeeded),
// so that callers can limit failed attempts per account.
func (e *Exchange) Claimed() string { return e.claimed }

// Username returns the authenticated, normalised username (the localpart of
// the user's bare JID) after success, and "" before.
func (e *Exchange) Username() string {
	return e.username
}

// errServerStart is returned by the Start function of our mechanisms, which a
// server-side sasl.Negotiator never calls.
var errServerStart = errors.New("auth: mechanism is server-only")

func serverStart(*sasl.Negotiator) (bool, []byte, any, error) {
	return false, nil, nil, errServerStart
}
