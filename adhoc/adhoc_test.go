package adhoc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

var (
	alice      = jid.MustParse("alice@example.org/phone")
	aliceOther = jid.MustParse("alice@example.org/desktop")
)

// echoServer has one command, "echo", whose form has one field "text" and
// whose result repeats it; "fail" fails with a note; "now" takes no form.
func echoServer(t *testing.T) (*Server, *time.Time) {
	t.Helper()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Server{SessionTimeout: time.Minute, MaxSessions: 2, Now: func() time.Time { return now }}
	s.Add(Command{
		Node: "echo", Name: "Echo",
		Form: func(ctx context.Context, from jid.JID) *Form {
			return &Form{Type: FormTypeForm, Title: "Echo", Fields: []Field{{Var: "text", Type: FieldTextSingle, Label: "Text", Required: true}}}
		},
		Execute: func(ctx context.Context, from jid.JID, f *Form) (Result, error) {
			if f.Value("text") == "" {
				return Result{}, xmpp.NewStanzaError(xmpp.CondBadRequest, "text is empty")
			}
			return Result{Form: (&Form{Type: FormTypeResult}).Set("text", "", f.Value("text")+" from "+from.Bare().String())}, nil
		},
	})
	s.Add(Command{
		Node: "fail", Name: "Fail", Hidden: true,
		Execute: func(ctx context.Context, from jid.JID, f *Form) (Result, error) {
			return Result{Notes: []Note{{Type: NoteError, Text: "not configured"}}},
				fmt.Errorf("wrapped: %w", xmpp.NewStanzaError(xmpp.CondFeatureNotImplemented, "not configured"))
		},
	})
	s.Add(Command{
		Node: "now", Name: "Now",
		Execute: func(ctx context.Context, from jid.JID, f *Form) (Result, error) {
			if f != nil {
				t.Errorf("now got a form")
			}
			return Result{Notes: []Note{{Type: NoteInfo, Text: "done"}}}, nil
		},
	})
	return s, &now
}

func command(node, action, sid string, form *Form) *xmpp.Element {
	c := xmpp.NewElement(NS, "command", "node", node, "action", action, "sessionid", sid)
	if form != nil {
		c.Append(form.Element())
	}
	return c
}

func submit(text string) *Form {
	return (&Form{Type: FormTypeSubmit}).Set("text", "", text)
}

func wantError(t *testing.T, err *xmpp.StanzaError, cond, specific string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", cond)
	}
	if err.Condition != cond {
		t.Fatalf("error %s, want %s", err.Condition, cond)
	}
	if specific != "" && (err.Extra == nil || err.Extra.Local != specific || err.Extra.Space != NS) {
		t.Fatalf("error %s without <%s/>", err.Condition, specific)
	}
}

