package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wren.im/wren/storage"
)

// testLogger sends the store's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// openAt opens a store at path and closes it when the test ends.
func openAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newStore opens a store in a fresh temporary directory.
func newStore(t testing.TB) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "wren.db"))
}

// mustCreate creates accounts with fixed credentials.
func mustCreate(t testing.TB, s *Store, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := s.CreateAccount(context.Background(), testAccount(name)); err != nil {
			t.Fatalf("CreateAccount(%s): %v", name, err)
		}
	}
}

func testAccount(name string) storage.Account {
	return storage.Account{
		Username: name,
		Created:  time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600)),
		SHA1: storage.ScramCredential{
			Salt: []byte("salt1-" + name), Iterations: 4096,
			StoredKey: []byte("stored1"), ServerKey: []byte("server1"),
		},
		SHA256: storage.ScramCredential{
			Salt: []byte("salt256-" + name), Iterations: 10000,
			StoredKey: []byte("stored256"), ServerKey: []byte("server256"),
		},
	}
}

func sameCred(a, b storage.ScramCredential) bool {
	return bytes.Equal(a.Salt, b.Salt) && a.Iterations == b.Iterations &&
		bytes.Equal(a.StoredKey, b.StoredKey) && bytes.Equal(a.ServerKey, b.ServerKey)
}

func TestAccounts(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)

	if _, err := s.Account(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Account of missing user: err = %v, want ErrNotFound", err)
	}
	want := testAccount("alice")
	if err := s.CreateAccount(ctx, want); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	dup := testAccount("alice")
	dup.SHA1.Iterations = 1
	if err := s.CreateAccount(ctx, dup); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("CreateAccount duplicate: err = %v, want ErrExists", err)
	}
	got, err := s.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	if got.Username != "alice" || !got.Created.Equal(want.Created) || got.Created.Location() != time.UTC ||
		!sameCred(got.SHA1, want.SHA1) || !sameCred(got.SHA256, want.SHA256) {
		t.Fatalf("Account = %+v, want %+v (in UTC)", got, want)
	}

	// A zero creation time is replaced by the current time.
	before := time.Now()
	if err := s.CreateAccount(ctx, storage.Account{Username: "bob"}); err != nil {
		t.Fatalf("CreateAccount without credentials: %v", err)
	}
	bob, err := s.Account(ctx, "bob")
	if err != nil {
		t.Fatalf("Account(bob): %v", err)
	}
	if bob.Created.Before(before.Add(-time.Second)) || bob.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("bob created %v, want about now", bob.Created)
	}

	c1 := storage.ScramCredential{Salt: []byte("n1"), Iterations: 5000, StoredKey: []byte("k1"), ServerKey: []byte("s1")}
	c256 := storage.ScramCredential{Salt: []byte("n256"), Iterations: 6000, StoredKey: []byte("k256"), ServerKey: []byte("s256")}
	if err := s.SetCredentials(ctx, "alice", c1, c256); err != nil {
		t.Fatalf("SetCredentials: %v", err)
	}
	got, err = s.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	if !sameCred(got.SHA1, c1) || !sameCred(got.SHA256, c256) || !got.Created.Equal(want.Created) {
		t.Errorf("after SetCredentials: %+v", got)
	}
	if err := s.SetCredentials(ctx, "nobody", c1, c256); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetCredentials of missing user: err = %v, want ErrNotFound", err)
	}

	mustCreate(t, s, "zed", "carol")
	names, err := s.ListAccounts(ctx)
	if err != nil {
		t.Fatalf("ListAccounts: %v", err)
	}
	if want := []string{"alice", "bob", "carol", "zed"}; !reflect.DeepEqual(names, want) {
		t.Errorf("ListAccounts = %q, want %q", names, want)
	}

	if err := s.DeleteAccount(ctx, "bob"); err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	if _, err := s.Account(ctx, "bob"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Account after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteAccount(ctx, "bob"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteAccount twice: err = %v, want ErrNotFound", err)
	}
	// The name is free again.
	mustCreate(t, s, "bob")
}

func TestListAccountsEmpty(t *testing.T) {
	s := newStore(t)
	names, err := s.ListAccounts(context.Background())
	if err != nil || len(names) != 0 {
		t.Fatalf("ListAccounts on empty store = %q, %v; want none", names, err)
	}
}

