package s2s

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// dialbackKey computes the key for a stream from originating to receiving
// with the given stream id, as XEP-0185 recommends:
// HMAC-SHA256(hex(SHA-256(secret)), receiving + " " + originating + " " + id),
// hex-encoded. Only this server checks the keys it generates, so the
// secret never leaves the process.
func dialbackKey(secret []byte, receiving, originating, streamID string) string {
	k := sha256.Sum256(secret)
	mac := hmac.New(sha256.New, []byte(hex.EncodeToString(k[:])))
	mac.Write([]byte(receiving + " " + originating + " " + streamID))
	return hex.EncodeToString(mac.Sum(nil))
}

// checkDialbackKey reports whether key is the one this server generated
// for the stream.
func checkDialbackKey(secret []byte, receiving, originating, streamID, key string) bool {
	want := dialbackKey(secret, receiving, originating, streamID)
	return hmac.Equal([]byte(want), []byte(key))
}