func TestSingleStage(t *testing.T) {
	s, _ := echoServer(t)
	resp, err := s.Execute(context.Background(), alice, command("echo", "execute", "", submit("hi")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attr("status") != StatusCompleted || resp.Attr("node") != "echo" || resp.Attr("sessionid") == "" {
		t.Fatalf("response %s", resp)
	}
	if got := FindForm(resp).Value("text"); got != "hi from alice@example.org" {
		t.Fatalf("result %q", got)
	}
	if f := FindForm(resp); f.Type != FormTypeResult {
		t.Fatalf("result form type %q", f.Type)
	}
	// No action attribute means execute.
	if _, err := s.Execute(context.Background(), alice, command("echo", "", "", submit("x"))); err != nil {
		t.Fatal(err)
	}
	// A command without form runs at once.
	resp, err = s.Execute(context.Background(), alice, command("now", "", "", nil))
	if err != nil || resp.Attr("status") != StatusCompleted || resp.ChildText(NS, "note") != "done" {
		t.Fatalf("now: %v %v", resp, err)
	}
}

func TestMultiStage(t *testing.T) {
	s, _ := echoServer(t)
	ctx := context.Background()
	resp, err := s.Execute(ctx, alice, command("echo", "execute", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	sid := resp.Attr("sessionid")
	if resp.Attr("status") != StatusExecuting || sid == "" {
		t.Fatalf("first stage %s", resp)
	}
	actions := resp.Child(NS, "actions")
	if actions == nil || actions.Attr("execute") != ActionComplete || actions.Child(NS, "complete") == nil {
		t.Fatalf("actions %s", resp)
	}
	blank := FindForm(resp)
	if blank == nil || blank.Type != FormTypeForm || blank.Field("text") == nil || !blank.Field("text").Required {
		t.Fatalf("blank form %s", resp)
	}

	// Another resource of the same account cannot use the session.
	_, err = s.Execute(ctx, aliceOther, command("echo", "complete", sid, submit("x")))
	wantError(t, err, xmpp.CondBadRequest, "bad-sessionid")
	// next is not offered.
	_, err = s.Execute(ctx, alice, command("echo", "next", sid, submit("x")))
	wantError(t, err, xmpp.CondBadRequest, "bad-action")
	// Completing without the form.
	_, err = s.Execute(ctx, alice, command("echo", "complete", sid, nil))
	wantError(t, err, xmpp.CondBadRequest, "bad-payload")

	resp, err = s.Execute(ctx, alice, command("echo", "complete", sid, submit("yo")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attr("status") != StatusCompleted || resp.Attr("sessionid") != sid || FindForm(resp).Value("text") != "yo from alice@example.org" {
		t.Fatalf("completed %s", resp)
	}
	// The session is over.
	_, err = s.Execute(ctx, alice, command("echo", "complete", sid, submit("again")))
	wantError(t, err, xmpp.CondBadRequest, "bad-sessionid")
}

func TestCancelAndExpiry(t *testing.T) {
	s, now := echoServer(t)
	ctx := context.Background()
	resp, _ := s.Execute(ctx, alice, command("echo", "", "", nil))
	sid := resp.Attr("sessionid")
	resp, err := s.Execute(ctx, alice, command("echo", "cancel", sid, nil))
	if err != nil || resp.Attr("status") != StatusCanceled {
		t.Fatalf("cancel: %v %v", resp, err)
	}
	_, err = s.Execute(ctx, alice, command("echo", "cancel", "", nil))
	wantError(t, err, xmpp.CondBadRequest, "bad-sessionid")

	resp, _ = s.Execute(ctx, alice, command("echo", "", "", nil))
	sid = resp.Attr("sessionid")
	*now = now.Add(2 * time.Minute)
	_, err = s.Execute(ctx, alice, command("echo", "complete", sid, submit("late")))
	wantError(t, err, xmpp.CondNotAllowed, "session-expired")
}

func TestSessionCap(t *testing.T) {
	s, now := echoServer(t)
	ctx := context.Background()
	for range 2 {
		if _, err := s.Execute(ctx, alice, command("echo", "", "", nil)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Execute(ctx, alice, command("echo", "", "", nil))
	wantError(t, err, xmpp.CondResourceConstraint, "")
	// Expired sessions make room.
	*now = now.Add(2 * time.Minute)
	if _, err := s.Execute(ctx, alice, command("echo", "", "", nil)); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	s, _ := echoServer(t)
	ctx := context.Background()
	_, err := s.Execute(ctx, alice, command("nope", "", "", nil))
	wantError(t, err, xmpp.CondItemNotFound, "")
	_, err = s.Execute(ctx, alice, command("echo", "jump", "", nil))
	wantError(t, err, xmpp.CondBadRequest, "malformed-action")
	_, err = s.Execute(ctx, alice, command("echo", "", "", submit("")))
	wantError(t, err, xmpp.CondBadRequest, "")
	_, err = s.Execute(ctx, alice, xmpp.NewElement(NS, "other"))
	wantError(t, err, xmpp.CondBadRequest, "")

	// An error with notes comes with the command element.
	resp, err := s.Execute(ctx, alice, command("fail", "", "", nil))
	wantError(t, err, xmpp.CondFeatureNotImplemented, "")
	if resp == nil || resp.Attr("status") != StatusCompleted {
		t.Fatalf("no command with the error: %v", resp)
	}
	if n := resp.Child(NS, "note"); n == nil || n.Attr("type") != NoteError || n.Text() != "not configured" {
		t.Fatalf("note: %s", resp)
	}
}

func TestDisco(t *testing.T) {
	s, _ := echoServer(t)
	items := s.Items("svc.example.org")
	if items.Attr("node") != NS {
		t.Fatalf("items %s", items)
	}
	var nodes []string
	for _, it := range items.Elements() {
		if it.Attr("jid") != "svc.example.org" || it.Attr("name") == "" {
			t.Fatalf("item %s", it)
		}
		nodes = append(nodes, it.Attr("node"))
	}
	if strings.Join(nodes, ",") != "echo,now" {
		t.Fatalf("listed %v (fail is hidden)", nodes)
	}
	info, ok := s.Info("echo")
	if !ok || info.Child(xmpp.NSDiscoInfo, "identity").Attr("type") != "command-node" {
		t.Fatalf("info %v", info)
	}
	if info, ok := s.Info(NS); !ok || info.Child(xmpp.NSDiscoInfo, "identity").Attr("type") != "command-list" {
		t.Fatalf("commands node info %v", info)
	}
	if _, ok := s.Info("nope"); ok {
		t.Fatal("info for an unknown node")
	}
}

func TestFormRoundTrip(t *testing.T) {
	f := &Form{
		Type: FormTypeForm, Title: "T", Instructions: "I",
		Fields: []Field{
			{Var: "FORM_TYPE", Type: FieldHidden, Values: []string{"urn:example"}},
			{Var: "b", Type: FieldBoolean, Label: "B", Desc: "d", Required: true, Values: []string{"1"}},
			{Var: "l", Type: FieldListSingle, Options: []Option{{Label: "One", Value: "1"}, {Label: "Two", Value: "2"}}},
			{Var: "m", Type: FieldTextMulti, Values: []string{"a", " b "}},
		},
	}
	el, err := xmpp.ParseElement(f.Element().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	g := ParseForm(el)
	if g.Type != "form" || g.Title != "T" || g.Instructions != "I" || g.FormType() != "urn:example" {
		t.Fatalf("parsed %+v", g)
	}
	b := g.Field("b")
	if b == nil || !b.Required || b.Label != "B" || b.Desc != "d" || b.Type != FieldBoolean {
		t.Fatalf("field b %+v", b)
	}
	if v, err := ParseBool(g.Value("b")); err != nil || !v {
		t.Fatalf("b = %v, %v", v, err)
	}
	if l := g.Field("l"); len(l.Options) != 2 || l.Options[1] != (Option{"Two", "2"}) {
		t.Fatalf("options %+v", l.Options)
	}
	if m := g.Field("m"); len(m.Values) != 2 || g.Value("m") != "a" {
		t.Fatalf("multi %+v", m)
	}
	if g.Value("missing") != "" || g.Field("missing") != nil {
		t.Fatal("missing field found")
	}
	if ParseForm(xmpp.NewElement("urn:other", "x")) != nil || FindForm(nil) != nil {
		t.Fatal("not a form parsed as one")
	}
	for in, want := range map[string]bool{"true": true, "0": false, "false": false, " 1 ": true} {
		if got, err := ParseBool(in); err != nil || got != want {
			t.Errorf("ParseBool(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseBool("yes"); err == nil {
		t.Error("ParseBool(yes) succeeded")
	}
}