func TestRoster(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")

	items, ver, err := s.Roster(ctx, "alice")
	if err != nil || len(items) != 0 || ver != 0 {
		t.Fatalf("empty Roster = %v, %d, %v; want none, 0, nil", items, ver, err)
	}
	if _, err := s.RosterItem(ctx, "alice", "x@example.net"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RosterItem missing: err = %v, want ErrNotFound", err)
	}

	zoe := storage.RosterItem{Contact: "zoe@example.net", Name: "Zoë", Subscription: storage.SubBoth,
		Groups: []string{"Work", "Friends", "A"}}
	bob := storage.RosterItem{Contact: "bob@example.com", Subscription: storage.SubNone, AskOut: true}
	carl := storage.RosterItem{Contact: "carl@example.org", Subscription: storage.SubFrom, PendingIn: true, Approved: true}

	var last int64
	put := func(it storage.RosterItem) {
		t.Helper()
		v, err := s.PutRosterItem(ctx, "alice", it)
		if err != nil {
			t.Fatalf("PutRosterItem(%s): %v", it.Contact, err)
		}
		if v <= last {
			t.Fatalf("PutRosterItem(%s) version %d, want > %d", it.Contact, v, last)
		}
		last = v
	}
	put(zoe)
	if last != 1 {
		t.Errorf("first version = %d, want 1", last)
	}
	put(bob)
	put(carl)

	items, ver, err = s.Roster(ctx, "alice")
	if err != nil {
		t.Fatalf("Roster: %v", err)
	}
	if ver != last {
		t.Errorf("Roster version = %d, want %d", ver, last)
	}
	if want := []storage.RosterItem{bob, carl, zoe}; !reflect.DeepEqual(items, want) {
		t.Errorf("Roster =\n%+v\nwant\n%+v", items, want)
	}

	// Replace: groups in the new order, flags cleared.
	zoe2 := zoe
	zoe2.Name = ""
	zoe2.Subscription = storage.SubTo
	zoe2.Groups = []string{"B", "A"}
	put(zoe2)
	got, err := s.RosterItem(ctx, "alice", zoe.Contact)
	if err != nil {
		t.Fatalf("RosterItem: %v", err)
	}
	if !reflect.DeepEqual(got, zoe2) {
		t.Errorf("RosterItem after replace = %+v, want %+v", got, zoe2)
	}

	v, err := s.DeleteRosterItem(ctx, "alice", bob.Contact)
	if err != nil {
		t.Fatalf("DeleteRosterItem: %v", err)
	}
	if v != last+1 {
		t.Errorf("DeleteRosterItem version = %d, want %d", v, last+1)
	}
	last = v
	if _, err := s.DeleteRosterItem(ctx, "alice", bob.Contact); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteRosterItem missing: err = %v, want ErrNotFound", err)
	}
	if _, err := s.RosterItem(ctx, "alice", bob.Contact); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("RosterItem deleted: err = %v, want ErrNotFound", err)
	}
	_, ver, _ = s.Roster(ctx, "alice")
	if ver != last {
		t.Errorf("version after failed delete = %d, want unchanged %d", ver, last)
	}

	// Emptying the roster keeps the version; the next change goes on from it.
	for _, c := range []string{carl.Contact, zoe.Contact} {
		if last, err = s.DeleteRosterItem(ctx, "alice", c); err != nil {
			t.Fatalf("DeleteRosterItem(%s): %v", c, err)
		}
	}
	items, ver, err = s.Roster(ctx, "alice")
	if err != nil || len(items) != 0 || ver != last {
		t.Fatalf("emptied Roster = %v, %d, %v; want none, %d, nil", items, ver, err, last)
	}
	put(bob)
	if _, ver, _ = s.Roster(ctx, "alice"); ver != last {
		t.Errorf("version = %d, want %d", ver, last)
	}

	// Versions are per user.
	mustCreate(t, s, "bea")
	if v, err := s.PutRosterItem(ctx, "bea", bob); err != nil || v != 1 {
		t.Errorf("bea's first PutRosterItem = %d, %v; want 1, nil", v, err)
	}

	// No roster without an account.
	if _, err := s.PutRosterItem(ctx, "nobody", bob); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PutRosterItem for missing account: err = %v, want ErrNotFound", err)
	}
	if _, ver, _ := s.Roster(ctx, "nobody"); ver != 0 {
		t.Errorf("failed put created version %d", ver)
	}
	bad := bob
	bad.Subscription = "maybe"
	if _, err := s.PutRosterItem(ctx, "alice", bad); err == nil {
		t.Error("PutRosterItem with invalid subscription succeeded")
	}
}

func TestRosterVersionConcurrentMonotonic(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	const n = 50
	versions := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := s.PutRosterItem(ctx, "alice", storage.RosterItem{
				Contact: fmt.Sprintf("c%02d@example.com", i), Subscription: storage.SubNone})
			if err != nil {
				t.Errorf("PutRosterItem: %v", err)
			}
			versions[i] = v
		})
	}
	wg.Wait()
	seen := make(map[int64]bool)
	for _, v := range versions {
		if v < 1 || v > n || seen[v] {
			t.Fatalf("versions %v are not a permutation of 1..%d", versions, n)
		}
		seen[v] = true
	}
}

