// Package adhoc runs ad-hoc commands (XEP-0050) for a service: it parses
// command requests, keeps the sessions of multi-stage executions, answers
// with the protocol's statuses, actions, notes and errors, and lists the
// commands for service discovery. It also reads and writes the data forms
// (XEP-0004) that commands exchange.
//
// A command runs in one of two ways. A client that knows the command
// submits its form with the execute request and gets the completed
// result at once (what Conversations does with push gateways). A generic
// client executes the command without a form, receives the blank form
// and a session id, then completes (or cancels) the session with the
// filled-in form.
package adhoc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sort"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/xmpp"
)

// NS is the ad-hoc commands namespace, also the disco node listing the
// commands.
const NS = "http://jabber.org/protocol/commands"

// Actions a requester may ask for.
const (
	ActionExecute  = "execute"
	ActionComplete = "complete"
	ActionNext     = "next"
	ActionPrev     = "prev"
	ActionCancel   = "cancel"
)

// Statuses of a command response.
const (
	StatusExecuting = "executing"
	StatusCompleted = "completed"
	StatusCanceled  = "canceled"
)

// Note types.
const (
	NoteInfo  = "info"
	NoteWarn  = "warn"
	NoteError = "error"
)

// Defaults of a Server.
const (
	// DefaultSessionTimeout is how long a multi-stage session waits for
	// the requester's next stage.
	DefaultSessionTimeout = 10 * time.Minute
	// DefaultMaxSessions caps the open multi-stage sessions of a Server.
	DefaultMaxSessions = 1000
)

// Note is a message for the requester in a command response.
type Note struct {
	Type string // NoteInfo, NoteWarn or NoteError
	Text string
}

// Result is what a completed command returns.
type Result struct {
	// Form is the result form (type "result"), or nil.
	Form  *Form
	Notes []Note
}

// Command is one command a Server offers.
type Command struct {
	// Node identifies the command; Name is shown to users.
	Node string
	Name string
	// Hidden commands run but are not listed in service discovery (aliases
	// kept for compatibility).
	Hidden bool
	// Form returns the blank form sent to a requester who executes the
	// command without submitting one. Nil for commands that take no input:
	// they run at once.
	Form func(ctx context.Context, from jid.JID) *Form
	// Execute runs the command with the submitted form (nil when the
	// command takes none). An error that is (or wraps) a
	// *xmpp.StanzaError is returned to the requester as it is, together
	// with the notes of the returned Result; any other error becomes
	// internal-server-error.
	Execute func(ctx context.Context, from jid.JID, form *Form) (Result, error)
}

// Errors of XEP-0050 §4.6, with their application-specific conditions.
// Each call returns a new error.

// ErrMalformedAction is the error for an unknown action.
func ErrMalformedAction() *xmpp.StanzaError {
	return commandError(xmpp.CondBadRequest, "malformed-action", "unknown action")
}

// ErrBadAction is the error for an action not available at this stage.
func ErrBadAction() *xmpp.StanzaError {
	return commandError(xmpp.CondBadRequest, "bad-action", "this action is not available at this stage")
}

// ErrBadSessionID is the error for an unknown session.
func ErrBadSessionID() *xmpp.StanzaError {
	return commandError(xmpp.CondBadRequest, "bad-sessionid", "no such command session")
}

// ErrSessionExpired is the error for a session that timed out.
func ErrSessionExpired() *xmpp.StanzaError {
	return commandError(xmpp.CondNotAllowed, "session-expired", "the command session expired; execute the command again")
}

// ErrBadPayload is the error for a stage without the expected form.
func ErrBadPayload() *xmpp.StanzaError {
	return commandError(xmpp.CondBadRequest, "bad-payload", "the command needs its form submitted")
}

// commandError returns a stanza error with an ad-hoc specific condition.
func commandError(cond, specific, text string) *xmpp.StanzaError {
	return &xmpp.StanzaError{Condition: cond, Text: text, Extra: xmpp.NewElement(NS, specific)}
}

// Server runs the commands of one service. It is safe for concurrent use.
type Server struct {
	// SessionTimeout and MaxSessions limit multi-stage sessions; set them
	// before use (zero: the defaults).
	SessionTimeout time.Duration
	MaxSessions    int
	// Now returns the current time (time.Now when nil); tests replace it.
	Now func() time.Time

	mu       sync.Mutex
	commands map[string]Command
	sessions map[string]session
}

type session struct {
	node    string
	from    string // full JID of the requester
	expires time.Time
}

// Add registers a command, replacing the one with the same node.
func (s *Server) Add(c Command) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commands == nil {
		s.commands = map[string]Command{}
	}
	s.commands[c.Node] = c
}

