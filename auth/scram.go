package auth

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"mellium.im/sasl"

	"wren.im/wren/storage"
)

// scramPhase is the point a SCRAM exchange has reached; it travels through
// the sasl.Negotiator's cache.
type scramPhase int

const (
	// scramAwaitFirst: the client sent an empty initial response and an
	// empty challenge went out; the client-first-message comes next.
	scramAwaitFirst scramPhase = iota + 1
	// scramAwaitFinal: the server-first-message went out.
	scramAwaitFinal
	// scramDone: the exchange succeeded.
	scramDone
)

// scramState is what the server remembers between the SCRAM messages.
type scramState struct {
	phase scramPhase

	username string // normalised
	known    bool   // false: cred is fake and the exchange must fail
	cred     storage.ScramCredential

	cbInput         []byte // expected decoded c= value
	nonce           string // combined client and server nonce
	clientFirstBare string
	serverFirst     string
}

// scramMechanism returns the SCRAM mechanism with hash h for this exchange.
func (e *Exchange) scramMechanism(name string, h scramHash, plus bool) sasl.Mechanism {
	return sasl.Mechanism{
		Name:  name,
		Start: serverStart,
		Next: func(n *sasl.Negotiator, msg []byte, cache any) (bool, []byte, any, error) {
			st, _ := cache.(*scramState)
			switch {
			case st == nil && len(msg) == 0:
				// No initial response: an empty challenge asks for the
				// client-first-message (RFC 4422 §5).
				return true, []byte{}, &scramState{phase: scramAwaitFirst}, nil
			case st == nil || st.phase == scramAwaitFirst:
				return e.scramFirst(n, h, plus, msg)
			case st.phase == scramAwaitFinal:
				return e.scramFinal(h, st, msg)
			default:
				return false, nil, nil, ErrExchangeFinished
			}
		},
	}
}

// scramFirst handles the client-first-message and answers with the
// server-first-message.
func (e *Exchange) scramFirst(n *sasl.Negotiator, h scramHash, plus bool, msg []byte) (bool, []byte, any, error) {
	cf, err := parseClientFirst(msg)
	if err != nil {
		return false, nil, nil, err
	}
	cbInput, err := e.expectedChannelBinding(n, cf, plus)
	if err != nil {
		return false, nil, nil, err
	}
	username, err := normalizeUsername(cf.username)
	if err != nil {
		// No account can have this name; nothing to hide.
		return false, nil, nil, fmt.Errorf("%w: %v", ErrNotAuthorized, err)
	}
	e.claimed = username
	if cf.authzid != "" {
		if err := e.checkAuthzid(cf.authzid, username); err != nil {
			return false, nil, nil, err
		}
	}
	_, cred, known, err := e.lookupCredential(username, h)
	if err != nil {
		return false, nil, nil, err
	}

	nonce := cf.nonce + e.sNonce
	serverFirst := "r=" + nonce +
		",s=" + base64.StdEncoding.EncodeToString(cred.Salt) +
		",i=" + strconv.Itoa(cred.Iterations)
	st := &scramState{
		phase:           scramAwaitFinal,
		username:        username,
		known:           known,
		cred:            cred,
		cbInput:         cbInput,
		nonce:           nonce,
		clientFirstBare: cf.bare,
		serverFirst:     serverFirst,
	}
	return true, []byte(serverFirst), st, nil
}

// expectedChannelBinding checks the gs2 channel binding flag against the
// mechanism and the stream, and returns the cbind-input the client must send
// back (base64-encoded) in the c= attribute: the gs2 header, followed by the
// channel binding data if the client uses channel binding.
func (e *Exchange) expectedChannelBinding(n *sasl.Negotiator, cf *clientFirst, plus bool) ([]byte, error) {
	switch cf.flag {
	case 'p':
		if !plus {
			return nil, fmt.Errorf("%w: channel binding requested with a mechanism without -PLUS", ErrMalformed)
		}
		data, err := e.channelBindingData(n, cf.cbName)
		if err != nil {
			return nil, err
		}
		return append([]byte(cf.gs2Header), data...), nil
	case 'y':
		if plus {
			return nil, fmt.Errorf("%w: -PLUS mechanism used without channel binding", ErrMalformed)
		}
		if len(e.bindings) > 0 {
			// RFC 5802 §6: the client supports channel binding but thinks
			// the server does not, although it does: someone removed the
			// -PLUS mechanisms from the list the client saw.
			return nil, fmt.Errorf("%w: %w: client did not see the channel binding the server offers (possible downgrade attack)", ErrNotAuthorized, ErrDowngrade)
		}
	default: // 'n'
		if plus {
			return nil, fmt.Errorf("%w: -PLUS mechanism used without channel binding", ErrMalformed)
		}
	}
	return []byte(cf.gs2Header), nil
}