func TestSubscriptionRequests(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")

	reqs, err := s.SubscriptionRequests(ctx, "alice")
	if err != nil || len(reqs) != 0 {
		t.Fatalf("SubscriptionRequests on empty = %v, %v", reqs, err)
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	put := func(from string, at time.Time, stanza string) {
		t.Helper()
		err := s.PutSubscriptionRequest(ctx, "alice", storage.SubscriptionRequest{From: from, Stanza: []byte(stanza), Stored: at})
		if err != nil {
			t.Fatalf("PutSubscriptionRequest(%s): %v", from, err)
		}
	}
	put("c@x", t0.Add(2*time.Second), "<presence from='c@x'/>")
	put("a@x", t0.Add(3*time.Second), "<presence from='a@x'/>")
	put("b@x", t0.Add(1*time.Second), "<presence from='b@x'/>")
	// Replacing updates the stanza and the time.
	put("c@x", t0.Add(4*time.Second), "<presence from='c@x' id='2'/>")

	reqs, err = s.SubscriptionRequests(ctx, "alice")
	if err != nil {
		t.Fatalf("SubscriptionRequests: %v", err)
	}
	want := []storage.SubscriptionRequest{
		{From: "b@x", Stanza: []byte("<presence from='b@x'/>"), Stored: t0.Add(1 * time.Second)},
		{From: "a@x", Stanza: []byte("<presence from='a@x'/>"), Stored: t0.Add(3 * time.Second)},
		{From: "c@x", Stanza: []byte("<presence from='c@x' id='2'/>"), Stored: t0.Add(4 * time.Second)},
	}
	if !reflect.DeepEqual(reqs, want) {
		t.Errorf("SubscriptionRequests =\n%+v\nwant\n%+v", reqs, want)
	}

	if err := s.DeleteSubscriptionRequest(ctx, "alice", "a@x"); err != nil {
		t.Fatalf("DeleteSubscriptionRequest: %v", err)
	}
	if err := s.DeleteSubscriptionRequest(ctx, "alice", "a@x"); err != nil {
		t.Errorf("DeleteSubscriptionRequest of missing request: %v, want nil", err)
	}
	if err := s.DeleteSubscriptionRequest(ctx, "nobody", "a@x"); err != nil {
		t.Errorf("DeleteSubscriptionRequest for missing user: %v, want nil", err)
	}
	reqs, _ = s.SubscriptionRequests(ctx, "alice")
	if len(reqs) != 2 || reqs[0].From != "b@x" || reqs[1].From != "c@x" {
		t.Errorf("after delete: %+v", reqs)
	}

	// Zero time means now.
	if err := s.PutSubscriptionRequest(ctx, "alice", storage.SubscriptionRequest{From: "d@x", Stanza: []byte("<presence/>")}); err != nil {
		t.Fatal(err)
	}
	reqs, _ = s.SubscriptionRequests(ctx, "alice")
	if last := reqs[len(reqs)-1]; last.From != "d@x" || time.Since(last.Stored) > time.Minute || last.Stored.Location() != time.UTC {
		t.Errorf("request with zero time stored as %+v", last)
	}

	err = s.PutSubscriptionRequest(ctx, "nobody", storage.SubscriptionRequest{From: "a@x", Stanza: []byte("<presence/>")})
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PutSubscriptionRequest for missing account: err = %v, want ErrNotFound", err)
	}
}

