package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"wren.im/wren/storage"
)

// saltSize is the length of the salts NewCredentials and the unknown-user
// path make up.
const saltSize = 16

// serverNonceSize is the number of random bytes in the server part of a
// SCRAM nonce (base64-encoded on the wire).
const serverNonceSize = 24

// NewCredentials derives SCRAM-SHA-1 and SCRAM-SHA-256 credentials from a
// password, with fresh random 16-byte salts and the given iteration count.
// The password is prepared with the PRECIS OpaqueString profile (RFC 8265)
// first; an empty or invalid password yields an error wrapping
// ErrInvalidPassword.
func NewCredentials(password string, iterations int) (sha1, sha256 storage.ScramCredential, err error) {
	if iterations < 1 {
		return sha1, sha256, fmt.Errorf("auth: iteration count %d is not positive", iterations)
	}
	prepared, err := preparePassword(password)
	if err != nil {
		return sha1, sha256, err
	}
	sha1, err = deriveCredential(scramSHA1, prepared, randomBytes(saltSize), iterations)
	if err != nil {
		return sha1, sha256, err
	}
	sha256, err = deriveCredential(scramSHA256, prepared, randomBytes(saltSize), iterations)
	return sha1, sha256, err
}

// preparePassword applies the OpaqueString profile.
func preparePassword(password string) (string, error) {
	if password == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidPassword)
	}
	if !utf8.ValidString(password) {
		// OpaqueString would silently turn invalid bytes into U+FFFD.
		return "", fmt.Errorf("%w: invalid UTF-8", ErrInvalidPassword)
	}
	p, err := precis.OpaqueString.String(password)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidPassword, err)
	}
	if p == "" {
		return "", fmt.Errorf("%w: empty after preparation", ErrInvalidPassword)
	}
	return p, nil
}

// scramHash identifies the hash function of a SCRAM mechanism.
type scramHash int

const (
	scramSHA1 scramHash = iota + 1
	scramSHA256
)

func (h scramHash) String() string {
	if h == scramSHA1 {
		return "SHA-1"
	}
	return "SHA-256"
}

// new returns a new hash.Hash of the function.
func (h scramHash) new() hash.Hash {
	if h == scramSHA1 {
		return sha1.New() // #nosec G401 -- SCRAM-SHA-1 is defined with SHA-1.
	}
	return sha256.New()
}

// size is the output length of the function.
func (h scramHash) size() int {
	if h == scramSHA1 {
		return sha1.Size
	}
	return sha256.Size
}

// credential picks the account's credential for the function.
func (h scramHash) credential(a storage.Account) storage.ScramCredential {
	if h == scramSHA1 {
		return a.SHA1
	}
	return a.SHA256
}

// usable reports whether c is a complete credential for the function. An
// account may lack one (for example no SHA-1 credential at all).
func (h scramHash) usable(c storage.ScramCredential) bool {
	return len(c.Salt) > 0 && c.Iterations > 0 &&
		len(c.StoredKey) == h.size() && len(c.ServerKey) == h.size()
}

// mac computes HMAC(key, msg).
func (h scramHash) mac(key []byte, msg string) []byte {
	m := hmac.New(h.new, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// sum computes H(b).
func (h scramHash) sum(b []byte) []byte {
	d := h.new()
	d.Write(b)
	return d.Sum(nil)
}

// saltedPassword computes Hi(password, salt, i) (RFC 5802 §2.2), which is
// PBKDF2 with HMAC and an output of one hash length.
func (h scramHash) saltedPassword(password string, salt []byte, iterations int) ([]byte, error) {
	sp, err := pbkdf2.Key(h.new, password, salt, iterations, h.size())
	if err != nil {
		return nil, fmt.Errorf("auth: PBKDF2-%s: %w", h, err)
	}
	return sp, nil
}

// storedKey computes StoredKey = H(HMAC(SaltedPassword, "Client Key")).
func (h scramHash) storedKey(saltedPassword []byte) []byte {
	return h.sum(h.mac(saltedPassword, "Client Key"))
}

// deriveCredential computes the stored form of an already prepared password
// (RFC 5802 §3).
func deriveCredential(h scramHash, password string, salt []byte, iterations int) (storage.ScramCredential, error) {
	sp, err := h.saltedPassword(password, salt, iterations)
	if err != nil {
		return storage.ScramCredential{}, err
	}
	return storage.ScramCredential{
		Salt:       append([]byte(nil), salt...),
		Iterations: iterations,
		StoredKey:  h.storedKey(sp),
		ServerKey:  h.mac(sp, "Server Key"),
	}, nil
}

// fakeCredential makes up a credential for a user that does not exist (or
// lacks a credential for h), so that the exchange proceeds like a real one
// and fails only at the end. With a secret the salt is a keyed function of
// the username, stable across attempts; the keys are random, so no password
// matches them (and the exchange fails regardless).
func (s *Server) fakeCredential(h scramHash, username string) storage.ScramCredential {
	key := s.UnknownUserSecret
	if len(key) == 0 {
		key = randomBytes(32)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("wren auth: salt for unknown user\x00"))
	m.Write([]byte(h.String()))
	m.Write([]byte{0})
	m.Write([]byte(username))
	iterations := s.UnknownUserIterations
	if iterations <= 0 {
		iterations = DefaultUnknownUserIterations
	}
	return storage.ScramCredential{
		Salt:       m.Sum(nil)[:saltSize],
		Iterations: iterations,
		StoredKey:  randomBytes(h.size()),
		ServerKey:  randomBytes(h.size()),
	}
}

// lookupCredential looks the user up and returns the first usable credential
// among those for the hash functions hs, in order, with its hash function.
// known is false when the user does not exist or has none of them; the
// credential is then a fake one for hs[0]. Storage failures other than
// storage.ErrNotFound are returned as errors.
func (e *Exchange) lookupCredential(username string, hs ...scramHash) (h scramHash, cred storage.ScramCredential, known bool, err error) {
	acct, err := e.cfg.Lookup(e.ctx, username)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return 0, cred, false, fmt.Errorf("auth: looking up account: %w", err)
	default:
		for _, h := range hs {
			if c := h.credential(acct); h.usable(c) {
				return h, c, true, nil
			}
		}
	}
	return hs[0], e.cfg.fakeCredential(hs[0], username), false, nil
}

// newServerNonce returns the random server part of a SCRAM nonce: printable,
// without ','.
func newServerNonce() string {
	return base64.StdEncoding.EncodeToString(randomBytes(serverNonceSize))
}

// randomBytes returns n bytes from crypto/rand, which never fails (it
// crashes the program if the system's generator is broken).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
