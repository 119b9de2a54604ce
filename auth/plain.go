package auth

import (
	"bytes"
	"crypto/hmac"
	"fmt"
	"unicode/utf8"

	"mellium.im/sasl"
)

// plainAwaiting is the cache value after an empty initial response.
type plainAwaiting struct{}

// plainMechanism returns the PLAIN mechanism (RFC 4616) for this exchange.
// The password is checked against the stored SCRAM credential.
func (e *Exchange) plainMechanism() sasl.Mechanism {
	return sasl.Mechanism{
		Name:  Plain,
		Start: serverStart,
		Next: func(_ *sasl.Negotiator, msg []byte, cache any) (bool, []byte, any, error) {
			if cache == nil && len(msg) == 0 {
				// No initial response: ask for the message.
				return true, []byte{}, plainAwaiting{}, nil
			}
			if err := e.plainVerify(msg); err != nil {
				return false, nil, nil, err
			}
			return false, nil, nil, nil
		},
	}
}

// plainVerify checks "authzid NUL authcid NUL passwd" and records the
// username on success.
func (e *Exchange) plainVerify(msg []byte) error {
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 || !utf8.Valid(msg) {
		return fmt.Errorf("%w: PLAIN message must be authzid NUL authcid NUL password, in UTF-8", ErrMalformed)
	}
	authzid, authcid, passwd := string(parts[0]), string(parts[1]), string(parts[2])

	username, err := normalizeUsername(authcid)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAuthorized, err)
	}
	e.claimed = username
	if authzid != "" {
		if err := e.checkAuthzid(authzid, username); err != nil {
			return err
		}
	}
	password, err := preparePassword(passwd)
	if err != nil {
		return fmt.Errorf("%w: password not allowed by OpaqueString", ErrNotAuthorized)
	}

	// Prefer the SCRAM-SHA-256 credential, fall back to SHA-1. For an unknown
	// user a fake SHA-256 one costs the same PBKDF2 work.
	h, cred, known, err := e.lookupCredential(username, scramSHA256, scramSHA1)
	if err != nil {
		return err
	}
	sp, err := h.saltedPassword(password, cred.Salt, cred.Iterations)
	if err != nil {
		return err
	}
	ok := hmac.Equal(h.storedKey(sp), cred.StoredKey)
	switch {
	case !known:
		return fmt.Errorf("%w: unknown user or no SCRAM credential", ErrNotAuthorized)
	case !ok:
		return fmt.Errorf("%w: wrong password", ErrNotAuthorized)
	}
	e.username = username
	return nil
}