func TestOffline(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice", "bob")

	if msgs, err := s.OfflineMessages(ctx, "alice"); err != nil || len(msgs) != 0 {
		t.Fatalf("OfflineMessages on empty = %v, %v", msgs, err)
	}
	if n, err := s.CountOffline(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("CountOffline on empty = %d, %v", n, err)
	}

	before := time.Now().Add(-time.Second)
	var ids []int64
	for i := range 5 {
		id, err := s.StoreOffline(ctx, "alice", []byte(fmt.Sprintf("<message id='%d'/>", i)), 0)
		if err != nil {
			t.Fatalf("StoreOffline: %v", err)
		}
		if len(ids) > 0 && id <= ids[len(ids)-1] {
			t.Fatalf("ID %d after %d: not increasing", id, ids[len(ids)-1])
		}
		ids = append(ids, id)
		// Interleave another user's messages.
		if _, err := s.StoreOffline(ctx, "bob", []byte("<message/>"), 0); err != nil {
			t.Fatalf("StoreOffline(bob): %v", err)
		}
	}
	msgs, err := s.OfflineMessages(ctx, "alice")
	if err != nil {
		t.Fatalf("OfflineMessages: %v", err)
	}
	if len(msgs) != 5 {
		t.Fatalf("got %d messages, want 5", len(msgs))
	}
	for i, m := range msgs {
		if m.ID != ids[i] || string(m.Stanza) != fmt.Sprintf("<message id='%d'/>", i) {
			t.Errorf("message %d = %d %q", i, m.ID, m.Stanza)
		}
		if m.Stored.Before(before) || m.Stored.After(time.Now().Add(time.Second)) || m.Stored.Location() != time.UTC {
			t.Errorf("message %d stored %v", i, m.Stored)
		}
	}

	if err := s.DeleteOffline(ctx, "alice", ids[2]); err != nil {
		t.Fatalf("DeleteOffline: %v", err)
	}
	msgs, _ = s.OfflineMessages(ctx, "alice")
	if len(msgs) != 2 || msgs[0].ID != ids[3] || msgs[1].ID != ids[4] {
		t.Errorf("after DeleteOffline(%d): %+v", ids[2], msgs)
	}
	if n, _ := s.CountOffline(ctx, "alice"); n != 2 {
		t.Errorf("CountOffline(alice) = %d, want 2", n)
	}
	if n, _ := s.CountOffline(ctx, "bob"); n != 5 {
		t.Errorf("CountOffline(bob) = %d, want 5 (untouched)", n)
	}
	// IDs are never reused, even after deleting the newest message.
	if err := s.DeleteOffline(ctx, "alice", ids[4]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteOffline(ctx, "bob", 1<<62); err != nil {
		t.Fatal(err)
	}
	id, err := s.StoreOffline(ctx, "alice", []byte("<message/>"), 0)
	if err != nil || id <= ids[4] {
		t.Errorf("StoreOffline after deletion = %d, %v; want ID > %d", id, err, ids[4])
	}

	if _, err := s.StoreOffline(ctx, "nobody", []byte("<message/>"), 0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("StoreOffline for missing account: err = %v, want ErrNotFound", err)
	}
}

func TestOfflineQuotaBoundary(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	for i := range 3 {
		if _, err := s.StoreOffline(ctx, "alice", []byte(fmt.Sprint(i)), 3); err != nil {
			t.Fatalf("message %d of 3: %v", i+1, err)
		}
	}
	_, err := s.StoreOffline(ctx, "alice", []byte("overflow"), 3)
	if !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Fatalf("4th message: err = %v, want ErrQuotaExceeded", err)
	}
	msgs, _ := s.OfflineMessages(ctx, "alice")
	if len(msgs) != 3 {
		t.Fatalf("%d messages stored, want 3", len(msgs))
	}
	for _, m := range msgs {
		if string(m.Stanza) == "overflow" {
			t.Error("refused message was stored")
		}
	}
	// max 0 means unlimited; a larger cap admits more.
	if _, err := s.StoreOffline(ctx, "alice", []byte("x"), 0); err != nil {
		t.Errorf("unlimited: %v", err)
	}
	if _, err := s.StoreOffline(ctx, "alice", []byte("x"), 5); err != nil {
		t.Errorf("cap 5 with 4 queued: %v", err)
	}
	if _, err := s.StoreOffline(ctx, "alice", []byte("x"), 5); !errors.Is(err, storage.ErrQuotaExceeded) {
		t.Errorf("cap 5 with 5 queued: err = %v, want ErrQuotaExceeded", err)
	}
}

func TestOfflineQuotaConcurrent(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	var ok, quota atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := s.StoreOffline(ctx, "alice", []byte(fmt.Sprint(i)), 10)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, storage.ErrQuotaExceeded):
				quota.Add(1)
			default:
				t.Errorf("StoreOffline: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 || quota.Load() != 10 {
		t.Errorf("%d stored, %d refused; want 10 and 10", ok.Load(), quota.Load())
	}
	if n, _ := s.CountOffline(ctx, "alice"); n != 10 {
		t.Errorf("CountOffline = %d, want 10", n)
	}
}

func TestVCard(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if _, err := s.VCard(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("VCard missing: err = %v, want ErrNotFound", err)
	}
	for _, v := range []string{"<vCard xmlns='vcard-temp'><FN>A</FN></vCard>", "<vCard xmlns='vcard-temp'/>"} {
		if err := s.SetVCard(ctx, "alice", []byte(v)); err != nil {
			t.Fatalf("SetVCard: %v", err)
		}
		got, err := s.VCard(ctx, "alice")
		if err != nil || string(got) != v {
			t.Fatalf("VCard = %q, %v; want %q", got, err, v)
		}
	}
	if err := s.SetVCard(ctx, "nobody", []byte("<vCard/>")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetVCard for missing account: err = %v, want ErrNotFound", err)
	}
}

