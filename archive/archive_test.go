package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

func parse(t *testing.T, s string) *xmpp.Element {
	t.Helper()
	el, err := xmpp.ParseElement([]byte(s))
	if err != nil {
		t.Fatalf("ParseElement(%s): %v", s, err)
	}
	return el
}

func stanzaErrorCondition(err error) string {
	var se *xmpp.StanzaError
	if errors.As(err, &se) {
		return se.Condition
	}
	return ""
}

func TestParseQuery(t *testing.T) {
	const form = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>`
	tests := []struct {
		name  string
		query string
		check func(t *testing.T, r request)
		cond  string
	}{
		{"empty", ``, func(t *testing.T, r request) {
			if r.q.Max != DefaultPage || r.q.Last || r.flip || r.countOnly {
				t.Errorf("%+v", r)
			}
		}, ""},
		{"queryid and flip", `<flip-page/>`, func(t *testing.T, r request) {
			if r.queryID != "q1" || !r.flip {
				t.Errorf("%+v", r)
			}
		}, ""},
		{"with full JID", form + `<field var='with'><value>Bob@Example.org/Phone</value></field></x>`, func(t *testing.T, r request) {
			if r.q.With != "bob@example.org" || r.q.WithResource != "Phone" {
				t.Errorf("with = %q / %q", r.q.With, r.q.WithResource)
			}
		}, ""},
		{"times", form + `<field var='start'><value>2025-01-02T03:04:05Z</value></field><field var='end'><value>2025-01-02T05:04:05.123456+02:00</value></field></x>`, func(t *testing.T, r request) {
			if !r.q.Start.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) || !r.q.End.Equal(time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)) {
				t.Errorf("start %v end %v", r.q.Start, r.q.End)
			}
		}, ""},
		{"empty values ignored", form + `<field var='start'/><field var='with'><value></value></field></x>`, func(t *testing.T, r request) {
			if !r.q.Start.IsZero() || r.q.With != "" {
				t.Errorf("%+v", r.q)
			}
		}, ""},
		{"ids and bounds with RSM", form + `<field var='ids'><value>a</value><value>b</value></field><field var='after-id'><value>x</value></field><field var='before-id'><value>y</value></field></x>` +
			`<set xmlns='http://jabber.org/protocol/rsm'><max>7</max><after>z</after><before>w</before></set>`, func(t *testing.T, r request) {
			if !slices.Equal(r.q.IDs, []string{"a", "b"}) || !slices.Equal(r.q.After, []string{"x", "z"}) ||
				!slices.Equal(r.q.Before, []string{"y", "w"}) || !r.q.Last || r.q.Max != 7 {
				t.Errorf("%+v", r.q)
			}
		}, ""},
		{"empty before is the last page", `<set xmlns='http://jabber.org/protocol/rsm'><before/></set>`, func(t *testing.T, r request) {
			if !r.q.Last || len(r.q.Before) != 0 {
				t.Errorf("%+v", r.q)
			}
		}, ""},
		{"max capped", `<set xmlns='http://jabber.org/protocol/rsm'><max>100000</max></set>`, func(t *testing.T, r request) {
			if r.q.Max != MaxPage {
				t.Errorf("max = %d", r.q.Max)
			}
		}, ""},
		{"max zero counts", `<set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set>`, func(t *testing.T, r request) {
			if !r.countOnly {
				t.Errorf("%+v", r)
			}
		}, ""},
		{"negative max", `<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>`, nil, xmpp.CondBadRequest},
		{"empty after", `<set xmlns='http://jabber.org/protocol/rsm'><after/></set>`, nil, xmpp.CondBadRequest},
		{"index", `<set xmlns='http://jabber.org/protocol/rsm'><index>2</index></set>`, nil, xmpp.CondFeatureNotImplemented},
		{"bad date", form + `<field var='end'><value>2025-13-01</value></field></x>`, nil, xmpp.CondBadRequest},
		{"bad JID", form + `<field var='with'><value>a@b@c</value></field></x>`, nil, xmpp.CondBadRequest},
		{"wrong form type", `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x>`, nil, xmpp.CondBadRequest},
		{"form not submitted", `<x xmlns='jabber:x:data' type='form'/>`, nil, xmpp.CondBadRequest},
		{"unknown field", form + `<field var='include-groupchat'><value>true</value></field></x>`, nil, xmpp.CondFeatureNotImplemented},
		{"pubsub node", ``, nil, xmpp.CondItemNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := "queryid='q1'"
			if tt.name == "pubsub node" {
				attrs += " node='urn:xmpp:microblog:0'"
			}
			r, err := parseQuery(parse(t, "<query xmlns='urn:xmpp:mam:2' "+attrs+">"+tt.query+"</query>"))
			if tt.cond != "" {
				if got := stanzaErrorCondition(err); got != tt.cond {
					t.Fatalf("error %v (%q), want %s", err, got, tt.cond)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestWorth(t *testing.T) {
	tests := []struct {
		msg  string
		want bool
	}{
		{`<message type='chat'><body>hi</body></message>`, true},
		{`<message><body>hi</body></message>`, true},
		{`<message type='normal'><body>hi</body></message>`, true},
		{`<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>`, true},
		{`<message type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>`, true},
		{`<message type='chat'><x xmlns='urn:xmpp:hints'/><store xmlns='urn:xmpp:hints'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>`, true},
		{`<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`, false},
		{`<message type='chat'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><body>hi</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='headline'><body>hi</body></message>`, false},
		{`<message type='groupchat'><body>hi</body></message>`, false},
		{`<message type='error'><body>hi</body></message>`, false},
		{`<message type='chat'><received xmlns='urn:xmpp:carbons:2'/><body>x</body></message>`, false},
		{`<message><result xmlns='urn:xmpp:mam:2'/><body>x</body></message>`, false},
	}
	for _, tt := range tests {
		el := parse(t, "<message xmlns='jabber:client'"+tt.msg[len("<message"):])
		if got := Worth(el); got != tt.want {
			t.Errorf("Worth(%s) = %v, want %v", tt.msg, got, tt.want)
		}
	}
}

func TestListed(t *testing.T) {
	list := []string{"bob@example.org", "carol@example.org/desk", "not a jid@@"}
	for _, tt := range []struct {
		jid  string
		want bool
	}{
		{"bob@example.org", true},
		{"bob@example.org/phone", true},
		{"carol@example.org/desk", true},
		{"carol@example.org/phone", false},
		{"carol@example.org", false},
		{"dave@example.org", false},
	} {
		if got := listed(list, jid.MustParse(tt.jid)); got != tt.want {
			t.Errorf("listed(%s) = %v, want %v", tt.jid, got, tt.want)
		}
	}
}

// fakeStore is an in-memory Store for the tests of this package.
type fakeStore struct {
	storage.Archive // nil: methods not overridden panic
	prefs           map[string]storage.ArchivePrefs
	roster          map[string]bool // "user contact"
	appended        []storage.ArchivedMessage
	appendErr       error
	commitErr       error // reported by the done callback of QueueArchive
}

func (f *fakeStore) ArchivePrefs(_ context.Context, user string) (storage.ArchivePrefs, error) {
	p, ok := f.prefs[user]
	if !ok {
		return p, storage.ErrNotFound
	}
	return p, nil
}

func (f *fakeStore) RosterItem(_ context.Context, user, contact string) (storage.RosterItem, error) {
	if f.roster[user+" "+contact] {
		return storage.RosterItem{Contact: contact}, nil
	}
	return storage.RosterItem{}, storage.ErrNotFound
}

func (f *fakeStore) ArchivedMessage(_ context.Context, _, id string) (storage.ArchivedMessage, error) {
	for _, m := range f.appended {
		if m.ID == id {
			return m, nil
		}
	}
	return storage.ArchivedMessage{}, storage.ErrNotFound
}

func (f *fakeStore) SetArchivePrefs(_ context.Context, user string, p storage.ArchivePrefs) error {
	f.prefs[user] = p
	return nil
}

func (f *fakeStore) ListAccounts(context.Context) ([]string, error) { return nil, nil }

func (f *fakeStore) AppendArchive(_ context.Context, _ string, m storage.ArchivedMessage) (time.Time, error) {
	if f.appendErr != nil {
		return time.Time{}, f.appendErr
	}
	f.appended = append(f.appended, m)
	return m.Time, nil
}

// QueueArchive fails at once with appendErr (a store that cannot take the
// write), else stores the message and reports commitErr, if any, as the
// result of the write.
func (f *fakeStore) QueueArchive(ctx context.Context, user string, m storage.ArchivedMessage, done func(time.Time, error)) error {
	if f.appendErr != nil {
		return f.appendErr
	}
	if f.commitErr != nil {
		done(time.Time{}, f.commitErr)
		return nil
	}
	t, err := f.AppendArchive(ctx, user, m)
	if done != nil {
		done(t, err)
	}
	return nil
}

func (f *fakeStore) AfterWrites(fn func()) error {
	fn()
	return nil
}

func newTestService(t *testing.T, store Store, mode string) *Service {
	t.Helper()
	r, err := router.New("example.org", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{DefaultMode: mode}, store, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestWants(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{
		prefs: map[string]storage.ArchivePrefs{
			"never":  {Default: storage.ArchiveNever, Always: []string{"bob@example.org"}},
			"roster": {Default: storage.ArchiveRoster, Never: []string{"bob@example.org/phone"}},
		},
		roster: map[string]bool{"roster bob@example.org": true},
	}
	s := newTestService(t, f, storage.ArchiveAlways)
	for _, tt := range []struct {
		user, contact string
		want          bool
	}{
		{"nobody-set", "eve@evil.example", true}, // the configured default
		{"never", "carol@example.org", false},
		{"never", "bob@example.org/desk", true},
		{"roster", "bob@example.org/desk", true},
		{"roster", "bob@example.org/phone", false}, // never wins
		{"roster", "carol@example.org", false},
		{"roster", "roster@example.org/other", true}, // oneself
	} {
		if got := s.wants(ctx, tt.user, jid.MustParse(tt.contact)); got != tt.want {
			t.Errorf("wants(%s, %s) = %v, want %v", tt.user, tt.contact, got, tt.want)
		}
	}
}

// An archive that cannot take the message must not lose it: it is
// delivered without a stanza-id (and a claimed one is still removed).
func TestMessageInStorageFailure(t *testing.T) {
	f := &fakeStore{appendErr: errors.New("disk full")}
	s := newTestService(t, f, storage.ArchiveAlways)
	el := parse(t, `<message xmlns='jabber:client' type='chat' from='bob@example.org/x' to='alice@example.org'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.org' id='fake'/></message>`)
	st := &router.Stanza{El: el, From: jid.MustParse("bob@example.org/x"), To: jid.MustParse("alice@example.org")}
	if s.MessageIn(context.Background(), st) {
		t.Fatal("MessageIn consumed the message")
	}
	if st.El.Child(NSSID, "stanza-id") != nil || st.El.ChildText(xmpp.NSClient, "body") != "hi" {
		t.Fatalf("delivered %s", st.El)
	}
	if el.Child(NSSID, "stanza-id") == nil {
		t.Fatal("the shared original element was modified")
	}
}

