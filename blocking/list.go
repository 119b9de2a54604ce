package blocking

import (
	"mellium.im/xmpp/jid"
)

// list is one user's blocklist as the filter uses it. A nil *list is the
// empty list: most users block nobody, and the cache keeps them as nil.
type list struct {
	items []string            // normalised JIDs, in the order they were blocked
	set   map[string]struct{} // the same, for matching
}

// newList returns the list holding items, or nil when there are none.
func newList(items []string) *list {
	if len(items) == 0 {
		return nil
	}
	l := &list{items: items, set: make(map[string]struct{}, len(items))}
	for _, it := range items {
		l.set[it] = struct{}{}
	}
	return l
}

// len returns the number of blocked JIDs.
func (l *list) len() int {
	if l == nil {
		return 0
	}
	return len(l.items)
}

// has reports whether item (a normalised JID) is on the list itself.
func (l *list) has(item string) bool {
	if l == nil {
		return false
	}
	_, ok := l.set[item]
	return ok
}

// matches reports whether the list blocks entity. An item matches as in
// XEP-0191 §6 (the XEP-0016 rules), tried in this order:
//
//   - user@domain/resource: only that full JID;
//   - user@domain: the bare JID and every resource of it;
//   - domain/resource: that resource at the domain itself, and the same
//     resource of any user at the domain;
//   - domain: the domain and every JID at it (not its subdomains).
func (l *list) matches(entity jid.JID) bool {
	if l == nil {
		return false
	}
	d, lp, rp := entity.Domainpart(), entity.Localpart(), entity.Resourcepart()
	if d == "" {
		return false
	}
	if lp != "" {
		bare := lp + "@" + d
		if rp != "" && l.has(bare+"/"+rp) {
			return true
		}
		if l.has(bare) {
			return true
		}
	}
	if rp != "" && l.has(d+"/"+rp) {
		return true
	}
	return l.has(d)
}

// with returns a new list holding l's items followed by those of add that
// l does not hold, and the ones it added.
func (l *list) with(add []string) (*list, []string) {
	var items, added []string
	if l != nil {
		items = append(items, l.items...)
	}
	seen := make(map[string]bool, len(add))
	for _, a := range add {
		if !l.has(a) && !seen[a] {
			seen[a] = true
			items = append(items, a)
			added = append(added, a)
		}
	}
	return newList(items), added
}

// without returns a new list holding l's items except those of remove,
// and the ones it removed.
func (l *list) without(remove []string) (*list, []string) {
	if l == nil {
		return nil, nil
	}
	drop := make(map[string]bool, len(remove))
	for _, r := range remove {
		drop[r] = true
	}
	var items, removed []string
	for _, it := range l.items {
		if drop[it] {
			removed = append(removed, it)
		} else {
			items = append(items, it)
		}
	}
	return newList(items), removed
}
