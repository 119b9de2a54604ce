package sqlite

import (
	"context"
	"encoding/base32"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"wren.im/wren/storage"
)

// Size of the archive the page benchmarks run on.
const (
	benchArchiveSize     = 1_000_000 // messages of the user whose archive is queried
	benchOtherUsersSize  = 100_000   // messages of other users in the same table
	benchContacts        = 50        // the user's contacts, in turn
	benchPageSize        = 50
	benchStanzaBodyBytes = 120
)

// benchArchive is a filled archive and the ids the benchmarks page from.
type benchArchive struct {
	s *Store
	// middle is the id of the message in the middle of the archive;
	// contactMiddle the id of a message with contact 7 in the middle.
	middle, contactMiddle string
}

// fillArchive writes benchArchiveSize messages for "alice" and
// benchOtherUsersSize for ten other users in one transaction on the
// writer connection, bypassing the group-commit writer: it is a bulk
// loader for benchmarks, not the way the server writes.
func fillArchive(b *testing.B) *benchArchive {
	b.Helper()
	ctx := context.Background()
	s := openAt(b, filepath.Join(b.TempDir(), "wren.db"))
	users := []string{"alice"}
	for i := range 10 {
		users = append(users, fmt.Sprintf("user%d", i))
	}
	mustCreate(b, s, users...)

	start := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	idBytes := make([]byte, 10)
	newID := func() string {
		for i := range idBytes {
			idBytes[i] = byte(rng.Uint32())
		}
		return base32.StdEncoding.EncodeToString(idBytes)
	}
	body := make([]byte, benchStanzaBodyBytes)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(`INSERT INTO archive (username, stanza_id, ts, with_jid, with_res, outgoing, stanza)
		VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	a := &benchArchive{s: s}
	t0 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	total := benchArchiveSize + benchOtherUsersSize
	for i := range total {
		user := "alice"
		if i%((total+benchOtherUsersSize-1)/benchOtherUsersSize) == 1 {
			user = users[1+i%10]
		}
		contact := i % benchContacts
		with := fmt.Sprintf("contact%d@example.org", contact)
		id := newID()
		stanza := fmt.Sprintf(`<message xmlns="jabber:client" from="%s/phone" to="%s@example.org/desk" type="chat" id="m%d"><body>%s</body></message>`,
			with, user, i, body)
		// One message every 100 ms: a million is about 28 hours.
		if _, err := stmt.Exec(user, id, t0+int64(i)*int64(100*time.Millisecond), with, "phone", i%2, []byte(stanza)); err != nil {
			b.Fatal(err)
		}
		if user != "alice" {
			continue
		}
		if i >= total/2 && a.middle == "" {
			a.middle = id
		}
		if i >= total/2 && contact == 7 && a.contactMiddle == "" {
			a.contactMiddle = id
		}
	}
	if err := stmt.Close(); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	var n int
	if err := s.r.QueryRow("SELECT count(*) FROM archive WHERE username = 'alice'").Scan(&n); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %d archived messages (%d for alice) in %s", total, n, time.Since(start).Round(time.Millisecond))
	return a
}

// BenchmarkArchivePage measures one MAM page query (50 messages, stanzas
// included) on an archive of a million messages. The fill takes a few
// seconds and runs only when benchmarks are asked for (-bench).
//
//	go test -run '^$' -bench BenchmarkArchivePage -benchtime 2000x ./storage/sqlite/
func BenchmarkArchivePage(b *testing.B) {
	a := fillArchive(b)
	ctx := context.Background()
	run := func(name string, q storage.ArchiveQuery) {
		b.Run(name, func(b *testing.B) {
			q.Max = benchPageSize
			for b.Loop() {
				p, err := a.s.QueryArchive(ctx, "alice", q)
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Messages) != benchPageSize {
					b.Fatalf("page of %d messages, want %d", len(p.Messages), benchPageSize)
				}
			}
		})
	}
	run("first", storage.ArchiveQuery{})
	run("middle", storage.ArchiveQuery{After: []string{a.middle}})
	run("last", storage.ArchiveQuery{Last: true})
	run("middle-backwards", storage.ArchiveQuery{Last: true, Before: []string{a.middle}})
	run("with-contact-middle", storage.ArchiveQuery{With: "contact7@example.org", After: []string{a.contactMiddle}})
	run("with-contact-last", storage.ArchiveQuery{With: "contact7@example.org", Last: true})
	run("time-range", storage.ArchiveQuery{
		Start: time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC),
		End:   time.Date(2020, 1, 1, 13, 0, 0, 0, time.UTC),
	})
}

// BenchmarkAppendArchive measures archiving one message through the
// group-commit writer, as the server does for every message.
func BenchmarkAppendArchive(b *testing.B) {
	ctx := context.Background()
	s := newStore(b)
	mustCreate(b, s, "alice")
	stanza := []byte(`<message xmlns="jabber:client" from="bob@example.org/phone" to="alice@example.org" type="chat"><body>hello</body></message>`)
	i := 0
	for b.Loop() {
		i++
		_, err := s.AppendArchive(ctx, "alice", storage.ArchivedMessage{ID: fmt.Sprintf("id%d", i), With: "bob@example.org", Stanza: stanza})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueueArchive is the archive path of routed messages: writes
// queued without waiting (group commit), for 100 users, as on a busy
// server; the time per op includes their commit (AfterWrites at the end).
func BenchmarkQueueArchive(b *testing.B) {
	ctx := context.Background()
	s := newStore(b)
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("user%d", i)
		mustCreate(b, s, users[i])
	}
	stanza := []byte(`<message xmlns="jabber:client" from="bob@example.org/phone" to="alice@example.org" type="chat"><body>hello</body></message>`)
	i := 0
	for b.Loop() {
		i++
		m := storage.ArchivedMessage{ID: fmt.Sprintf("%016d", i), With: "bob@example.org", Stanza: stanza}
		if err := s.QueueArchive(ctx, users[i%len(users)], m, nil); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	if err := s.AfterWrites(func() { close(done) }); err != nil {
		b.Fatal(err)
	}
	<-done
}