func TestMessageInArchives(t *testing.T) {
	f := &fakeStore{}
	s := newTestService(t, f, storage.ArchiveAlways)
	el := parse(t, `<message xmlns='jabber:client' type='chat' from='bob@example.org/x' to='alice@example.org/y'><body>hi</body></message>`)
	st := &router.Stanza{El: el, From: jid.MustParse("bob@example.org/x"), To: jid.MustParse("alice@example.org/y")}
	s.MessageIn(context.Background(), st)
	if len(f.appended) != 1 {
		t.Fatalf("archived %d messages", len(f.appended))
	}
	m := f.appended[0]
	sid := st.El.Child(NSSID, "stanza-id")
	if sid == nil || sid.Attr("by") != "alice@example.org" || sid.Attr("id") != m.ID || len(m.ID) != 23 {
		t.Fatalf("delivered %s, archived id %q", st.El, m.ID)
	}
	if m.With != "bob@example.org" || m.WithResource != "x" || m.Outgoing || m.Time.Nanosecond()%1000 != 0 {
		t.Fatalf("archived %+v", m)
	}
	if el.Child(NSSID, "stanza-id") != nil {
		t.Fatal("the shared original element was modified")
	}
	// Sent messages: archived as sent, in the sender's archive.
	out := &router.Stanza{El: parse(t, `<message xmlns='jabber:client' type='chat' from='alice@example.org/y' to='bob@example.org'><body>yo</body></message>`),
		From: jid.MustParse("alice@example.org/y"), To: jid.MustParse("bob@example.org")}
	id := s.ArchiveSent(context.Background(), out)
	if id == "" || len(f.appended) != 2 || !f.appended[1].Outgoing || f.appended[1].With != "bob@example.org" || out.El.Child(NSSID, "stanza-id") != nil {
		t.Fatalf("sent: id %q, archived %+v, routed %s", id, f.appended, out.El)
	}
	// To oneself: archived when received only.
	self := &router.Stanza{El: out.El, From: jid.MustParse("alice@example.org/y"), To: jid.MustParse("alice@example.org/z")}
	if id := s.ArchiveSent(context.Background(), self); id != "" || len(f.appended) != 2 {
		t.Fatalf("a message to oneself archived as sent (%q)", id)
	}
}