// scramFinal verifies the client-final-message and answers with the
// server-final-message.
func (e *Exchange) scramFinal(h scramHash, st *scramState, msg []byte) (bool, []byte, any, error) {
	cf, err := parseClientFinal(msg)
	if err != nil {
		return false, nil, nil, err
	}
	if len(cf.proof) != h.size() {
		return false, nil, nil, fmt.Errorf("%w: client proof has the wrong length", ErrNotAuthorized)
	}

	// RFC 5802 §3. Every check is computed before any is acted on, so that
	// a known and an unknown user take the same path.
	authMessage := st.clientFirstBare + "," + st.serverFirst + "," + cf.withoutProof
	clientSignature := h.mac(st.cred.StoredKey, authMessage)
	clientKey := make([]byte, h.size())
	subtle.XORBytes(clientKey, cf.proof, clientSignature)
	proofOK := hmac.Equal(h.sum(clientKey), st.cred.StoredKey)
	cbOK := hmac.Equal(cf.cbInput, st.cbInput)
	nonceOK := hmac.Equal([]byte(cf.nonce), []byte(st.nonce))
	serverSignature := h.mac(st.cred.ServerKey, authMessage)

	var reason string
	switch {
	case !nonceOK:
		reason = "nonce does not match"
	case !cbOK:
		reason = "channel binding does not match"
	case !st.known:
		reason = "unknown user or no SCRAM-" + h.String() + " credential"
	case !proofOK:
		reason = "invalid client proof"
	}
	if reason != "" {
		return false, nil, nil, fmt.Errorf("%w: %s", ErrNotAuthorized, reason)
	}
	e.username = st.username
	serverFinal := "v=" + base64.StdEncoding.EncodeToString(serverSignature)
	return false, []byte(serverFinal), &scramState{phase: scramDone}, nil
}

// clientFirst is a parsed client-first-message (RFC 5802 §7).
type clientFirst struct {
	flag      byte   // gs2-cbind-flag: 'n', 'y' or 'p'
	cbName    string // channel binding type, with flag 'p'
	authzid   string // unescaped; "" if absent
	username  string // unescaped, not normalised
	nonce     string // client nonce
	gs2Header string // as sent, including both commas
	bare      string // client-first-message-bare, as sent
}

// parseClientFirst parses
//
//	client-first-message = gs2-header client-first-message-bare
//	gs2-header = gs2-cbind-flag "," [ authzid ] ","
//	gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
//	client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
//
// Errors wrap ErrMalformed.
func parseClientFirst(msg []byte) (*clientFirst, error) {
	if err := checkText(msg); err != nil {
		return nil, err
	}
	s := string(msg)
	flag, rest, ok1 := strings.Cut(s, ",")
	authz, bare, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 {
		return nil, malformed("client-first-message: incomplete gs2 header")
	}
	cf := &clientFirst{
		gs2Header: s[:len(flag)+len(authz)+2],
		bare:      bare,
	}

	switch {
	case flag == "n" || flag == "y":
		cf.flag = flag[0]
	case strings.HasPrefix(flag, "p="):
		cf.flag = 'p'
		cf.cbName = flag[2:]
		if !isCBName(cf.cbName) {
			return nil, malformed("client-first-message: invalid channel binding name")
		}
	default:
		return nil, malformed("client-first-message: invalid channel binding flag")
	}

	if authz != "" {
		v, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return nil, malformed("client-first-message: invalid authzid field")
		}
		var err error
		if cf.authzid, err = unescapeSaslname(v); err != nil {
			return nil, fmt.Errorf("%w: authzid: %v", ErrMalformed, err)
		}
	}

	fields := strings.Split(bare, ",")
	if strings.HasPrefix(fields[0], "m=") {
		return nil, malformed("client-first-message: unsupported mandatory extension")
	}
	if len(fields) < 2 {
		return nil, malformed("client-first-message: username or nonce missing")
	}
	user, ok := strings.CutPrefix(fields[0], "n=")
	if !ok {
		return nil, malformed("client-first-message: username expected")
	}
	var err error
	if cf.username, err = unescapeSaslname(user); err != nil {
		return nil, fmt.Errorf("%w: username: %v", ErrMalformed, err)
	}
	if cf.nonce, ok = strings.CutPrefix(fields[1], "r="); !ok || !isPrintable(cf.nonce) {
		return nil, malformed("client-first-message: invalid nonce")
	}
	if err := checkExtensions(fields[2:]); err != nil {
		return nil, err
	}
	return cf, nil
}

