// Package avatar keeps a user's two kinds of avatar in step (XEP-0398): an
// avatar published with PEP (XEP-0084, what modern clients upload) is
// copied into the user's vCard (XEP-0153, what older clients and group
// chats read), a photo set in the vCard is published to PEP, and the
// server announces the avatar's hash in the user's available presence.
package avatar

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Namespaces of the protocols involved.
const (
	NS            = "urn:xmpp:pep-vcard-conversion:0"
	NSData        = "urn:xmpp:avatar:data"
	NSMetadata    = "urn:xmpp:avatar:metadata"
	NSVCardUpdate = "vcard-temp:x:update"
)

// PEP is what the service needs of the PEP service.
type PEP interface {
	// Publish publishes payload as item id to the publisher's node.
	Publish(ctx context.Context, publisher jid.JID, node, id string, payload *xmpp.Element) (string, error)
}

// Store is what the service reads and writes.
type Store interface {
	storage.VCards
	PEPItems(ctx context.Context, user, node string, ids []string, max int) ([]storage.PEPItem, error)
}

// maxCached bounds the avatar hashes kept in memory.
const maxCached = 10000

// Service converts between the two avatar stores of each account.
type Service struct {
	store  Store
	pep    PEP
	domain string
	log    *slog.Logger

	mu     sync.Mutex
	hashes map[string]string // user -> SHA-1 hex of the vCard photo, "" for none
}

// New returns the conversion service for the accounts of domain.
func New(store Store, pep PEP, domain string, logger *slog.Logger) *Service {
	return &Service{store: store, pep: pep, domain: domain, log: logger, hashes: map[string]string{}}
}

// photo is an avatar image.
type photo struct {
	typ  string
	data []byte
}

func (p photo) hash() string {
	sum := sha1.Sum(p.data)
	return hex.EncodeToString(sum[:])
}

// PEPPublished is the PEP publish hook: a new avatar metadata item makes
// the image it points to (in the data node) the vCard photo; metadata
// without an image removes the photo.
func (s *Service) PEPPublished(ctx context.Context, owner, node, id string, payload *xmpp.Element) {
	if node != NSMetadata || payload == nil || !payload.Is(NSMetadata, "metadata") {
		return
	}
	var info *xmpp.Element
	for _, c := range payload.Elements() {
		// The image stored in PEP, not one at an external URL (§3.1).
		if c.Is(NSMetadata, "info") && c.Attr("url") == "" {
			info = c
			break
		}
	}
	if info == nil {
		s.setVCardPhoto(ctx, owner, nil)
		return
	}
	items, err := s.store.PEPItems(ctx, owner, NSData, []string{info.Attr("id")}, 1)
	if err != nil || len(items) == 0 {
		s.log.Info("avatar metadata points to no published image; vCard photo not updated", "user", owner, "id", info.Attr("id"))
		return
	}
	el, err := xmpp.ParseElement(items[0].Payload)
	if err != nil || !el.Is(NSData, "data") {
		return
	}
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(el.Text()), ""))
	if err != nil {
		return
	}
	p := photo{typ: info.Attr("type"), data: data}
	if p.hash() != strings.ToLower(info.Attr("id")) {
		s.log.Info("avatar image does not match its SHA-1 id; vCard photo not updated", "user", owner, "id", info.Attr("id"))
		return
	}
	s.setVCardPhoto(ctx, owner, &p)
}

// setVCardPhoto replaces the PHOTO of owner's vCard (nil removes it).
func (s *Service) setVCardPhoto(ctx context.Context, owner string, p *photo) {
	vc, err := s.loadVCard(ctx, owner)
	if err != nil {
		s.log.Error("cannot load vCard to update its photo", "user", owner, "err", err)
		return
	}
	if cur := vcardPhoto(vc); (cur == nil && p == nil) || (cur != nil && p != nil && cur.hash() == p.hash()) {
		s.remember(owner, p)
		return
	}
	vc.RemoveChildren(func(c *xmpp.Element) bool { return c.Is(xmpp.NSVCard, "PHOTO") })
	if p != nil {
		ph := vc.AddChild(xmpp.NSVCard, "PHOTO")
		if p.typ != "" {
			ph.AddChild(xmpp.NSVCard, "TYPE").AppendText(p.typ)
		}
		ph.AddChild(xmpp.NSVCard, "BINVAL").AppendText(base64.StdEncoding.EncodeToString(p.data))
	}
	if err := s.store.SetVCard(ctx, owner, vc.Bytes()); err != nil {
		s.log.Error("cannot store the vCard photo from the PEP avatar", "user", owner, "err", err)
		return
	}
	s.remember(owner, p)
}