func TestPrivateXML(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice", "bob")
	if _, err := s.PrivateXML(ctx, "alice", "storage:bookmarks"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PrivateXML missing: err = %v, want ErrNotFound", err)
	}
	set := func(user, ns, xml string) {
		t.Helper()
		if err := s.SetPrivateXML(ctx, user, ns, []byte(xml)); err != nil {
			t.Fatalf("SetPrivateXML(%s, %s): %v", user, ns, err)
		}
	}
	set("alice", "storage:bookmarks", "<storage xmlns='storage:bookmarks'/>")
	set("alice", "storage:rosternotes", "<storage xmlns='storage:rosternotes'/>")
	set("bob", "storage:bookmarks", "<storage xmlns='storage:bookmarks'>bob</storage>")
	set("alice", "storage:bookmarks", "<storage xmlns='storage:bookmarks'>v2</storage>")

	for _, c := range []struct{ user, ns, want string }{
		{"alice", "storage:bookmarks", "<storage xmlns='storage:bookmarks'>v2</storage>"},
		{"alice", "storage:rosternotes", "<storage xmlns='storage:rosternotes'/>"},
		{"bob", "storage:bookmarks", "<storage xmlns='storage:bookmarks'>bob</storage>"},
	} {
		got, err := s.PrivateXML(ctx, c.user, c.ns)
		if err != nil || string(got) != c.want {
			t.Errorf("PrivateXML(%s, %s) = %q, %v; want %q", c.user, c.ns, got, err, c.want)
		}
	}
	if _, err := s.PrivateXML(ctx, "bob", "storage:rosternotes"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PrivateXML of other namespace: err = %v, want ErrNotFound", err)
	}
	if err := s.SetPrivateXML(ctx, "nobody", "x", []byte("<x/>")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetPrivateXML for missing account: err = %v, want ErrNotFound", err)
	}
}