// clientFinal is a parsed client-final-message (RFC 5802 §7).
type clientFinal struct {
	cbInput      []byte // decoded c= value
	nonce        string
	proof        []byte // decoded p= value
	withoutProof string // client-final-message-without-proof, as sent
}

// parseClientFinal parses
//
//	client-final-message = client-final-message-without-proof "," proof
//	client-final-message-without-proof = channel-binding "," nonce ["," extensions]
//
// Errors wrap ErrMalformed.
func parseClientFinal(msg []byte) (*clientFinal, error) {
	if err := checkText(msg); err != nil {
		return nil, err
	}
	s := string(msg)
	i := strings.LastIndexByte(s, ',')
	if i < 0 {
		return nil, malformed("client-final-message: too few attributes")
	}
	cf := &clientFinal{withoutProof: s[:i]}
	p, ok := strings.CutPrefix(s[i+1:], "p=")
	if !ok {
		return nil, malformed("client-final-message: proof must be the last attribute")
	}
	var err error
	if cf.proof, err = decodeBase64(p); err != nil {
		return nil, fmt.Errorf("%w: client-final-message: proof: %v", ErrMalformed, err)
	}
	if len(cf.proof) == 0 {
		return nil, malformed("client-final-message: empty proof")
	}

	fields := strings.Split(cf.withoutProof, ",")
	if len(fields) < 2 {
		return nil, malformed("client-final-message: too few attributes")
	}
	c, ok := strings.CutPrefix(fields[0], "c=")
	if !ok {
		return nil, malformed("client-final-message: channel binding must be the first attribute")
	}
	if cf.cbInput, err = decodeBase64(c); err != nil {
		return nil, fmt.Errorf("%w: client-final-message: channel binding: %v", ErrMalformed, err)
	}
	if len(cf.cbInput) == 0 {
		return nil, malformed("client-final-message: empty channel binding")
	}
	if cf.nonce, ok = strings.CutPrefix(fields[1], "r="); !ok || !isPrintable(cf.nonce) {
		return nil, malformed("client-final-message: invalid nonce")
	}
	if err := checkExtensions(fields[2:]); err != nil {
		return nil, err
	}
	return cf, nil
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// checkText rejects what no SCRAM message may contain: invalid UTF-8 and
// NUL.
func checkText(msg []byte) error {
	if !utf8.Valid(msg) {
		return malformed("invalid UTF-8")
	}
	for _, b := range msg {
		if b == 0 {
			return malformed("NUL character")
		}
	}
	return nil
}

// checkExtensions checks optional extension attributes (attr-val = ALPHA "="
// value), which are ignored, except that the reserved m attribute must cause
// a failure (RFC 5802 §5.1).
func checkExtensions(fields []string) error {
	for _, f := range fields {
		if len(f) < 3 || !isAlpha(f[0]) || f[1] != '=' {
			return malformed("invalid extension attribute")
		}
		if f[0] == 'm' {
			return malformed("unsupported mandatory extension")
		}
	}
	return nil
}

// unescapeSaslname decodes a saslname: "=2C" stands for ',' and "=3D" for
// '='; any other '=' is an error. The result must not be empty.
func unescapeSaslname(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty")
	}
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1 : min(i+3, len(s))] {
		case "2C":
			b.WriteByte(',')
		case "3D":
			b.WriteByte('=')
		default:
			return "", errors.New("invalid escape sequence")
		}
		i += 2
	}
	return b.String(), nil
}

// decodeBase64 decodes padded standard base64 and nothing else (the
// encoding/base64 decoder alone would skip line breaks).
func decodeBase64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=' {
			return nil, errors.New("invalid base64")
		}
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("invalid base64")
	}
	return b, nil
}

// isCBName reports whether s is a cb-name: 1*(ALPHA / DIGIT / "." / "-").
func isCBName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !isDigit(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isPrintable reports whether s is 1*printable: ASCII 0x21-0x7E except ','.
func isPrintable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
