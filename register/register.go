// Package register implements in-band registration (XEP-0077): account
// creation before authentication when the operator allows it, and password
// change and account removal for logged-in users.
package register

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"wren.im/wren/auth"
	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Config configures registration.
type Config struct {
	Domain string
	// Open allows account creation by anyone who can connect.
	Open              bool
	MinPasswordLength int
	ScramIterations   int
	// MaxPerIP caps the accounts created in-band from one address within
	// PerIPWindow (0: no cap).
	MaxPerIP    int
	PerIPWindow time.Duration
	// BeforeRemove, when set, runs when a user removes their own account,
	// before anything is deleted: the roster still exists, so contacts can
	// be told that the user is gone.
	BeforeRemove func(ctx context.Context, user string)
	// AfterRemove, when set, runs after an account was deleted (features
	// drop what they cached about it).
	AfterRemove func(user string)
}

// Service is the registration feature.
type Service struct {
	cfg      Config
	accounts storage.Accounts
	router   *router.Router
	log      *slog.Logger

	mu     sync.Mutex
	recent map[string][]time.Time // address -> times of accounts created from it
}

// allowed reports whether addr may create another account now.
func (s *Service) allowed(addr string, now time.Time) bool {
	if s.cfg.MaxPerIP <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
	return len(s.recent[addr]) < s.cfg.MaxPerIP
}

// created records an account created from addr.
func (s *Service) created(addr string, now time.Time) {
	if s.cfg.MaxPerIP <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent[addr] = append(s.recent[addr], now)
}

