package blocking

import (
	"slices"
	"testing"

	"mellium.im/xmpp/jid"
)

func TestListMatches(t *testing.T) {
	for _, tc := range []struct {
		item    string
		match   []string
		nomatch []string
	}{
		{
			item:    "romeo@montague.lit/orchard",
			match:   []string{"romeo@montague.lit/orchard"},
			nomatch: []string{"romeo@montague.lit", "romeo@montague.lit/garden", "montague.lit", "montague.lit/orchard", "juliet@montague.lit/orchard"},
		},
		{
			item:    "romeo@montague.lit",
			match:   []string{"romeo@montague.lit", "romeo@montague.lit/orchard", "romeo@montague.lit/garden"},
			nomatch: []string{"montague.lit", "juliet@montague.lit", "romeo@capulet.lit", "montague.lit/romeo"},
		},
		{
			item:    "montague.lit/orchard",
			match:   []string{"montague.lit/orchard", "romeo@montague.lit/orchard", "benvolio@montague.lit/orchard"},
			nomatch: []string{"montague.lit", "romeo@montague.lit", "romeo@montague.lit/garden", "capulet.lit/orchard"},
		},
		{
			item:    "montague.lit",
			match:   []string{"montague.lit", "montague.lit/x", "romeo@montague.lit", "romeo@montague.lit/orchard"},
			nomatch: []string{"chat.montague.lit", "romeo@chat.montague.lit", "capulet.lit", "montague.lit@capulet.lit"},
		},
	} {
		l := newList([]string{tc.item})
		for _, e := range tc.match {
			if !l.matches(jid.MustParse(e)) {
				t.Errorf("%s does not match %s", tc.item, e)
			}
		}
		for _, e := range tc.nomatch {
			if l.matches(jid.MustParse(e)) {
				t.Errorf("%s matches %s", tc.item, e)
			}
		}
	}
}

func TestEmptyListMatchesNothing(t *testing.T) {
	var l *list
	if l.matches(jid.MustParse("romeo@montague.lit")) || l.len() != 0 || l.has("romeo@montague.lit") {
		t.Fatal("the nil list blocks something")
	}
	if newList(nil) != nil {
		t.Fatal("newList(nil) is not the nil list")
	}
	if newList([]string{"x"}).matches(jid.JID{}) {
		t.Fatal("the zero JID matches")
	}
}

func TestListWithWithout(t *testing.T) {
	l, added := (*list)(nil).with([]string{"a@x", "b@x", "a@x"})
	if !slices.Equal(l.items, []string{"a@x", "b@x"}) || !slices.Equal(added, []string{"a@x", "b@x"}) {
		t.Fatalf("with on empty: %v, added %v", l.items, added)
	}
	l, added = l.with([]string{"b@x", "c@x"})
	if !slices.Equal(l.items, []string{"a@x", "b@x", "c@x"}) || !slices.Equal(added, []string{"c@x"}) {
		t.Fatalf("with: %v, added %v", l.items, added)
	}
	l2, removed := l.without([]string{"b@x", "z@x"})
	if !slices.Equal(l2.items, []string{"a@x", "c@x"}) || !slices.Equal(removed, []string{"b@x"}) {
		t.Fatalf("without: %v, removed %v", l2.items, removed)
	}
	if !l.has("b@x") {
		t.Fatal("without changed the original list")
	}
	l3, removed := l2.without([]string{"a@x", "c@x"})
	if l3 != nil || len(removed) != 2 {
		t.Fatalf("removing everything: %v, removed %v", l3, removed)
	}
}
