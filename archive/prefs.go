package archive

import (
	"context"
	"errors"
	"sync"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// maxPrefsJIDs caps each of the always and never lists.
const maxPrefsJIDs = 1000

// prefsCacheMax bounds the number of users whose preferences are cached;
// the cache starts over when full.
const prefsCacheMax = 50_000

// prefsCache keeps users' archiving preferences in memory: they are read
// for every message and change only through handlePrefs (or with the
// account). gen counts changes, so that a read racing with a change does
// not cache the old value.
type prefsCache struct {
	mu  sync.Mutex
	m   map[string]storage.ArchivePrefs
	gen uint64
}

func (c *prefsCache) get(user string) (storage.ArchivePrefs, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[user]
	return p, c.gen, ok
}

// put caches p unless preferences changed since gen was read.
func (c *prefsCache) put(user string, p storage.ArchivePrefs, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil || len(c.m) >= prefsCacheMax {
		c.m = make(map[string]storage.ArchivePrefs)
	}
	c.m[user] = p
}

// forget drops the user's cached preferences.
func (c *prefsCache) forget(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, user)
}

// prefs returns the user's preferences, or the configured default.
func (s *Service) prefs(ctx context.Context, user string) storage.ArchivePrefs {
	p, gen, ok := s.prefsCache.get(user)
	if ok {
		return p
	}
	p, err := s.store.ArchivePrefs(ctx, user)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		p = storage.ArchivePrefs{Default: s.cfg.DefaultMode}
	case err != nil:
		s.log.Warn("cannot read archiving preferences; using the default", "user", user, "err", err)
		return storage.ArchivePrefs{Default: s.cfg.DefaultMode}
	}
	s.prefsCache.put(user, p, gen)
	return p
}

// Forget drops what the archive keeps in memory about a deleted account.
func (s *Service) Forget(user string) {
	s.prefsCache.forget(user)
}

// wants reports whether a message exchanged between user and contact is
// archived under the user's preferences (XEP-0441 §2): the never list
// wins over the always list, which wins over the default mode.
func (s *Service) wants(ctx context.Context, user string, contact jid.JID) bool {
	p := s.prefs(ctx, user)
	if listed(p.Never, contact) {
		return false
	}
	if listed(p.Always, contact) {
		return true
	}
	switch p.Default {
	case storage.ArchiveAlways:
		return true
	case storage.ArchiveRoster:
		bare := contact.Bare().String()
		if contact.Localpart() == user && contact.Domainpart() == s.router.Domain() {
			return true // the user's own account
		}
		_, err := s.store.RosterItem(ctx, user, bare)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log.Warn("cannot read the roster for the archiving preference; not archiving", "user", user, "err", err)
		}
		return err == nil
	default:
		return false
	}
}

// listed reports whether target matches one of the JIDs: a bare JID in
// the list matches every resource, a full JID only itself (XEP-0441 §4).
func listed(list []string, target jid.JID) bool {
	for _, s := range list {
		j, err := jid.Parse(s)
		if err != nil {
			continue
		}
		if j.Resourcepart() == "" {
			if j.Equal(target.Bare()) {
				return true
			}
		} else if j.Equal(target) {
			return true
		}
	}
	return false
}

// handlePrefs answers a XEP-0441 <prefs/> get or set.
func (s *Service) handlePrefs(ctx context.Context, iq *router.Stanza, el *xmpp.Element) error {
	user := iq.From.Localpart()
	if iq.Type() == "get" {
		s.router.Result(ctx, iq, prefsElement(s.prefs(ctx, user)))
		return nil
	}
	p := storage.ArchivePrefs{Default: el.Attr("default")}
	switch p.Default {
	case storage.ArchiveAlways, storage.ArchiveNever, storage.ArchiveRoster:
	default:
		return xmpp.NewStanzaError(xmpp.CondBadRequest, "the default attribute must be always, never or roster")
	}
	var err error
	if p.Always, err = jidList(el.Child(NS, "always")); err != nil {
		return err
	}
	if p.Never, err = jidList(el.Child(NS, "never")); err != nil {
		return err
	}
	// Forgotten before and after the write: a message routed meanwhile
	// reads the preferences from the store.
	s.prefsCache.forget(user)
	err = s.store.SetArchivePrefs(ctx, user, p)
	s.prefsCache.forget(user)
	if err != nil {
		return err
	}
	s.log.Info("archiving preferences changed", "user", user, "default", p.Default, "always", len(p.Always), "never", len(p.Never))
	s.router.Result(ctx, iq, prefsElement(p))
	return nil
}

// jidList reads the <jid/> children of an <always/> or <never/> element.
func jidList(el *xmpp.Element) ([]string, error) {
	if el == nil {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, c := range el.Elements() {
		if !c.Is(NS, "jid") {
			continue
		}
		j, err := jid.Parse(c.Text())
		if err != nil {
			return nil, xmpp.NewStanzaError(xmpp.CondJIDMalformed, "not a valid JID: "+c.Text())
		}
		if s := j.String(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	if len(out) > maxPrefsJIDs {
		return nil, xmpp.NewStanzaError(xmpp.CondNotAcceptable, "too many JIDs in one archiving preference list")
	}
	return out, nil
}

// prefsElement writes preferences as a <prefs/> element, with both lists
// present even when empty.
func prefsElement(p storage.ArchivePrefs) *xmpp.Element {
	el := xmpp.NewElement(NS, "prefs", "default", p.Default)
	always := el.AddChild(NS, "always")
	for _, j := range p.Always {
		always.AddChild(NS, "jid").AppendText(j)
	}
	never := el.AddChild(NS, "never")
	for _, j := range p.Never {
		never.AddChild(NS, "jid").AppendText(j)
	}
	return el
}