// prune forgets registrations older than the window. Called with mu held.
func (s *Service) prune(now time.Time) {
	for addr, times := range s.recent {
		kept := times[:0]
		for _, t := range times {
			if now.Sub(t) < s.cfg.PerIPWindow {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 {
			delete(s.recent, addr)
		} else {
			s.recent[addr] = kept
		}
	}
}

// New registers the account-side handler (password change, removal).
func New(cfg Config, accounts storage.Accounts, r *router.Router, logger *slog.Logger) *Service {
	s := &Service{cfg: cfg, accounts: accounts, router: r, log: logger.With("component", "register"), recent: map[string][]time.Time{}}
	r.HandleIQ(router.ToAccount, xmpp.NSRegister, s.handleAccount)
	r.HandleIQ(router.ToServer, xmpp.NSRegister, s.handleAccount)
	return s
}

func form(instructions string) *xmpp.Element {
	q := xmpp.NewElement(xmpp.NSRegister, "query")
	q.AddChild(xmpp.NSRegister, "instructions").AppendText(instructions)
	q.AddChild(xmpp.NSRegister, "username")
	q.AddChild(xmpp.NSRegister, "password")
	return q
}

func reply(iq *xmpp.Element, payload *xmpp.Element) *xmpp.Element {
	r := xmpp.NewElement(xmpp.NSClient, "iq", "type", "result", "id", iq.Attr("id"))
	if payload != nil {
		r.Append(payload)
	}
	return r
}

func errReply(iq *xmpp.Element, cond, text string) *xmpp.Element {
	r := xmpp.ErrorReply(iq, xmpp.NewStanzaError(cond, text))
	if r != nil {
		r.SetAttr("from", "")
		r.SetAttr("to", "")
	}
	return r
}

// PreAuthIQ is the c2s hook for IQs before authentication: it answers
// registration requests when registration is open and refuses the rest.
func (s *Service) PreAuthIQ(ctx context.Context, iq *xmpp.Element, remoteIP string, secure bool) *xmpp.Element {
	q := iq.Child(xmpp.NSRegister, "query")
	if q == nil || !s.cfg.Open || len(iq.Elements()) != 1 {
		return nil
	}
	switch iq.Attr("type") {
	case "get":
		return reply(iq, form("Choose a username and a password for your account on "+s.cfg.Domain+"."))
	case "set":
	default:
		return nil
	}
	username := q.ChildText(xmpp.NSRegister, "username")
	password := q.ChildText(xmpp.NSRegister, "password")
	if username == "" || password == "" {
		return errReply(iq, xmpp.CondNotAcceptable, "both a username and a password are required")
	}
	j, err := jid.New(username, s.cfg.Domain, "")
	if err != nil {
		return errReply(iq, xmpp.CondJIDMalformed, "the username contains characters that are not allowed")
	}
	if utf8.RuneCountInString(password) < s.cfg.MinPasswordLength {
		return errReply(iq, xmpp.CondNotAcceptable, fmt.Sprintf("the password must have at least %d characters", s.cfg.MinPasswordLength))
	}
	now := time.Now()
	if !s.allowed(remoteIP, now) {
		s.log.Info("in-band registration refused: too many accounts from this address", "remote", remoteIP, "max", s.cfg.MaxPerIP, "window", s.cfg.PerIPWindow)
		return errReply(iq, xmpp.CondResourceConstraint, "too many accounts were registered from your address; try again later")
	}
	sha1, sha256, err := auth.NewCredentials(password, s.cfg.ScramIterations)
	if err != nil {
		return errReply(iq, xmpp.CondNotAcceptable, "the password contains characters that are not allowed")
	}
	err = s.accounts.CreateAccount(ctx, storage.Account{Username: j.Localpart(), Created: time.Now().UTC(), SHA1: sha1, SHA256: sha256})
	switch {
	case errors.Is(err, storage.ErrExists):
		return errReply(iq, xmpp.CondConflict, "this username is taken")
	case err != nil:
		s.log.Error("cannot create account by in-band registration", "user", j.String(), "err", err)
		return errReply(iq, xmpp.CondInternalServerError, "")
	}
	s.created(remoteIP, now)
	s.log.Info("account registered in-band", "user", j.String(), "remote", remoteIP)
	return reply(iq, nil)
}

// handleAccount serves jabber:iq:register for an authenticated user.
func (s *Service) handleAccount(ctx context.Context, iq *router.Stanza) error {
	if iq.To.Localpart() != "" && !iq.To.Bare().Equal(iq.From.Bare()) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "")
	}
	user := iq.From.Localpart()
	q := iq.El.Child(xmpp.NSRegister, "query")
	if q == nil {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "")
	}
	if iq.Type() == "get" {
		res := xmpp.NewElement(xmpp.NSRegister, "query")
		res.AddChild(xmpp.NSRegister, "registered")
		res.AddChild(xmpp.NSRegister, "username").AppendText(user)
		res.AddChild(xmpp.NSRegister, "password")
		s.router.Result(ctx, iq, res)
		return nil
	}
	if q.Child(xmpp.NSRegister, "remove") != nil {
		if s.cfg.BeforeRemove != nil {
			s.cfg.BeforeRemove(ctx, user)
		}
		if err := s.accounts.DeleteAccount(ctx, user); err != nil {
			return fmt.Errorf("delete account %s: %w", user, err)
		}
		if s.cfg.AfterRemove != nil {
			s.cfg.AfterRemove(user)
		}
		s.log.Info("account removed by its owner", "user", iq.From.Bare().String())
		s.router.Result(ctx, iq, nil)
		for _, sess := range s.router.Sessions(user) {
			sess.Close(xmpp.NewStreamError(xmpp.StreamNotAuthorized, "the account was removed"))
		}
		return nil
	}
	username := q.ChildText(xmpp.NSRegister, "username")
	password := q.ChildText(xmpp.NSRegister, "password")
	if password == "" || (username != "" && username != user) {
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "send your own username and the new password")
	}
	if utf8.RuneCountInString(password) < s.cfg.MinPasswordLength {
		return xmpp.NewStanzaError(xmpp.CondNotAcceptable, fmt.Sprintf("the password must have at least %d characters", s.cfg.MinPasswordLength))
	}
	sha1, sha256, err := auth.NewCredentials(password, s.cfg.ScramIterations)
	if err != nil {
		return xmpp.NewStanzaError(xmpp.CondNotAcceptable, "the password contains characters that are not allowed")
	}
	if err := s.accounts.SetCredentials(ctx, user, sha1, sha256); err != nil {
		return fmt.Errorf("change password of %s: %w", user, err)
	}
	s.log.Info("password changed by its owner", "user", iq.From.Bare().String())
	s.router.Result(ctx, iq, nil)
	return nil
}
