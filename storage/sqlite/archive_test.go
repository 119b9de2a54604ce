package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"wren.im/wren/storage"
)

// archiveFixture appends n messages to alice's archive, alternating
// between bob (even) and carol (odd), one second apart from base, and
// returns their ids in archive order.
func archiveFixture(t *testing.T, s *Store, n int, base time.Time) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range n {
		with := "bob@example.org"
		if i%2 == 1 {
			with = "carol@example.org"
		}
		ids[i] = fmt.Sprintf("id%03d", i)
		_, err := s.AppendArchive(ctx, "alice", storage.ArchivedMessage{
			ID: ids[i], Time: base.Add(time.Duration(i) * time.Second),
			With: with, WithResource: "phone", Outgoing: i%3 == 0,
			Stanza: []byte(fmt.Sprintf("<message><body>%d</body></message>", i)),
		})
		if err != nil {
			t.Fatalf("AppendArchive %d: %v", i, err)
		}
	}
	return ids
}

func pageIDs(p storage.ArchivePage) []string {
	out := make([]string, len(p.Messages))
	for i, m := range p.Messages {
		out[i] = m.ID
	}
	return out
}

func TestArchiveEmpty(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	p, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10})
	if err != nil || len(p.Messages) != 0 || !p.Complete {
		t.Fatalf("QueryArchive on empty archive = %+v, %v; want an empty complete page", p, err)
	}
	p, err = s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10, Last: true})
	if err != nil || len(p.Messages) != 0 || !p.Complete {
		t.Fatalf("last page of empty archive = %+v, %v", p, err)
	}
	if _, _, err := s.ArchiveBounds(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ArchiveBounds on empty archive: %v, want ErrNotFound", err)
	}
	if _, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10, Before: []string{"nope"}}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown before id: %v, want ErrNotFound", err)
	}
	if n, err := s.CountArchive(ctx, "alice", storage.ArchiveQuery{}); err != nil || n != 0 {
		t.Fatalf("CountArchive = %d, %v", n, err)
	}
}