// Commands returns the listed commands ordered by node.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Command, 0, len(s.commands))
	for _, c := range s.commands {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Items returns the disco#items answer for the commands node of the
// service at service.
func (s *Server) Items(service string) *xmpp.Element {
	q := xmpp.NewElement(xmpp.NSDiscoItems, "query", "node", NS)
	for _, c := range s.Commands() {
		q.AddChild(xmpp.NSDiscoItems, "item", "jid", service, "node", c.Node, "name", c.Name)
	}
	return q
}

// Info returns the disco#info answer for node when it is the commands
// node or the node of a command, and false otherwise.
func (s *Server) Info(node string) (*xmpp.Element, bool) {
	q := xmpp.NewElement(xmpp.NSDiscoInfo, "query", "node", node)
	if node == NS {
		q.AddChild(xmpp.NSDiscoInfo, "identity", "category", "automation", "type", "command-list", "name", "Commands")
		return q, true
	}
	s.mu.Lock()
	c, ok := s.commands[node]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	q.AddChild(xmpp.NSDiscoInfo, "identity", "category", "automation", "type", "command-node", "name", c.Name)
	q.AddChild(xmpp.NSDiscoInfo, "feature", "var", NS)
	q.AddChild(xmpp.NSDiscoInfo, "feature", "var", xmpp.NSDataForms)
	return q, true
}

// Execute handles the <command/> payload of an IQ set from the requester
// from (an authenticated full JID). It returns the <command/> element of
// the reply, or an error for the requester; when both are returned, the
// command element carries notes that explain the error and belongs in the
// error reply.
func (s *Server) Execute(ctx context.Context, from jid.JID, cmd *xmpp.Element) (*xmpp.Element, *xmpp.StanzaError) {
	if !cmd.Is(NS, "command") {
		return nil, xmpp.NewStanzaError(xmpp.CondBadRequest, "expected a <command/> element")
	}
	node := cmd.Attr("node")
	s.mu.Lock()
	c, ok := s.commands[node]
	s.mu.Unlock()
	if !ok {
		return nil, xmpp.NewStanzaError(xmpp.CondItemNotFound, "no command "+node+" here")
	}
	action := cmd.Attr("action")
	switch action {
	case "", ActionExecute, ActionComplete, ActionCancel, ActionNext, ActionPrev:
	default:
		return nil, ErrMalformedAction()
	}
	form := FindForm(cmd)
	if form != nil && form.Type == FormTypeCancel {
		action = ActionCancel
	}
	sid := cmd.Attr("sessionid")
	if sid == "" {
		switch action {
		case ActionCancel:
			return nil, ErrBadSessionID()
		case ActionNext, ActionPrev:
			return nil, ErrBadAction()
		}
		var blank *Form
		if form == nil && c.Form != nil {
			blank = c.Form(ctx, from)
		}
		if blank != nil {
			// First stage of a multi-stage execution.
			sid, err := s.open(node, from)
			if err != nil {
				return nil, err
			}
			resp := response(node, sid, StatusExecuting)
			actions := resp.AddChild(NS, "actions", "execute", ActionComplete)
			actions.AddChild(NS, ActionComplete)
			resp.Append(blank.Element())
			return resp, nil
		}
		return s.run(ctx, c, from, form, newID())
	}

	if err := s.take(sid, node, from); err != nil {
		return nil, err
	}
	switch action {
	case ActionCancel:
		return response(node, sid, StatusCanceled), nil
	case ActionNext, ActionPrev:
		// The session is single-stage after the form: put it back so
		// that the requester can still complete or cancel it.
		s.restore(sid, node, from)
		return nil, ErrBadAction()
	}
	if form == nil || (form.Type != FormTypeSubmit && form.Type != "") {
		s.restore(sid, node, from)
		return nil, ErrBadPayload()
	}
	return s.run(ctx, c, from, form, sid)
}

// run executes c and builds the completed response.
func (s *Server) run(ctx context.Context, c Command, from jid.JID, form *Form, sid string) (*xmpp.Element, *xmpp.StanzaError) {
	res, err := c.Execute(ctx, from, form)
	resp := response(c.Node, sid, StatusCompleted)
	for _, n := range res.Notes {
		resp.AddChild(NS, "note", "type", n.Type).AppendText(n.Text)
	}
	if err != nil {
		var serr *xmpp.StanzaError
		if !errors.As(err, &serr) {
			serr = xmpp.NewStanzaError(xmpp.CondInternalServerError, "the command failed")
		}
		if len(res.Notes) == 0 {
			return nil, serr
		}
		return resp, serr
	}
	if res.Form != nil {
		resp.Append(res.Form.Element())
	}
	return resp, nil
}

func response(node, sid, status string) *xmpp.Element {
	return xmpp.NewElement(NS, "command", "node", node, "sessionid", sid, "status", status)
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) timeout() time.Duration {
	if s.SessionTimeout > 0 {
		return s.SessionTimeout
	}
	return DefaultSessionTimeout
}

// open starts a multi-stage session.
func (s *Server) open(node string, from jid.JID) (string, *xmpp.StanzaError) {
	max := s.MaxSessions
	if max <= 0 {
		max = DefaultMaxSessions
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions == nil {
		s.sessions = map[string]session{}
	}
	if len(s.sessions) >= max {
		for id, ss := range s.sessions {
			if now.After(ss.expires) {
				delete(s.sessions, id)
			}
		}
		if len(s.sessions) >= max {
			return "", xmpp.NewStanzaError(xmpp.CondResourceConstraint, "too many open command sessions; try again later")
		}
	}
	sid := newID()
	s.sessions[sid] = session{node: node, from: from.String(), expires: now.Add(s.timeout())}
	return sid, nil
}

// take removes and checks the session sid of from for node.
func (s *Server) take(sid, node string, from jid.JID) *xmpp.StanzaError {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[sid]
	if !ok || ss.node != node || ss.from != from.String() {
		return ErrBadSessionID()
	}
	delete(s.sessions, sid)
	if s.now().After(ss.expires) {
		return ErrSessionExpired()
	}
	return nil
}

// restore puts back a session taken by a request that did not end it.
func (s *Server) restore(sid, node string, from jid.JID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[sid] = session{node: node, from: from.String(), expires: s.now().Add(s.timeout())}
}

// newID returns a random session id.
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
