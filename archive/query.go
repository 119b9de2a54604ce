package archive

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/router"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// Page sizes of archive queries.
const (
	// DefaultPage is the page size when the client gives no <max/>.
	DefaultPage = 50
	// MaxPage is the largest page served; a larger <max/> is lowered to
	// it (the <fin/> then says the result is not complete).
	MaxPage = 250
	// maxIDs caps the 'ids' field of one query.
	maxIDs = MaxPage
)

// stampLayout writes XEP-0082 DateTime stamps with microseconds, the
// precision of archive times, so that a stamp used as a start or end
// filter selects exactly the message it came from.
const stampLayout = "2006-01-02T15:04:05.000000Z"

// handleIQ serves the urn:xmpp:mam:2 IQs addressed to a user's account:
// queries, the query form, archive metadata and preferences. Only the
// user may use their archive.
func (s *Service) handleIQ(ctx context.Context, iq *router.Stanza) error {
	if !iq.From.Bare().Equal(iq.To.Bare()) {
		return xmpp.NewStanzaError(xmpp.CondForbidden, "only the owner of an archive may use it")
	}
	el := iq.El.FirstElement()
	typ := iq.Type()
	switch {
	case el.Is(NS, "query") && typ == "set":
		if err := s.settled(ctx); err != nil {
			return fmt.Errorf("waiting for queued archive writes: %w", err)
		}
		return s.query(ctx, iq, el)
	case el.Is(NS, "query") && typ == "get":
		s.router.Result(ctx, iq, queryForm())
		return nil
	case el.Is(NS, "metadata") && typ == "get":
		if err := s.settled(ctx); err != nil {
			return fmt.Errorf("waiting for queued archive writes: %w", err)
		}
		return s.metadata(ctx, iq)
	case el.Is(NS, "prefs"):
		return s.handlePrefs(ctx, iq, el)
	}
	return xmpp.NewStanzaError(xmpp.CondBadRequest, "unknown archive request")
}

// request is a parsed archive query.
type request struct {
	q       storage.ArchiveQuery
	queryID string
	flip    bool
	// countOnly is set by <max>0</max>: the client wants the size of the
	// result set, not items.
	countOnly bool
}

// parseQuery reads a <query/>: its data form, its RSM <set/> and
// <flip-page/>. It returns a stanza error for a malformed query and
// feature-not-implemented for a field or RSM option it does not support.
func parseQuery(el *xmpp.Element) (request, error) {
	r := request{queryID: el.Attr("queryid"), q: storage.ArchiveQuery{Max: DefaultPage}}
	bad := func(text string) error { return xmpp.NewStanzaError(xmpp.CondBadRequest, text) }
	if el.Attr("node") != "" {
		return r, xmpp.NewStanzaError(xmpp.CondItemNotFound, "a user archive has no nodes")
	}
	if x := el.Child(xmpp.NSDataForms, "x"); x != nil {
		if t := x.Attr("type"); t != "submit" && t != "" {
			return r, bad("the query form must be of type submit")
		}
		for _, f := range x.Elements() {
			if !f.Is(xmpp.NSDataForms, "field") {
				continue
			}
			name := f.Attr("var")
			var values []string
			for _, v := range f.Elements() {
				if v.Is(xmpp.NSDataForms, "value") {
					values = append(values, strings.TrimSpace(v.Text()))
				}
			}
			one := ""
			if len(values) > 0 {
				one = values[0]
			}
			switch name {
			case "FORM_TYPE":
				if one != NS {
					return r, bad("the form type must be " + NS)
				}
			case "with":
				if one == "" {
					continue
				}
				j, err := jid.Parse(one)
				if err != nil {
					return r, bad("the with field is not a valid JID")
				}
				r.q.With, r.q.WithResource = j.Bare().String(), j.Resourcepart()
			case "start", "end":
				if one == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339Nano, one)
				if err != nil {
					return r, bad("the " + name + " field is not a XEP-0082 date and time (such as 2025-06-01T12:00:00Z)")
				}
				if name == "start" {
					r.q.Start = t
				} else {
					r.q.End = t
				}
			case "after-id":
				if one != "" {
					r.q.After = append(r.q.After, one)
				}
			case "before-id":
				if one != "" {
					r.q.Before = append(r.q.Before, one)
				}
			case "ids":
				for _, v := range values {
					if v != "" {
						r.q.IDs = append(r.q.IDs, v)
					}
				}
				if len(r.q.IDs) > maxIDs {
					return r, xmpp.NewStanzaError(xmpp.CondPolicyViolation, "too many ids in one query (at most "+strconv.Itoa(maxIDs)+")")
				}
			default:
				return r, xmpp.NewStanzaError(xmpp.CondFeatureNotImplemented, "unsupported query field "+name)
			}
		}
	}
	if set := el.Child(NSRSM, "set"); set != nil {
		for _, c := range set.Elements() {
			switch {
			case c.Is(NSRSM, "max"):
				n, err := strconv.Atoi(strings.TrimSpace(c.Text()))
				if err != nil || n < 0 {
					return r, bad("<max/> must be a non-negative integer")
				}
				if n == 0 {
					r.countOnly = true
				}
				r.q.Max = min(n, MaxPage)
			case c.Is(NSRSM, "after"):
				id := strings.TrimSpace(c.Text())
				if id == "" {
					return r, bad("<after/> needs an archive id")
				}
				r.q.After = append(r.q.After, id)
			case c.Is(NSRSM, "before"):
				r.q.Last = true
				if id := strings.TrimSpace(c.Text()); id != "" {
					r.q.Before = append(r.q.Before, id)
				}
			case c.Is(NSRSM, "index"):
				return r, xmpp.NewStanzaError(xmpp.CondFeatureNotImplemented, "paging by index is not supported; page with <after/> or <before/>")
			}
		}
	}
	r.flip = el.Child(NS, "flip-page") != nil
	return r, nil
}