func TestArchivePaging(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice", "bob")
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ids := archiveFixture(t, s, 25, base)
	// Another user's archive never shows up.
	if _, err := s.AppendArchive(ctx, "bob", storage.ArchivedMessage{ID: "id005", With: "alice@example.org"}); err != nil {
		t.Fatal(err)
	}

	// Forward, 10 per page: 10, 10, 5 and complete on the last.
	var got []string
	var after []string
	for i, want := range []int{10, 10, 5} {
		p, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Messages) != want || p.Complete != (i == 2) {
			t.Fatalf("forward page %d: %d messages complete=%v; want %d complete=%v", i, len(p.Messages), p.Complete, want, i == 2)
		}
		got = append(got, pageIDs(p)...)
		after = []string{p.Messages[len(p.Messages)-1].ID}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("forward paging = %v, want %v", got, ids)
	}
	// After the very last one: empty and complete.
	if p, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10, After: []string{ids[24]}}); err != nil || len(p.Messages) != 0 || !p.Complete {
		t.Fatalf("after the last message: %+v, %v", p, err)
	}
	// Exactly one page's worth left: complete without an extra query.
	if p, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 5, After: []string{ids[19]}}); err != nil || len(p.Messages) != 5 || !p.Complete {
		t.Fatalf("last full page: %d messages complete=%v, %v", len(p.Messages), p.Complete, err)
	}

	// Backward from the end: 10, 10, 5, each page in chronological order.
	got = nil
	var before []string
	for i, want := range []int{10, 10, 5} {
		p, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10, Last: true, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Messages) != want || p.Complete != (i == 2) {
			t.Fatalf("backward page %d: %d messages complete=%v", i, len(p.Messages), p.Complete)
		}
		got = append(pageIDs(p), got...)
		before = []string{p.Messages[0].ID}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("backward paging = %v, want %v", got, ids)
	}

	// Contact filter, with and without resource.
	p, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 100, With: "carol@example.org"})
	if err != nil || len(p.Messages) != 12 || !p.Complete {
		t.Fatalf("with carol: %d messages, %v", len(p.Messages), err)
	}
	for _, m := range p.Messages {
		if m.With != "carol@example.org" || m.WithResource != "phone" {
			t.Fatalf("with carol returned %+v", m)
		}
	}
	if p, _ := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 100, With: "carol@example.org", WithResource: "desk"}); len(p.Messages) != 0 {
		t.Fatalf("with carol/desk: %v", pageIDs(p))
	}
	if n, err := s.CountArchive(ctx, "alice", storage.ArchiveQuery{With: "bob@example.org"}); err != nil || n != 13 {
		t.Fatalf("count with bob = %d, %v", n, err)
	}

	// Time range, inclusive at both ends.
	p, err = s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 100, Start: base.Add(3 * time.Second), End: base.Add(6 * time.Second)})
	if err != nil || !slices.Equal(pageIDs(p), ids[3:7]) {
		t.Fatalf("start/end: %v, %v; want %v", pageIDs(p), err, ids[3:7])
	}
	// Between two ids (after-id and before-id), combined with a filter.
	p, err = s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 100, After: []string{ids[4]}, Before: []string{ids[10]}, With: "bob@example.org"})
	if err != nil || !slices.Equal(pageIDs(p), []string{ids[6], ids[8]}) {
		t.Fatalf("between ids: %v, %v", pageIDs(p), err)
	}
	// The stricter of two lower bounds wins.
	p, _ = s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 3, After: []string{ids[2], ids[20]}})
	if !slices.Equal(pageIDs(p), ids[21:24]) {
		t.Fatalf("two after ids: %v", pageIDs(p))
	}
	// ids filter, returned in archive order whatever the request order.
	p, err = s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 100, IDs: []string{ids[7], ids[2], ids[7]}})
	if err != nil || !slices.Equal(pageIDs(p), []string{ids[2], ids[7]}) || !p.Complete {
		t.Fatalf("ids: %v, %v", pageIDs(p), err)
	}
	if _, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 100, IDs: []string{ids[7], "nope"}}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown id in ids: %v", err)
	}
	// bob's id005 does not exist in alice's view of... well it does: the
	// same id may exist in two archives; an id of bob's alone is unknown.
	if _, err := s.QueryArchive(ctx, "bob", storage.ArchiveQuery{Max: 1, After: []string{ids[6]}}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another archive's id as cursor: %v", err)
	}

	// Bounds and single lookup.
	first, last, err := s.ArchiveBounds(ctx, "alice")
	if err != nil || first.ID != ids[0] || last.ID != ids[24] || !first.Time.Equal(base) {
		t.Fatalf("bounds = %+v %+v, %v", first, last, err)
	}
	m, err := s.ArchivedMessage(ctx, "alice", ids[3])
	if err != nil || m.With != "carol@example.org" || !m.Outgoing || string(m.Stanza) != "<message><body>3</body></message>" {
		t.Fatalf("ArchivedMessage = %+v, %v", m, err)
	}
	if _, err := s.ArchivedMessage(ctx, "alice", "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestArchiveAppendRules(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	got, err := s.AppendArchive(ctx, "alice", storage.ArchivedMessage{ID: "a", Time: t0, With: "bob@example.org"})
	if err != nil || !got.Equal(t0) {
		t.Fatalf("append = %v, %v", got, err)
	}
	// A clock step backwards does not reorder the archive.
	got, err = s.AppendArchive(ctx, "alice", storage.ArchivedMessage{ID: "b", Time: t0.Add(-time.Hour), With: "bob@example.org"})
	if err != nil || !got.Equal(t0.Add(time.Microsecond)) {
		t.Fatalf("append with an earlier time = %v, %v; want one microsecond after the latest", got, err)
	}
	if _, err := s.AppendArchive(ctx, "alice", storage.ArchivedMessage{ID: "a", With: "bob@example.org"}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate id: %v, want ErrExists", err)
	}
	if _, err := s.AppendArchive(ctx, "nobody", storage.ArchivedMessage{ID: "a", With: "bob@example.org"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no account: %v, want ErrNotFound", err)
	}
	// A zero time means now.
	got, err = s.AppendArchive(ctx, "alice", storage.ArchivedMessage{ID: "c", With: "bob@example.org"})
	if err != nil || time.Since(got) > time.Minute {
		t.Fatalf("append without time = %v, %v", got, err)
	}
}

func TestArchiveTrim(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := archiveFixture(t, s, 20, base)
	// Older than base+5s, at most 3 per call.
	if n, err := s.TrimArchive(ctx, "alice", base.Add(5*time.Second), 0, 3); err != nil || n != 3 {
		t.Fatalf("trim = %d, %v; want 3", n, err)
	}
	if n, err := s.TrimArchive(ctx, "alice", base.Add(5*time.Second), 0, 3); err != nil || n != 2 {
		t.Fatalf("trim again = %d, %v; want 2", n, err)
	}
	first, _, _ := s.ArchiveBounds(ctx, "alice")
	if first.ID != ids[5] {
		t.Fatalf("oldest after age trim = %s, want %s", first.ID, ids[5])
	}
	// Keep the newest 4.
	if n, err := s.TrimArchive(ctx, "alice", time.Time{}, 4, 1000); err != nil || n != 11 {
		t.Fatalf("trim to 4 = %d, %v; want 11", n, err)
	}
	p, _ := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 100})
	if !slices.Equal(pageIDs(p), ids[16:]) {
		t.Fatalf("after trim to 4: %v", pageIDs(p))
	}
	if n, err := s.TrimArchive(ctx, "alice", time.Time{}, 4, 1000); err != nil || n != 0 {
		t.Fatalf("trim at the cap = %d, %v", n, err)
	}
	// A removed id is unknown: paging from it is an error, not a silent restart.
	if _, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 1, After: []string{ids[0]}}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after a trimmed id: %v", err)
	}
}

