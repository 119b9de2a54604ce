package roster

import (
	"testing"

	"wren.im/wren/storage"
)

func item(sub string, ask, pendingIn, approved bool) storage.RosterItem {
	return storage.RosterItem{Contact: "c@example.net", Subscription: sub, AskOut: ask, PendingIn: pendingIn, Approved: approved}
}

// Transitions from RFC 6121 Appendix A.2 (outbound) for stanzas sent by the user.
func TestOutboundTransitions(t *testing.T) {
	cases := []struct {
		name      string
		in        storage.RosterItem
		exists    bool
		pendingIn bool
		typ       string
		wantSub   string
		wantAsk   bool
		route     bool
		changed   bool
		presence  bool
		unavail   bool
	}{
		{"subscribe from none", item("none", false, false, false), true, false, "subscribe", "none", true, true, true, false, false},
		{"subscribe new contact", item("", false, false, false), false, false, "subscribe", "none", true, true, true, false, false},
		{"subscribe already pending", item("none", true, false, false), true, false, "subscribe", "none", true, true, false, false, false},
		{"subscribe from 'from'", item("from", false, false, false), true, false, "subscribe", "from", true, true, true, false, false},
		{"subscribe when 'to' (no change)", item("to", false, false, false), true, false, "subscribe", "to", false, true, false, false, false},
		{"approve pending request", item("none", false, true, false), true, true, "subscribed", "from", false, true, true, true, false},
		{"approve pending when 'to'", item("to", false, true, false), true, true, "subscribed", "both", false, true, true, true, false},
		{"approve request of non-roster contact", item("", false, false, false), false, true, "subscribed", "from", false, true, true, true, false},
		{"approve when already 'from'", item("from", false, false, false), true, false, "subscribed", "from", false, false, false, false, false},
		{"pre-approve", item("none", false, false, false), true, false, "subscribed", "none", false, false, true, false, false},
		{"unsubscribe from 'to'", item("to", false, false, false), true, false, "unsubscribe", "none", false, true, true, false, false},
		{"unsubscribe from 'both'", item("both", false, false, false), true, false, "unsubscribe", "from", false, true, true, false, false},
		{"unsubscribe cancels pending out", item("none", true, false, false), true, false, "unsubscribe", "none", false, true, true, false, false},
		{"cancel 'from'", item("from", false, false, false), true, false, "unsubscribed", "none", false, true, true, false, true},
		{"cancel 'both'", item("both", false, false, false), true, false, "unsubscribed", "to", false, true, true, false, true},
		{"deny pending request", item("none", false, true, false), true, true, "unsubscribed", "none", false, true, true, false, false},
		{"unsubscribed with nothing to cancel", item("to", false, false, false), true, false, "unsubscribed", "to", false, false, false, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := Outbound(c.in, c.exists, c.pendingIn, c.typ)
			if o.Item.Subscription != c.wantSub || o.Item.AskOut != c.wantAsk {
				t.Errorf("state = %s ask=%v, want %s ask=%v", o.Item.Subscription, o.Item.AskOut, c.wantSub, c.wantAsk)
			}
			if o.Route != c.route || o.Changed != c.changed || o.SendPresence != c.presence || o.SendUnavailable != c.unavail {
				t.Errorf("outcome = %+v", o)
			}
		})
	}
}

// Transitions from RFC 6121 Appendix A.3 (inbound) for stanzas the contact sent.
func TestInboundTransitions(t *testing.T) {
	cases := []struct {
		name      string
		in        storage.RosterItem
		exists    bool
		typ       string
		wantSub   string
		wantAsk   bool
		route     bool
		changed   bool
		autoReply string
		keep      bool
	}{
		{"request from stranger", item("", false, false, false), false, "subscribe", "none", false, true, false, "", true},
		{"request from roster contact", item("none", false, false, false), true, "subscribe", "none", false, true, true, "", true},
		{"request from existing subscriber", item("from", false, false, false), true, "subscribe", "from", false, false, false, "subscribed", false},
		{"request pre-approved", item("none", false, false, true), true, "subscribe", "from", false, false, true, "subscribed", false},
		{"pre-approved with 'to'", item("to", false, false, true), true, "subscribe", "both", false, false, true, "subscribed", false},
		{"approval of our request", item("none", true, false, false), true, "subscribed", "to", false, true, true, "", false},
		{"approval with 'from'", item("from", true, false, false), true, "subscribed", "both", false, true, true, "", false},
		{"unsolicited approval ignored", item("none", false, false, false), true, "subscribed", "none", false, false, false, "", false},
		{"contact unsubscribes from us", item("both", false, false, false), true, "unsubscribe", "to", false, true, true, "", false},
		{"unsubscribe without subscription", item("to", false, false, false), true, "unsubscribe", "to", false, false, false, "", false},
		{"contact cancels our 'to'", item("both", false, false, false), true, "unsubscribed", "from", false, true, true, "", false},
		{"contact denies our request", item("none", true, false, false), true, "unsubscribed", "none", false, true, true, "", false},
		{"unsubscribed without anything", item("from", false, false, false), true, "unsubscribed", "from", false, false, false, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := Inbound(c.in, c.exists, c.typ)
			if o.Item.Subscription != c.wantSub || o.Item.AskOut != c.wantAsk {
				t.Errorf("state = %s ask=%v, want %s ask=%v", o.Item.Subscription, o.Item.AskOut, c.wantSub, c.wantAsk)
			}
			if o.Route != c.route || o.Changed != c.changed || o.AutoReply != c.autoReply || o.KeepRequest != c.keep {
				t.Errorf("outcome = %+v", o)
			}
		})
	}
}