// VCardSet is the vCard hook: a photo set in the vCard is published as the
// PEP avatar (data, then metadata); a vCard without a photo clears a PEP
// avatar the vCard had set.
func (s *Service) VCardSet(ctx context.Context, owner string, vc *xmpp.Element) {
	p := vcardPhoto(vc)
	s.remember(owner, p)
	publisher, err := jid.New(owner, s.domain, "")
	if err != nil {
		return
	}
	if p == nil {
		if s.pepHasAvatar(ctx, owner) {
			if _, err := s.pep.Publish(ctx, publisher, NSMetadata, "current", xmpp.NewElement(NSMetadata, "metadata")); err != nil {
				s.log.Error("cannot clear the PEP avatar after the vCard photo was removed", "user", owner, "err", err)
			}
		}
		return
	}
	id := p.hash()
	data := xmpp.NewElement(NSData, "data").AppendText(base64.StdEncoding.EncodeToString(p.data))
	if _, err := s.pep.Publish(ctx, publisher, NSData, id, data); err != nil {
		s.log.Error("cannot publish the vCard photo as PEP avatar", "user", owner, "err", err)
		return
	}
	meta := xmpp.NewElement(NSMetadata, "metadata")
	info := meta.AddChild(NSMetadata, "info", "id", id, "bytes", strconv.Itoa(len(p.data)))
	if p.typ != "" {
		info.SetAttr("type", p.typ)
	}
	if _, err := s.pep.Publish(ctx, publisher, NSMetadata, id, meta); err != nil {
		s.log.Error("cannot publish the avatar metadata", "user", owner, "err", err)
	}
}

// DecoratePresence adds the hash of the user's avatar to an available
// presence the user sends (§4), unless the client put its own photo
// element there.
func (s *Service) DecoratePresence(ctx context.Context, owner string, el *xmpp.Element) {
	if t := el.Attr("type"); t != "" {
		return
	}
	x := el.Child(NSVCardUpdate, "x")
	if x != nil && x.Child(NSVCardUpdate, "photo") != nil {
		// The client chose (an empty photo means "not ready"); the XEP
		// lets a different hash stand.
		return
	}
	hash, err := s.hash(ctx, owner)
	if err != nil {
		return
	}
	if x == nil {
		x = el.AddChild(NSVCardUpdate, "x")
	}
	x.AddChild(NSVCardUpdate, "photo").AppendText(hash)
}

// hash returns the SHA-1 of the user's vCard photo ("" for none).
func (s *Service) hash(ctx context.Context, owner string) (string, error) {
	s.mu.Lock()
	h, ok := s.hashes[owner]
	s.mu.Unlock()
	if ok {
		return h, nil
	}
	vc, err := s.loadVCard(ctx, owner)
	if err != nil {
		return "", err
	}
	p := vcardPhoto(vc)
	s.remember(owner, p)
	if p == nil {
		return "", nil
	}
	return p.hash(), nil
}

// pepHasAvatar reports whether the newest avatar metadata names an image.
func (s *Service) pepHasAvatar(ctx context.Context, owner string) bool {
	items, err := s.store.PEPItems(ctx, owner, NSMetadata, nil, 1)
	if err != nil || len(items) == 0 {
		return false
	}
	el, err := xmpp.ParseElement(items[0].Payload)
	return err == nil && el.Child(NSMetadata, "info") != nil
}

func (s *Service) remember(owner string, p *photo) {
	h := ""
	if p != nil {
		h = p.hash()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.hashes[owner]; !ok && len(s.hashes) >= maxCached {
		for k := range s.hashes {
			delete(s.hashes, k)
			break
		}
	}
	s.hashes[owner] = h
}

// Forget drops what the service cached about a deleted account.
func (s *Service) Forget(owner string) {
	s.mu.Lock()
	delete(s.hashes, owner)
	s.mu.Unlock()
}

func (s *Service) loadVCard(ctx context.Context, owner string) (*xmpp.Element, error) {
	b, err := s.store.VCard(ctx, owner)
	if errors.Is(err, storage.ErrNotFound) {
		return xmpp.NewElement(xmpp.NSVCard, "vCard"), nil
	}
	if err != nil {
		return nil, err
	}
	return xmpp.ParseElement(b)
}

// vcardPhoto returns the embedded photo of a vCard, or nil.
func vcardPhoto(vc *xmpp.Element) *photo {
	ph := vc.Child(xmpp.NSVCard, "PHOTO")
	if ph == nil {
		return nil
	}
	bin := strings.Join(strings.Fields(ph.ChildText(xmpp.NSVCard, "BINVAL")), "")
	if bin == "" {
		return nil
	}
	data, err := base64.StdEncoding.DecodeString(bin)
	if err != nil || len(data) == 0 {
		return nil
	}
	return &photo{typ: strings.TrimSpace(ph.ChildText(xmpp.NSVCard, "TYPE")), data: data}
}