// fillUser stores one record of every kind for user.
func fillUser(t *testing.T, s *Store, user string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.PutRosterItem(ctx, user, storage.RosterItem{Contact: "c@x", Subscription: storage.SubBoth, Groups: []string{"g"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSubscriptionRequest(ctx, user, storage.SubscriptionRequest{From: "d@x", Stanza: []byte("<presence/>")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreOffline(ctx, user, []byte("<message/>"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVCard(ctx, user, []byte("<vCard/>")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPrivateXML(ctx, user, "ns", []byte("<x/>")); err != nil {
		t.Fatal(err)
	}
}

// rowsOf counts the rows of user in every per-user table.
func rowsOf(t *testing.T, s *Store, user string) map[string]int {
	t.Helper()
	counts := make(map[string]int)
	for _, table := range []string{"accounts", "roster_items", "roster_versions", "subscription_requests",
		"offline_messages", "vcards", "private_xml"} {
		var n int
		if err := s.r.QueryRow("SELECT count(*) FROM "+table+" WHERE username = ?", user).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		counts[table] = n
	}
	return counts
}

func TestDeleteAccountRemovesEverything(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice", "bob")
	fillUser(t, s, "alice")
	fillUser(t, s, "bob")
	for table, n := range rowsOf(t, s, "alice") {
		if n != 1 {
			t.Fatalf("before delete: %d rows in %s, want 1", n, table)
		}
	}

	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	for table, n := range rowsOf(t, s, "alice") {
		if n != 0 {
			t.Errorf("after delete: %d rows left in %s", n, table)
		}
	}
	for table, n := range rowsOf(t, s, "bob") {
		if n != 1 {
			t.Errorf("bob lost data: %d rows in %s, want 1", n, table)
		}
	}

	// Through the API, for a re-created account: nothing is inherited.
	mustCreate(t, s, "alice")
	if items, ver, err := s.Roster(ctx, "alice"); err != nil || len(items) != 0 || ver != 0 {
		t.Errorf("Roster = %v, %d, %v; want empty, 0", items, ver, err)
	}
	if reqs, err := s.SubscriptionRequests(ctx, "alice"); err != nil || len(reqs) != 0 {
		t.Errorf("SubscriptionRequests = %v, %v; want none", reqs, err)
	}
	if n, err := s.CountOffline(ctx, "alice"); err != nil || n != 0 {
		t.Errorf("CountOffline = %d, %v; want 0", n, err)
	}
	if _, err := s.VCard(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("VCard: err = %v, want ErrNotFound", err)
	}
	if _, err := s.PrivateXML(ctx, "alice", "ns"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("PrivateXML: err = %v, want ErrNotFound", err)
	}
}

func TestGroupCommitConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	const n = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			name := fmt.Sprintf("user%03d", i)
			if err := s.CreateAccount(ctx, testAccount(name)); err != nil {
				t.Errorf("CreateAccount(%s): %v", name, err)
				return
			}
			if _, err := s.StoreOffline(ctx, name, []byte(name), 0); err != nil {
				t.Errorf("StoreOffline(%s): %v", name, err)
			}
		})
	}
	close(start)
	wg.Wait()
	names, err := s.ListAccounts(ctx)
	if err != nil || len(names) != n {
		t.Fatalf("ListAccounts: %d names, %v; want %d", len(names), err, n)
	}
	for _, name := range names {
		msgs, err := s.OfflineMessages(ctx, name)
		if err != nil || len(msgs) != 1 || string(msgs[0].Stanza) != name {
			t.Errorf("OfflineMessages(%s) = %v, %v", name, msgs, err)
		}
	}
}

// newOp makes a write op for runBatch.
func newOp(fn func(*sql.Tx) error) *writeOp {
	return &writeOp{ctx: context.Background(), fn: fn, reply: make(chan error, 1)}
}

// blockWriter occupies the writer goroutine until the returned function is
// called, so that the next writes queue up.
func blockWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.write(context.Background(), func(*sql.Tx) error {
			close(started)
			<-unblock
			return nil
		})
	}()
	<-started
	return func() {
		close(unblock)
		if err := <-errc; err != nil {
			t.Errorf("blocking write: %v", err)
		}
	}
}

func TestBatchFailingOpIsolated(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "bob")

	// Run one batch directly, deterministically. The writer goroutine is
	// idle, so nothing else uses the write connection meanwhile.
	partial := errors.New("fails after writing")
	ops := []*writeOp{
		newOp(func(tx *sql.Tx) error { _, err := tx.Exec(insertAccountSQL, "alice"); return err }),
		// Duplicate: must fail alone.
		newOp(func(tx *sql.Tx) error {
			res, err := tx.Exec(insertAccountSQL+" ON CONFLICT DO NOTHING", "bob")
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return storage.ErrExists
			}
			return nil
		}),
		// Writes, then fails: its write must be rolled back.
		newOp(func(tx *sql.Tx) error {
			if _, err := tx.Exec(insertAccountSQL, "mallory"); err != nil {
				return err
			}
			return partial
		}),
		// Constraint error from SQLite itself.
		newOp(func(tx *sql.Tx) error { _, err := tx.Exec(insertAccountSQL, "bob"); return err }),
		newOp(func(tx *sql.Tx) error { _, err := tx.Exec(insertAccountSQL, "carol"); return err }),
	}
	s.runBatch(ops)
	errs := make([]error, len(ops))
	for i, op := range ops {
		errs[i] = <-op.reply
	}
	if errs[0] != nil || !errors.Is(errs[1], storage.ErrExists) || !errors.Is(errs[2], partial) ||
		errs[3] == nil || errs[4] != nil {
		t.Fatalf("batch errors = %v", errs)
	}
	names, err := s.ListAccounts(ctx)
	if want := []string{"alice", "bob", "carol"}; err != nil || !reflect.DeepEqual(names, want) {
		t.Errorf("accounts = %q, %v; want %q", names, err, want)
	}
}

const insertAccountSQL = `INSERT INTO accounts VALUES (?, 0, x'', 0, x'', x'', x'', 0, x'', x'')`

func TestBatchFailingOpThroughAPI(t *testing.T) {
	// The same through the public API: queue writes behind a blocked writer
	// so that they form one batch, one of them a duplicate.
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "bob")
	release := blockWriter(t, s)

	names := []string{"alice", "bob", "carol", "dave"}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { errs[i] = s.CreateAccount(ctx, testAccount(name)) })
	}
	// Wait until all four are queued on the writer.
	// (The blocked write itself also waits in write.)
	waitFor(t, func() bool { return queuedSenders() >= len(names)+1 })
	release()
	wg.Wait()
	for i, name := range names {
		if name == "bob" {
			if !errors.Is(errs[i], storage.ErrExists) {
				t.Errorf("CreateAccount(bob): err = %v, want ErrExists", errs[i])
			}
		} else if errs[i] != nil {
			t.Errorf("CreateAccount(%s): %v", name, errs[i])
		}
	}
	got, _ := s.ListAccounts(ctx)
	if !reflect.DeepEqual(got, names) {
		t.Errorf("accounts = %q, want %q", got, names)
	}
}

