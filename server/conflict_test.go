package server

import (
	"testing"

	"wren.im/wren/xmpp"
)

// TestConflictRetractsOldPresence: when a new connection binds the same
// full JID, contacts first see the old session go unavailable (it is torn
// down before the new one binds), then the new session's presence.
func TestConflictRetractsOldPresence(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.users(t, "alice", "bob")
	ts.mutual(t, "alice", "bob")
	bob := ts.online(t, "bob", "b")
	alice := ts.online(t, "alice", "same")
	bob.expect("alice available", isPresence("alice@localhost/same", ""))
	alice2 := ts.connect(t, "alice", "same")
	bob.expect("the replaced session's unavailable", isPresence("alice@localhost/same", "unavailable"))
	alice.untilStreamError(xmpp.StreamConflict)
	alice2.available("")
	bob.expect("the new session's presence", isPresence("alice@localhost/same", ""))
}
