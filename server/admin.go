package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/admin"
	"wren.im/wren/c2s"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// DefaultKickReason is the text of the stream error a kicked client
// receives when the administrator gives no reason.
const DefaultKickReason = "kicked by an administrator"

// backend carries out the admin socket's commands on a server.
type backend struct{ s *Server }

var _ admin.Backend = backend{}

// Status implements admin.Backend.
func (b backend) Status(ctx context.Context) (admin.Status, error) {
	s := b.s
	st := admin.Status{
		Version:       Version,
		Domain:        s.cfg.Domain,
		PID:           os.Getpid(),
		Started:       s.started,
		UptimeSeconds: time.Since(s.started).Seconds(),
		Connections:   admin.Connections{C2S: s.c2s.Connections()},
	}
	fed := s.FederationStatus()
	st.Connections.S2S = len(fed.Outgoing) + len(fed.Incoming)
	for _, info := range s.c2s.Sessions("") {
		st.Sessions++
		if info.State == c2s.StateHibernated {
			st.Hibernated++
		}
		st.Queued += info.Queued
		st.LargestQueue = max(st.LargestQueue, info.Queued)
	}
	for _, l := range s.listeners {
		service := "c2s STARTTLS"
		if l.directTLS {
			service = "c2s direct TLS"
		}
		st.Listeners = append(st.Listeners, admin.Listener{Service: service, Addr: l.ln.Addr().String()})
	}
	fedAddrs := s.FederationAddrs()
	for _, what := range slices.Sorted(maps.Keys(fedAddrs)) {
		st.Listeners = append(st.Listeners, admin.Listener{Service: what, Addr: fedAddrs[what].String()})
	}
	if a := s.MetricsAddr(); a != nil {
		st.Listeners = append(st.Listeners, admin.Listener{Service: "metrics", Addr: a.String()})
	}
	return st, nil
}

// user normalises a localpart on the server's domain.
func (b backend) user(name string) (jid.JID, error) {
	u, err := jid.New(name, b.s.cfg.Domain, "")
	if err != nil || u.Localpart() == "" {
		return jid.JID{}, fmt.Errorf("%w: %q is not a valid user name", admin.ErrBadRequest, name)
	}
	return u, nil
}

// Sessions implements admin.Backend.
func (b backend) Sessions(ctx context.Context, user string) ([]admin.Session, error) {
	if user != "" {
		u, err := b.user(user)
		if err != nil {
			return nil, err
		}
		user = u.Localpart()
	}
	var out []admin.Session
	for _, info := range b.s.c2s.Sessions(user) {
		out = append(out, admin.Session{
			JID:       info.JID.String(),
			Remote:    info.RemoteAddr,
			State:     info.State,
			Bound:     info.Bound,
			Secure:    info.Secure,
			DirectTLS: info.DirectTLS,
			Resumable: info.Resumable,
			Queued:    info.Queued,
			Available: info.Available,
			Priority:  info.Priority,
		})
	}
	return out, nil
}

// Kick implements admin.Backend.
func (b backend) Kick(ctx context.Context, address, reason string) ([]string, error) {
	j, err := jid.Parse(address)
	if err != nil || j.Localpart() == "" {
		return nil, fmt.Errorf("%w: %q is not a user's address (user@%s or user@%s/resource)", admin.ErrBadRequest, address, b.s.cfg.Domain, b.s.cfg.Domain)
	}
	if j.Domainpart() != b.s.cfg.Domain {
		return nil, fmt.Errorf("%w: %s is not on this server's domain %s", admin.ErrBadRequest, j, b.s.cfg.Domain)
	}
	if reason == "" {
		reason = DefaultKickReason
	}
	ended := b.s.c2s.Kick(j, xmpp.NewStreamError(xmpp.StreamPolicyViolation, "%s", reason))
	if len(ended) == 0 {
		return nil, fmt.Errorf("%w: %s has no session", admin.ErrNotFound, j)
	}
	out := make([]string, len(ended))
	for i, e := range ended {
		out[i] = e.String()
	}
	b.s.log.Info("sessions kicked by an administrator", "jid", j.String(), "ended", len(out), "reason", reason)
	return out, nil
}

// UserExists implements admin.Backend.
func (b backend) UserExists(ctx context.Context, user string) (bool, error) {
	u, err := b.user(user)
	if err != nil {
		return false, err
	}
	_, err = b.s.store.Account(ctx, u.Localpart())
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("looking up user %s: %w", u, err)
}

// AddUser implements admin.Backend.
func (b backend) AddUser(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error {
	u, err := b.user(user)
	if err != nil {
		return err
	}
	err = b.s.store.CreateAccount(ctx, storage.Account{Username: u.Localpart(), Created: time.Now().UTC(), SHA1: sha1, SHA256: sha256})
	if err != nil {
		return fmt.Errorf("creating user %s: %w", u, err)
	}
	b.s.log.Info("user created by an administrator", "user", u.String())
	return nil
}

// SetPassword implements admin.Backend.
func (b backend) SetPassword(ctx context.Context, user string, sha1, sha256 storage.ScramCredential) error {
	u, err := b.user(user)
	if err != nil {
		return err
	}
	if err := b.s.store.SetCredentials(ctx, u.Localpart(), sha1, sha256); err != nil {
		return fmt.Errorf("setting the password of %s: %w", u, err)
	}
	b.s.log.Info("password changed by an administrator", "user", u.String())
	return nil
}

// DeleteUser implements admin.Backend: contacts are told the user is
// gone, the account and its data are deleted, then its sessions end (live
// or hibernated) with not-authorized, so that they cannot go on under an
// account that no longer exists.
func (b backend) DeleteUser(ctx context.Context, user string) ([]string, error) {
	u, err := b.user(user)
	if err != nil {
		return nil, err
	}
	if _, err := b.s.store.Account(ctx, u.Localpart()); err != nil {
		return nil, fmt.Errorf("user %s: %w", u, err)
	}
	if b.s.roster != nil {
		b.s.roster.CancelAll(ctx, u.Localpart())
	}
	if err := b.s.store.DeleteAccount(ctx, u.Localpart()); err != nil {
		return nil, fmt.Errorf("deleting user %s: %w", u, err)
	}
	b.s.accountDeleted(u.Localpart())
	ended := b.s.c2s.Kick(u, xmpp.NewStreamError(xmpp.StreamNotAuthorized, "your account was deleted by an administrator"))
	out := make([]string, len(ended))
	for i, e := range ended {
		out[i] = e.String()
	}
	b.s.log.Info("user deleted by an administrator", "user", u.String(), "sessions_ended", len(out))
	return out, nil
}

// ListUsers implements admin.Backend.
func (b backend) ListUsers(ctx context.Context) ([]string, error) {
	names, err := b.s.store.ListAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	return names, nil
}

// Reload implements admin.Backend.
func (b backend) Reload(ctx context.Context) (admin.ReloadResult, error) {
	return b.s.Reload(ctx)
}