// queuedSenders estimates how many goroutines are blocked sending to the
// writer, from the goroutine dump.
func queuedSenders() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, ").write(") {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatchBrokenTransactionFailsAll(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	ops := []*writeOp{
		newOp(func(tx *sql.Tx) error { _, err := tx.Exec(insertAccountSQL, "alice"); return err }),
		// Ends the transaction behind database/sql's back.
		newOp(func(tx *sql.Tx) error { _, err := tx.Exec("ROLLBACK"); return err }),
		newOp(func(tx *sql.Tx) error { _, err := tx.Exec(insertAccountSQL, "carol"); return err }),
	}
	s.runBatch(ops)
	for i, op := range ops {
		if err := <-op.reply; err == nil {
			t.Errorf("op %d succeeded in a broken transaction", i)
		}
	}
	// The writer is still usable.
	mustCreate(t, s, "dave")
	names, _ := s.ListAccounts(ctx)
	if !reflect.DeepEqual(names, []string{"dave"}) {
		t.Errorf("accounts = %q, want only dave", names)
	}
}

func TestWriteContextCancel(t *testing.T) {
	s := newStore(t)
	mustCreate(t, s, "alice")

	// Already cancelled: nothing is written.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.StoreOffline(ctx, "alice", []byte("x"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled StoreOffline: err = %v, want context.Canceled", err)
	}

	// Cancelled while queued behind a busy writer: returns promptly, and
	// the op is not run.
	release := blockWriter(t, s)
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.StoreOffline(ctx, "alice", []byte("queued"), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("queued StoreOffline: err = %v, want DeadlineExceeded", err)
	}
	release()

	// Cancelled after the writer started the op: the caller returns, the
	// op completes and commits.
	started, unblock := make(chan struct{}), make(chan struct{})
	ctx, cancel = context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- s.write(ctx, func(tx *sql.Tx) error {
			close(started)
			<-unblock
			_, err := tx.Exec("INSERT INTO offline_messages (username, stanza, stored) VALUES ('alice', CAST('started' AS BLOB), 0)")
			return err
		})
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("started write: err = %v, want context.Canceled", err)
	}
	close(unblock)
	// A later write runs after the started one committed.
	if _, err := s.StoreOffline(context.Background(), "alice", []byte("after"), 0); err != nil {
		t.Fatal(err)
	}
	msgs, _ := s.OfflineMessages(context.Background(), "alice")
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Stanza))
	}
	if want := []string{"started", "after"}; !reflect.DeepEqual(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wren.db")
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	fillUser(t, s, "alice")
	if _, err := s.PutRosterItem(ctx, "alice", storage.RosterItem{Contact: "e@x", Subscription: storage.SubTo}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openAt(t, path)
	a, err := s.Account(ctx, "alice")
	if err != nil || !sameCred(a.SHA256, testAccount("alice").SHA256) {
		t.Errorf("Account after reopen = %+v, %v", a, err)
	}
	if items, ver, err := s.Roster(ctx, "alice"); err != nil || len(items) != 2 || ver != 2 {
		t.Errorf("Roster after reopen = %v, %d, %v", items, ver, err)
	}
	if n, _ := s.CountOffline(ctx, "alice"); n != 1 {
		t.Errorf("CountOffline after reopen = %d", n)
	}
	if v, err := s.VCard(ctx, "alice"); err != nil || string(v) != "<vCard/>" {
		t.Errorf("VCard after reopen = %q, %v", v, err)
	}
	if reqs, _ := s.SubscriptionRequests(ctx, "alice"); len(reqs) != 1 {
		t.Errorf("SubscriptionRequests after reopen = %v", reqs)
	}
	if x, err := s.PrivateXML(ctx, "alice", "ns"); err != nil || string(x) != "<x/>" {
		t.Errorf("PrivateXML after reopen = %q, %v", x, err)
	}
	// Versions continue after reopen.
	if v, err := s.PutRosterItem(ctx, "alice", storage.RosterItem{Contact: "f@x", Subscription: storage.SubTo}); err != nil || v != 3 {
		t.Errorf("PutRosterItem after reopen = %d, %v; want 3", v, err)
	}
}

// rawDB opens the database file directly, bypassing Store.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wren.db")
	for range 3 {
		s, err := Open(ctx, path, testLogger(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	db := rawDB(t, path)
	v, err := schemaVersion(ctx, db)
	if err != nil || v != len(schemaMigrations()) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, len(schemaMigrations()))
	}
	n, err := migrate(ctx, db, schemaMigrations(), testLogger(t))
	if err != nil || n != 0 {
		t.Errorf("migrate on up-to-date database applied %d, %v; want 0", n, err)
	}
}

func TestMigrateSteps(t *testing.T) {
	ctx := context.Background()
	db := rawDB(t, filepath.Join(t.TempDir(), "m.db"))
	logger := testLogger(t)
	list := []migration{
		{name: "one", up: execSQL("CREATE TABLE one (x INTEGER)")},
		{name: "two", up: execSQL("CREATE TABLE two (x INTEGER)")},
	}
	if n, err := migrate(ctx, db, list, logger); err != nil || n != 2 {
		t.Fatalf("migrate fresh = %d, %v; want 2", n, err)
	}
	if n, err := migrate(ctx, db, list, logger); err != nil || n != 0 {
		t.Fatalf("migrate again = %d, %v; want 0", n, err)
	}
	// A new step is applied alone; a failing step is rolled back entirely.
	list = append(list,
		migration{name: "three", up: execSQL("CREATE TABLE three (x INTEGER)")},
		migration{name: "broken", up: execSQL("CREATE TABLE four (x INTEGER); SELECT * FROM nonexistent")},
	)
	n, err := migrate(ctx, db, list, logger)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "migration 4 (broken)") {
		t.Fatalf("migrate with broken step = %d, %v; want 1 and an error naming migration 4", n, err)
	}
	if v, _ := schemaVersion(ctx, db); v != 3 {
		t.Errorf("version after failed step = %d, want 3", v)
	}
	var tables int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'four'").Scan(&tables); err != nil || tables != 0 {
		t.Errorf("failed step left table four (%d, %v)", tables, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wren.db")
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	s.Close()

	known := len(schemaMigrations())
	db := rawDB(t, path)
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", known+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = Open(ctx, path, testLogger(t))
	if err == nil {
		s.Close()
		t.Fatal("Open of newer schema succeeded")
	}
	want := fmt.Sprintf("database schema version %d is newer than this wren (%d); upgrade wren", known+1, known)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "wren.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	checks := map[string]error{
		"CreateAccount": s.CreateAccount(ctx, testAccount("bob")),
		"SetVCard":      s.SetVCard(ctx, "alice", []byte("<vCard/>")),
		"DeleteAccount": s.DeleteAccount(ctx, "alice"),
	}
	_, checks["StoreOffline"] = s.StoreOffline(ctx, "alice", []byte("x"), 0)
	_, checks["PutRosterItem"] = s.PutRosterItem(ctx, "alice", storage.RosterItem{Contact: "c@x", Subscription: storage.SubNone})
	_, checks["Account"] = s.Account(ctx, "alice")
	_, _, checks["Roster"] = s.Roster(ctx, "alice")
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

func TestCloseStopsWriter(t *testing.T) {
	baseline := runtime.NumGoroutine()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "wren.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("writer goroutine still running after Close")
	}
	// Nothing else (database/sql openers included) is left behind.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before Open:\n%s",
				runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseWithConcurrentWrites(t *testing.T) {
	// Writes racing with Close either commit or fail with ErrClosed, and
	// every write reported as committed is on disk.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "wren.db")
	s, err := Open(ctx, path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			_, err := s.StoreOffline(ctx, "alice", []byte("x"), 0)
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, ErrClosed):
				t.Errorf("StoreOffline racing Close: %v", err)
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	s = openAt(t, path)
	if n, _ := s.CountOffline(ctx, "alice"); n != int(ok.Load()) {
		t.Errorf("%d messages on disk, %d reported stored", n, ok.Load())
	}
}

func TestFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "data", "wren")
	path := filepath.Join(dir, "wren.db")
	s := openAt(t, path)
	mustCreate(t, s, "alice") // makes sure the WAL exists

	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), perm)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("created directory has mode %v, want 0700", perm)
	}
}

func TestPathNeedingEscape(t *testing.T) {
	// Characters with a meaning in SQLite URIs must not be interpreted.
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	path := filepath.Join(dir, "wren db?.sqlite")
	s := openAt(t, path)
	mustCreate(t, s, "alice")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
	names, err := s.ListAccounts(context.Background())
	if err != nil || len(names) != 1 {
		t.Errorf("ListAccounts = %q, %v", names, err)
	}
}

func BenchmarkStoreOffline(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const users = 64
	for i := range users {
		if err := s.CreateAccount(ctx, storage.Account{Username: fmt.Sprintf("user%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	stanza := []byte(`<message xmlns='jabber:client' from='romeo@example.net/orchard' to='juliet@example.com' type='chat'><body>Art thou not Romeo, and a Montague?</body><delay xmlns='urn:xmpp:delay' stamp='2002-09-10T23:08:25Z'/></message>`)
	var next atomic.Int64
	b.SetParallelism(16) // many concurrent senders, as on a busy server
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		user := fmt.Sprintf("user%d", next.Add(1)%users)
		for pb.Next() {
			if _, err := s.StoreOffline(ctx, user, stanza, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