func TestArchivePrefs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	if _, err := s.ArchivePrefs(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("prefs before any set: %v", err)
	}
	want := storage.ArchivePrefs{Default: storage.ArchiveRoster, Always: []string{"bob@example.org"}, Never: []string{"carol@example.org/desk"}}
	if err := s.SetArchivePrefs(ctx, "alice", want); err != nil {
		t.Fatal(err)
	}
	got, err := s.ArchivePrefs(ctx, "alice")
	if err != nil || got.Default != want.Default || !slices.Equal(got.Always, want.Always) || !slices.Equal(got.Never, want.Never) {
		t.Fatalf("prefs = %+v, %v", got, err)
	}
	if err := s.SetArchivePrefs(ctx, "alice", storage.ArchivePrefs{Default: storage.ArchiveNever}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.ArchivePrefs(ctx, "alice")
	if got.Default != storage.ArchiveNever || len(got.Always) != 0 || len(got.Never) != 0 {
		t.Fatalf("replaced prefs = %+v", got)
	}
	if err := s.SetArchivePrefs(ctx, "nobody", want); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("prefs of a missing account: %v", err)
	}
	if err := s.SetArchivePrefs(ctx, "alice", storage.ArchivePrefs{Default: "sometimes"}); err == nil {
		t.Fatal("an unknown default mode was stored")
	}
}

func TestArchiveDeletedWithAccount(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	archiveFixture(t, s, 5, time.Now())
	if err := s.SetArchivePrefs(ctx, "alice", storage.ArchivePrefs{Default: storage.ArchiveNever}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "alice")
	if p, err := s.QueryArchive(ctx, "alice", storage.ArchiveQuery{Max: 10}); err != nil || len(p.Messages) != 0 {
		t.Fatalf("archive of a re-created account: %d messages, %v", len(p.Messages), err)
	}
	if _, err := s.ArchivePrefs(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("prefs of a re-created account: %v", err)
	}
}

// TestArchiveQueryPlans checks that page queries are index range scans in
// archive order: no full scan and no sort, whatever the archive size.
func TestArchiveQueryPlans(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, "alice")
	archiveFixture(t, s, 3, time.Now())
	for _, q := range []storage.ArchiveQuery{
		{Max: 10},
		{Max: 10, Last: true},
		{Max: 10, With: "bob@example.org"},
		{Max: 10, With: "bob@example.org", WithResource: "phone", Last: true},
		{Max: 10, Start: time.Now().Add(-time.Hour), End: time.Now()},
	} {
		tx, err := s.r.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.filter(ctx, tx, "alice", q)
		if err != nil {
			t.Fatal(err)
		}
		order := "ts, id"
		if q.Last {
			order = "ts DESC, id DESC"
		}
		rows, err := tx.Query("EXPLAIN QUERY PLAN SELECT "+archiveColumns+" FROM "+f.from+" WHERE "+f.where+" ORDER BY "+order+" LIMIT 11", f.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		tx.Rollback()
		p := strings.Join(plan, "; ")
		wantIndex := "archive_user_ts"
		if q.With != "" {
			wantIndex = "archive_user_with_ts"
		}
		if !strings.Contains(p, "USING INDEX "+wantIndex) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("query %+v: plan %q; want a range scan of %s without a sort", q, p, wantIndex)
		}
	}
}