// A write that fails after it was queued (the disk filled up meanwhile)
// does not hold the message back: it was delivered with its stanza-id, and
// the failure is logged for the operator with the user and the id.
func TestMessageInCommitFailureLogged(t *testing.T) {
	f := &fakeStore{commitErr: errors.New("database or disk is full")}
	var logs bytes.Buffer
	r, err := router.New("example.org", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{DefaultMode: storage.ArchiveAlways}, f, r, slog.New(slog.NewTextHandler(&logs, nil)))
	el := parse(t, `<message xmlns='jabber:client' type='chat' from='bob@example.org/x' to='alice@example.org'><body>hi</body></message>`)
	st := &router.Stanza{El: el, From: jid.MustParse("bob@example.org/x"), To: jid.MustParse("alice@example.org")}
	if s.MessageIn(context.Background(), st) {
		t.Fatal("MessageIn consumed the message")
	}
	sid := st.El.Child(NSSID, "stanza-id")
	if sid == nil || st.El.ChildText(xmpp.NSClient, "body") != "hi" {
		t.Fatalf("delivered %s", st.El)
	}
	for _, want := range []string{"level=ERROR", "user=alice", "id=" + sid.Attr("id"), "disk is full"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// Preferences are read from the store once and then served from memory;
// a change through the protocol and a deleted account are seen at once.
func TestPrefsCached(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{prefs: map[string]storage.ArchivePrefs{"alice": {Default: storage.ArchiveNever}}}
	s := newTestService(t, f, storage.ArchiveAlways)
	bob := jid.MustParse("bob@example.org")
	if s.wants(ctx, "alice", bob) {
		t.Fatal("alice's never preference ignored")
	}
	// Changed behind the archive's back: the cache answers.
	f.prefs["alice"] = storage.ArchivePrefs{Default: storage.ArchiveAlways}
	if s.wants(ctx, "alice", bob) {
		t.Fatal("preferences read from the store again: not cached")
	}
	s.Forget("alice")
	if !s.wants(ctx, "alice", bob) {
		t.Fatal("preferences of a forgotten account still cached")
	}
	// A change through the protocol replaces the cached value.
	iq := &router.Stanza{El: parse(t, `<iq xmlns='jabber:client' type='set' id='p1'><prefs xmlns='urn:xmpp:mam:2' default='never'/></iq>`),
		From: jid.MustParse("alice@example.org/a"), To: jid.MustParse("alice@example.org")}
	if err := s.handlePrefs(ctx, iq, iq.El.FirstElement()); err != nil {
		t.Fatal(err)
	}
	if s.wants(ctx, "alice", bob) {
		t.Fatal("preferences set through the protocol not seen")
	}
}

// Archive ids sort by time (so that index writes stay local) and still
// differ within one millisecond.
func TestNewIDOrdered(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	a, b := newID(t0), newID(t0)
	later := newID(t0.Add(time.Millisecond))
	if a == b {
		t.Fatalf("two ids of the same millisecond are equal: %s", a)
	}
	if !(a < later && b < later) {
		t.Fatalf("ids do not sort by time: %s, %s before %s", a, b, later)
	}
	if len(a) != 23 || strings.Trim(a, "0123456789ABCDEFGHIJKLMNOPQRSTUV") != "" {
		t.Fatalf("id %q: want 23 characters of base32hex", a)
	}
}
