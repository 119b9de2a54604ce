package c2s

import (
	"math"
	"strconv"
	"testing"
	"time"

	"wren.im/wren/xmpp"
)

func msgEl(n int) *xmpp.Element {
	m := xmpp.NewElement(xmpp.NSClient, "message", "from", "a@b/c", "id", strconv.Itoa(n))
	m.AddChild(xmpp.NSClient, "body").AppendText(strconv.Itoa(n))
	return m
}

func TestAckCounterWrapsAt32Bits(t *testing.T) {
	q := newOutQueue(100)
	q.sm = true
	q.acked = math.MaxUint32 - 1 // two below the wrap
	for i := 0; i < 4; i++ {
		q.push(msgEl(i), time.Now())
	}
	q.take(time.Now(), nil)
	if len(q.unacked) != 4 {
		t.Fatalf("unacked = %d", len(q.unacked))
	}
	// h counts MaxUint32-1, MaxUint32, 0, 1: acking h=0 acks two stanzas.
	if err := q.ack(0); err != nil {
		t.Fatalf("ack across the wrap: %v", err)
	}
	if len(q.unacked) != 2 || q.unacked[0].el.Attr("id") != "2" {
		t.Fatalf("after ack 0: %d unacked, first %v", len(q.unacked), q.unacked[0].el)
	}
	if err := q.ack(2); err != nil || len(q.unacked) != 0 {
		t.Fatalf("ack 2: %v, %d left", err, len(q.unacked))
	}
}

func TestAckTooHigh(t *testing.T) {
	q := newOutQueue(100)
	q.sm = true
	q.push(msgEl(1), time.Now())
	q.take(time.Now(), nil)
	serr := q.ack(2)
	if serr == nil || serr.Condition != xmpp.StreamUndefinedCondition || serr.Extra == nil ||
		!serr.Extra.Is(xmpp.NSSM, "handled-count-too-high") || serr.Extra.Attr("h") != "2" || serr.Extra.Attr("send-count") != "1" {
		t.Fatalf("ack too high = %+v", serr)
	}
	// Too high across the wrap as well.
	q2 := newOutQueue(100)
	q2.sm = true
	q2.acked = math.MaxUint32
	if serr := q2.ack(0); serr == nil {
		t.Fatal("ack of one stanza with none sent was accepted")
	}
	// A lower h than already acknowledged is also rejected.
	if serr := q.ack(0); serr != nil {
		t.Fatalf("repeating the same h: %v", serr)
	}
}

func TestResumeResendsOnlyUnacked(t *testing.T) {
	q := newOutQueue(100)
	q.sm = true
	for i := 1; i <= 5; i++ {
		q.push(msgEl(i), time.Now())
	}
	q.take(time.Now(), nil) // 5 written, none acked
	q.push(msgEl(6), time.Now())
	if err := q.prepareResume(3); err != nil {
		t.Fatal(err)
	}
	got := q.take(time.Now(), nil)
	var ids []string
	for _, el := range got {
		if el.Local == "message" {
			ids = append(ids, el.Attr("id"))
		}
	}
	if want := "4 5 6"; joinIDs(ids) != want {
		t.Fatalf("resent %q, want %q", joinIDs(ids), want)
	}
}

func joinIDs(ids []string) string {
	out := ""
	for i, s := range ids {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out
}

func TestOverflowReported(t *testing.T) {
	q := newOutQueue(3)
	for i := 0; i < 3; i++ {
		if ok, over := q.push(msgEl(i), time.Now()); !ok || over {
			t.Fatalf("push %d: ok=%v overflow=%v", i, ok, over)
		}
	}
	if ok, over := q.push(msgEl(4), time.Now()); !ok || !over {
		t.Fatalf("4th push: ok=%v overflow=%v", ok, over)
	}
	left := q.close()
	if len(left) != 4 {
		t.Fatalf("close returned %d stanzas, want all 4", len(left))
	}
	if ok, _ := q.push(msgEl(5), time.Now()); ok {
		t.Fatal("push after close accepted")
	}
}

func TestCSIHoldsPresenceLatestWinsAndFlushesOnMessage(t *testing.T) {
	q := newOutQueue(100)
	q.setInactive(true)
	p := func(from, show string) *xmpp.Element {
		el := xmpp.NewElement(xmpp.NSClient, "presence", "from", from)
		el.AddChild(xmpp.NSClient, "show").AppendText(show)
		return el
	}
	q.push(p("x@y/1", "away"), time.Now())
	q.push(p("z@y/1", "dnd"), time.Now())
	q.push(p("x@y/1", "xa"), time.Now())
	chat := xmpp.NewElement(xmpp.NSClient, "message", "from", "x@y/1")
	chat.AddChild("http://jabber.org/protocol/chatstates", "composing")
	q.push(chat, time.Now())
	if got := q.take(time.Now(), nil); len(got) != 0 {
		t.Fatalf("inactive client was sent %d stanzas", len(got))
	}
	q.push(msgEl(1), time.Now())
	got := q.take(time.Now(), nil)
	if len(got) != 4 {
		t.Fatalf("flush sent %d stanzas, want 4 (z dnd, x xa, chat state, message)", len(got))
	}
	if got[0].Attr("from") != "z@y/1" || got[1].ChildText(xmpp.NSClient, "show") != "xa" || got[2].Local != "message" || got[3].Attr("id") != "1" {
		t.Fatalf("flush order: %v", got)
	}
	// <active/> flushes too.
	q.push(p("x@y/1", "chat"), time.Now())
	q.setInactive(false)
	if got := q.take(time.Now(), nil); len(got) != 1 {
		t.Fatalf("active flushed %d", len(got))
	}
}
