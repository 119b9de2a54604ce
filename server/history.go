package server

import (
	"context"

	"wren.im/wren/archive"
	"wren.im/wren/c2s"
	"wren.im/wren/carbons"
	"wren.im/wren/router"
)

// history wires the multi-device history features: Message Carbons
// (XEP-0280), the message archive (XEP-0313) and its stanza ids
// (XEP-0359).
type history struct {
	carbons *carbons.Service
	archive *archive.Service // nil when archive.enabled is false
}

// buildHistory builds carbons and the archive and registers their routing
// hooks. It must run after router.SetHooks, which replaces every hook.
// The order of the MessageIn hooks matters: carbons first, so that it sees
// the message as its sender wrote it (a <private/> element, or a
// <stanza-id/> that the archive will check), then the archive.
func (s *Server) buildHistory() *history {
	cfg := s.cfg.Archive
	h := &history{carbons: carbons.New(s.router, s.log)}
	s.router.AddMessageIn(h.carbons.MessageIn)
	if cfg.Enabled {
		h.archive = archive.New(archive.Config{
			DefaultMode:     cfg.DefaultMode,
			Retention:       cfg.Retention.Duration,
			MaxPerUser:      cfg.MaxPerUser,
			CleanupInterval: cfg.CleanupInterval.Duration,
		}, s.store, s.router, s.log)
		s.router.AddMessageIn(h.archive.MessageIn)
		s.disco.AddAccountFeature(archive.NS, archive.NSExtended, archive.NSSID)
	} else {
		// Without an archive nobody may claim to be one.
		s.router.AddMessageIn(archive.StripStanzaIDs)
	}
	s.router.AddMessageDelivered(h.carbons.MessageDelivered)
	s.disco.AddServerFeature(carbons.NS)
	return h
}

// messageOut is the c2s MessageOut hook: the message is archived in the
// sender's archive first, so that the <sent/> carbon copies carry its
// archive id.
func (h *history) messageOut(ctx context.Context, sess *c2s.Session, st *router.Stanza) bool {
	id := ""
	if h.archive != nil {
		id = h.archive.ArchiveSent(ctx, st)
	}
	h.carbons.Sent(ctx, sess, st, id)
	return false
}

// bound is the c2s Bound hook.
func (h *history) bound(ctx context.Context, sess *c2s.Session) {
	h.carbons.SessionBound(ctx, sess)
}

// ended returns a c2s Ended hook that runs next, then forgets the
// session's carbons state.
func (h *history) ended(next func(context.Context, *c2s.Session, bool)) func(context.Context, *c2s.Session, bool) {
	return func(ctx context.Context, sess *c2s.Session, replaced bool) {
		if next != nil {
			next(ctx, sess, replaced)
		}
		h.carbons.SessionEnded(ctx, sess, replaced)
	}
}

// start runs the archive's retention goroutine.
func (h *history) start() {
	if h.archive != nil {
		h.archive.Start()
	}
}

// close stops it; call it before the store is closed.
func (h *history) close() {
	if h.archive != nil {
		h.archive.Close()
	}
}
