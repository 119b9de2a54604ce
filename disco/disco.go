// Package disco answers service discovery (XEP-0030) for the server and
// for user accounts. Features register what they support with it.
package disco

import (
	"context"
	"sort"
	"sync"

	"wren.im/wren/caps"
	"wren.im/wren/router"
	"wren.im/wren/xmpp"
)

// Identity is a disco identity.
type Identity struct {
	Category, Type, Name string
}

// Service holds the identities and features of the server and of accounts.
type Service struct {
	router *router.Router

	mu              sync.RWMutex
	serverIDs       []Identity
	accountIDs      []Identity
	serverFeatures  map[string]bool
	accountFeatures map[string]bool
	items           []Item
	forms           []*xmpp.Element
}

// Item is a disco#items entry of the server (a component or service).
type Item struct {
	JID, Name string
}

// New returns the disco service and registers its handlers.
func New(r *router.Router, serverName string) *Service {
	s := &Service{
		router:          r,
		serverIDs:       []Identity{{Category: "server", Type: "im", Name: serverName}},
		serverFeatures:  map[string]bool{xmpp.NSDiscoInfo: true, xmpp.NSDiscoItems: true},
		accountFeatures: map[string]bool{xmpp.NSDiscoInfo: true, xmpp.NSDiscoItems: true},
	}
	r.HandleIQ(router.ToServer, xmpp.NSDiscoInfo, s.serverInfo)
	r.HandleIQ(router.ToServer, xmpp.NSDiscoItems, s.serverItems)
	r.HandleIQ(router.ToAccount, xmpp.NSDiscoInfo, s.accountInfo)
	r.HandleIQ(router.ToAccount, xmpp.NSDiscoItems, s.accountItems)
	return s
}

// AddServerFeature advertises a feature of the server.
func (s *Service) AddServerFeature(vars ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vars {
		s.serverFeatures[v] = true
	}
}

// AddAccountFeature advertises a feature of every account.
func (s *Service) AddAccountFeature(vars ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vars {
		s.accountFeatures[v] = true
	}
}

// AddServerIdentity adds an identity of the server.
func (s *Service) AddServerIdentity(id Identity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serverIDs = append(s.serverIDs, id)
}

// AddAccountIdentity adds an identity of every account (besides
// account/registered), such as pubsub/pep.
func (s *Service) AddAccountIdentity(id Identity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accountIDs = append(s.accountIDs, id)
}

// AddItem lists a service in the server's disco#items.
func (s *Service) AddItem(it Item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items = append(s.items, it)
}

// AddServerForm adds an extended info form (XEP-0128), e.g. contact addresses.
func (s *Service) AddServerForm(form *xmpp.Element) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forms = append(s.forms, form)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func infoQuery(node string, ids []Identity, features []string, forms []*xmpp.Element) *xmpp.Element {
	q := xmpp.NewElement(xmpp.NSDiscoInfo, "query", "node", node)
	for _, id := range ids {
		q.AddChild(xmpp.NSDiscoInfo, "identity", "category", id.Category, "type", id.Type, "name", id.Name)
	}
	for _, f := range features {
		q.AddChild(xmpp.NSDiscoInfo, "feature", "var", f)
	}
	for _, f := range forms {
		q.Append(f)
	}
	return q
}

// ServerInfo returns the server's identities and features (also used for
// entity capabilities).
func (s *Service) ServerInfo() ([]Identity, []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]Identity(nil), s.serverIDs...), sortedKeys(s.serverFeatures)
}

// CapsNode is the node of the server's entity capabilities (XEP-0115).
const CapsNode = "https://wren.im"

// Caps returns the server's entity capabilities element (XEP-0115) for
// the stream features, computed from its current identities, features
// and forms.
func (s *Service) Caps() *xmpp.Element {
	return caps.Element(CapsNode, s.capsVer())
}

func (s *Service) capsVer() string {
	ids, features := s.ServerInfo()
	s.mu.RLock()
	forms := s.forms
	s.mu.RUnlock()
	cids := make([]caps.Identity, len(ids))
	for i, id := range ids {
		cids[i] = caps.Identity{Category: id.Category, Type: id.Type, Name: id.Name}
	}
	return caps.Compute(cids, features, forms)
}

func (s *Service) serverInfo(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "get" {
		return xmpp.NewStanzaError(xmpp.CondNotAllowed, "")
	}
	node := iq.El.FirstElement().Attr("node")
	// The caps node#ver that the stream features announce names the
	// same information (XEP-0115 §6.2).
	if node != "" && node != CapsNode+"#"+s.capsVer() {
		return xmpp.NewStanzaError(xmpp.CondItemNotFound, "no such node")
	}
	ids, features := s.ServerInfo()
	s.mu.RLock()
	forms := s.forms
	s.mu.RUnlock()
	s.router.Result(ctx, iq, infoQuery(node, ids, features, forms))
	return nil
}

func (s *Service) serverItems(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "get" {
		return xmpp.NewStanzaError(xmpp.CondNotAllowed, "")
	}
	if iq.El.FirstElement().Attr("node") != "" {
		return xmpp.NewStanzaError(xmpp.CondItemNotFound, "no such node")
	}
	q := xmpp.NewElement(xmpp.NSDiscoItems, "query")
	s.mu.RLock()
	for _, it := range s.items {
		q.AddChild(xmpp.NSDiscoItems, "item", "jid", it.JID, "name", it.Name)
	}
	s.mu.RUnlock()
	s.router.Result(ctx, iq, q)
	return nil
}

func (s *Service) accountInfo(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "get" {
		return xmpp.NewStanzaError(xmpp.CondNotAllowed, "")
	}
	if iq.El.FirstElement().Attr("node") != "" {
		return xmpp.NewStanzaError(xmpp.CondItemNotFound, "no such node")
	}
	s.mu.RLock()
	features := sortedKeys(s.accountFeatures)
	ids := append([]Identity{{Category: "account", Type: "registered"}}, s.accountIDs...)
	s.mu.RUnlock()
	s.router.Result(ctx, iq, infoQuery("", ids, features, nil))
	return nil
}

func (s *Service) accountItems(ctx context.Context, iq *router.Stanza) error {
	if iq.Type() != "get" {
		return xmpp.NewStanzaError(xmpp.CondNotAllowed, "")
	}
	s.router.Result(ctx, iq, xmpp.NewElement(xmpp.NSDiscoItems, "query", "node", iq.El.FirstElement().Attr("node")))
	return nil
}
