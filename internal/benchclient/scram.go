package benchclient

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
)

// SCRAM mechanism names this client implements (without channel binding).
const (
	ScramSHA1   = "SCRAM-SHA-1"
	ScramSHA256 = "SCRAM-SHA-256"
)

// ErrServerSignature is returned when the server's final message does not
// prove that it knows the password.
var ErrServerSignature = errors.New("benchclient: SCRAM server signature mismatch")

// maxIterations bounds the PBKDF2 work a server may ask of the client.
const maxIterations = 1 << 20

// KeyCache remembers the SCRAM ClientKey and ServerKey derived from a
// password, salt and iteration count, as real clients do, so that repeated
// logins of the same account do not repeat PBKDF2 in the load tool. It is
// safe for concurrent use and holds at most MaxEntries keys.
type KeyCache struct {
	mu sync.Mutex
	m  map[string]scramKeys
	// MaxEntries bounds the cache; zero means 1,000,000.
	MaxEntries int
}

type scramKeys struct{ client, server []byte }

func (c *KeyCache) get(k string) (scramKeys, bool) {
	if c == nil {
		return scramKeys{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *KeyCache) put(k string, v scramKeys) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := c.MaxEntries
	if limit <= 0 {
		limit = 1_000_000
	}
	if c.m == nil {
		c.m = make(map[string]scramKeys)
	}
	if len(c.m) < limit {
		c.m[k] = v
	}
}

// Len returns the number of cached keys.
func (c *KeyCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Scram is the client side of one SCRAM exchange (RFC 5802, RFC 7677)
// without channel binding (gs2 header "n,,").
type Scram struct {
	mech      string
	newHash   func() hash.Hash
	user      string
	password  string
	cache     *KeyCache
	nonce     string
	firstBare string
	serverSig []byte
}

// NewScram starts an exchange with mechanism mech (ScramSHA1 or
// ScramSHA256) for user and password. cache may be nil.
func NewScram(mech, user, password string, cache *KeyCache) (*Scram, error) {
	s := &Scram{mech: mech, user: user, password: password, cache: cache}
	switch mech {
	case ScramSHA1:
		s.newHash = sha1.New
	case ScramSHA256:
		s.newHash = sha256.New
	default:
		return nil, fmt.Errorf("benchclient: unsupported mechanism %q", mech)
	}
	var nb [18]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, fmt.Errorf("benchclient: nonce: %w", err)
	}
	s.nonce = base64.RawStdEncoding.EncodeToString(nb[:])
	return s, nil
}

// First returns the client-first message.
func (s *Scram) First() []byte {
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s.user)
	s.firstBare = "n=" + name + ",r=" + s.nonce
	return []byte("n,," + s.firstBare)
}

// Final answers the server-first message with the client-final message.
func (s *Scram) Final(serverFirst []byte) ([]byte, error) {
	var nonce, salt64, iters string
	for _, f := range strings.Split(string(serverFirst), ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "r":
			nonce = v
		case "s":
			salt64 = v
		case "i":
			iters = v
		case "m":
			return nil, errors.New("benchclient: SCRAM: server requires an unknown extension")
		}
	}
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return nil, errors.New("benchclient: SCRAM: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, errors.New("benchclient: SCRAM: bad salt")
	}
	n, err := strconv.Atoi(iters)
	if err != nil || n < 1 || n > maxIterations {
		return nil, fmt.Errorf("benchclient: SCRAM: bad iteration count %q", iters)
	}
	key := s.mech + "\x00" + s.password + "\x00" + salt64 + "\x00" + iters
	keys, ok := s.cache.get(key)
	if !ok {
		salted, err := pbkdf2.Key(s.newHash, s.password, salt, n, s.newHash().Size())
		if err != nil {
			return nil, fmt.Errorf("benchclient: SCRAM: %w", err)
		}
		keys = scramKeys{client: s.mac(salted, "Client Key"), server: s.mac(salted, "Server Key")}
		s.cache.put(key, keys)
	}
	finalNoProof := "c=biws,r=" + nonce
	authMsg := s.firstBare + "," + string(serverFirst) + "," + finalNoProof
	h := s.newHash()
	h.Write(keys.client)
	stored := h.Sum(nil)
	sig := s.mac(stored, authMsg)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = keys.client[i] ^ sig[i]
	}
	s.serverSig = s.mac(keys.server, authMsg)
	return []byte(finalNoProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks the server-final message ("v=...").
func (s *Scram) Verify(serverFinal []byte) error {
	msg := string(serverFinal)
	if e, ok := strings.CutPrefix(msg, "e="); ok {
		return fmt.Errorf("benchclient: SCRAM: server error %q", e)
	}
	v, ok := strings.CutPrefix(msg, "v=")
	if !ok {
		return fmt.Errorf("benchclient: SCRAM: unexpected server-final %q", msg)
	}
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	got, err := base64.StdEncoding.DecodeString(v)
	if err != nil || s.serverSig == nil || subtle.ConstantTimeCompare(got, s.serverSig) != 1 {
		return ErrServerSignature
	}
	return nil
}

func (s *Scram) mac(key []byte, msg string) []byte {
	m := hmac.New(s.newHash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