// query runs an archive query: the matching messages go to the
// requesting session one by one, then the IQ result with <fin/> (the
// session's queue keeps that order).
func (s *Service) query(ctx context.Context, iq *router.Stanza, el *xmpp.Element) error {
	r, err := parseQuery(el)
	if err != nil {
		return err
	}
	user := iq.From.Localpart()
	if r.countOnly {
		n, err := s.store.CountArchive(ctx, user, r.q)
		if err != nil {
			return storageError(err)
		}
		fin := xmpp.NewElement(NS, "fin")
		if n == 0 {
			fin.SetAttr("complete", "true")
		}
		fin.AddChild(NSRSM, "set").AddChild(NSRSM, "count").AppendText(strconv.Itoa(n))
		s.router.Result(ctx, iq, fin)
		return nil
	}
	page, err := s.store.QueryArchive(ctx, user, r.q)
	if err != nil {
		return storageError(err)
	}
	deliver := s.deliverer(iq)
	owner := iq.From.Bare().String()
	for i := range page.Messages {
		m := page.Messages[i]
		if r.flip {
			m = page.Messages[len(page.Messages)-1-i]
		}
		res, err := resultMessage(m, owner, iq.From.String(), r.queryID)
		if err != nil {
			s.log.Error("archived message is corrupt; skipped", "user", user, "id", m.ID, "err", err)
			continue
		}
		deliver(res)
	}
	fin := xmpp.NewElement(NS, "fin")
	if page.Complete {
		fin.SetAttr("complete", "true")
	}
	set := fin.AddChild(NSRSM, "set")
	if n := len(page.Messages); n > 0 {
		set.AddChild(NSRSM, "first").AppendText(page.Messages[0].ID)
		set.AddChild(NSRSM, "last").AppendText(page.Messages[n-1].ID)
	}
	s.router.Result(ctx, iq, fin)
	return nil
}

// deliverer returns how results reach the requester: through its session
// when the query came from one, else routed to its full JID.
func (s *Service) deliverer(iq *router.Stanza) func(*xmpp.Element) {
	if iq.Origin != nil {
		return iq.Origin.Deliver
	}
	return func(el *xmpp.Element) {
		if sess := s.router.Session(iq.From); sess != nil {
			sess.Deliver(el)
		}
	}
}

// resultMessage wraps an archived message for the client (XEP-0313 §4.2).
func resultMessage(m storage.ArchivedMessage, owner, to, queryID string) (*xmpp.Element, error) {
	orig, err := xmpp.ParseElement(m.Stanza)
	if err != nil {
		return nil, err
	}
	msg := xmpp.NewElement(xmpp.NSClient, "message", "from", owner, "to", to, "id", newID(time.Now()))
	res := msg.AddChild(NS, "result", "queryid", queryID, "id", m.ID)
	fwd := res.AddChild(NSForward, "forwarded")
	fwd.AddChild(xmpp.NSDelay, "delay", "stamp", m.Time.UTC().Format(stampLayout))
	fwd.Append(orig)
	return msg, nil
}

// storageError turns a storage error into the stanza error for the client.
func storageError(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return xmpp.NewStanzaError(xmpp.CondItemNotFound, "an archive id of the query is not in the archive")
	}
	return err
}

// metadata answers <metadata/> with the first and last message of the
// archive (XEP-0313 §5), or an empty element for an empty archive.
func (s *Service) metadata(ctx context.Context, iq *router.Stanza) error {
	first, last, err := s.store.ArchiveBounds(ctx, iq.From.Localpart())
	md := xmpp.NewElement(NS, "metadata")
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return err
	default:
		md.AddChild(NS, "start", "id", first.ID, "timestamp", first.Time.UTC().Format(stampLayout))
		md.AddChild(NS, "end", "id", last.ID, "timestamp", last.Time.UTC().Format(stampLayout))
	}
	s.router.Result(ctx, iq, md)
	return nil
}

// queryForm is the form of supported query fields (XEP-0313 §4.1.5).
func queryForm() *xmpp.Element {
	q := xmpp.NewElement(NS, "query")
	x := q.AddChild(xmpp.NSDataForms, "x", "type", "form")
	x.AddChild(xmpp.NSDataForms, "field", "type", "hidden", "var", "FORM_TYPE").AddChild(xmpp.NSDataForms, "value").AppendText(NS)
	x.AddChild(xmpp.NSDataForms, "field", "type", "jid-single", "var", "with")
	x.AddChild(xmpp.NSDataForms, "field", "type", "text-single", "var", "start")
	x.AddChild(xmpp.NSDataForms, "field", "type", "text-single", "var", "end")
	x.AddChild(xmpp.NSDataForms, "field", "type", "text-single", "var", "before-id")
	x.AddChild(xmpp.NSDataForms, "field", "type", "text-single", "var", "after-id")
	ids := x.AddChild(xmpp.NSDataForms, "field", "type", "list-multi", "var", "ids")
	ids.AddChild("http://jabber.org/protocol/xdata-validate", "validate", "datatype", "xs:string").
		AddChild("http://jabber.org/protocol/xdata-validate", "open")
	return q
}
