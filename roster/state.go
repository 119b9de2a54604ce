// Package roster implements rosters and presence subscriptions (RFC 6121
// §2–3): the roster IQ with versioning (XEP-0237), roster pushes, and the
// subscription state machine for requests sent and received by local users.
package roster

import "wren.im/wren/storage"

// Outcome says what the server must do after a subscription stanza
// changed (or did not change) a roster item.
type Outcome struct {
	// Item is the item after the stanza.
	Item storage.RosterItem
	// Changed means the item must be stored and pushed to the user's
	// interested resources.
	Changed bool
	// Route means the stanza is forwarded to the contact (outbound) or
	// delivered to the user (inbound).
	Route bool
	// AutoReply is a presence type the server sends back to the contact on
	// the user's behalf (inbound "subscribed" for a known subscriber), or "".
	AutoReply string
	// SendPresence means the user's current presence must be sent to the
	// contact (a new subscriber); SendUnavailable means unavailable
	// presence must be sent (a subscription from the contact ended).
	SendPresence, SendUnavailable bool
	// KeepRequest means an inbound request must be stored until answered;
	// DropRequest means a stored request is answered and can be deleted.
	KeepRequest, DropRequest bool
}

func hasTo(s string) bool   { return s == storage.SubTo || s == storage.SubBoth }
func hasFrom(s string) bool { return s == storage.SubFrom || s == storage.SubBoth }

func combine(to, from bool) string {
	switch {
	case to && from:
		return storage.SubBoth
	case to:
		return storage.SubTo
	case from:
		return storage.SubFrom
	}
	return storage.SubNone
}

// Outbound applies a subscription stanza sent by the user to the contact
// (RFC 6121 §3 and Appendix A.2). exists is false when the contact is not
// in the roster; item then holds only the contact's JID. pendingIn tells
// whether an inbound request from the contact waits for an answer.
func Outbound(item storage.RosterItem, exists bool, pendingIn bool, typ string) Outcome {
	if !exists {
		item.Subscription = storage.SubNone
	}
	to, from := hasTo(item.Subscription), hasFrom(item.Subscription)
	o := Outcome{Item: item}
	switch typ {
	case "subscribe":
		o.Route = true
		if !to && !item.AskOut {
			o.Item.AskOut = true
			o.Changed = true
		}
	case "subscribed":
		switch {
		case from:
			// Already subscribed: nothing to approve.
		case pendingIn || item.PendingIn:
			o.Item.Subscription = combine(to, true)
			o.Item.PendingIn = false
			o.Item.Approved = false
			o.Changed, o.Route, o.SendPresence, o.DropRequest = true, true, true, true
		case !item.Approved:
			// Pre-approval (RFC 6121 §3.4).
			o.Item.Approved = true
			o.Changed = true
		}
	case "unsubscribe":
		o.Route = true
		if to || item.AskOut {
			o.Item.Subscription = combine(false, from)
			o.Item.AskOut = false
			o.Changed = exists
		}
	case "unsubscribed":
		switch {
		case from:
			o.Item.Subscription = combine(to, false)
			o.Item.Approved = false
			o.Changed, o.Route, o.SendUnavailable = true, true, true
		case pendingIn || item.PendingIn:
			o.Item.PendingIn = false
			o.Changed = exists
			o.Route, o.DropRequest = true, true
		case item.Approved:
			o.Item.Approved = false
			o.Changed = true
		}
	}
	if !exists && o.Changed && o.Item.Subscription == storage.SubNone && !o.Item.AskOut && !o.Item.Approved && !o.Item.PendingIn {
		// Nothing worth creating an item for.
		o.Changed = false
	}
	return o
}

// Inbound applies a subscription stanza that the contact sent to the user
// (RFC 6121 §3 and Appendix A.3). exists is false when the contact is not
// in the user's roster.
func Inbound(item storage.RosterItem, exists bool, typ string) Outcome {
	if !exists {
		item.Subscription = storage.SubNone
	}
	to, from := hasTo(item.Subscription), hasFrom(item.Subscription)
	o := Outcome{Item: item}
	switch typ {
	case "subscribe":
		switch {
		case from:
			o.AutoReply = "subscribed"
		case exists && item.Approved:
			o.Item.Subscription = combine(to, true)
			o.Item.Approved = false
			o.Changed, o.SendPresence = true, true
			o.AutoReply = "subscribed"
		default:
			o.Route, o.KeepRequest = true, true
			if exists && !item.PendingIn {
				o.Item.PendingIn = true
				o.Changed = true
			}
		}
	case "subscribed":
		if item.AskOut && !to {
			o.Item.Subscription = combine(true, from)
			o.Item.AskOut = false
			o.Changed, o.Route = true, true
		}
	case "unsubscribe":
		if from || item.PendingIn {
			o.Item.Subscription = combine(to, false)
			o.Item.PendingIn = false
			o.Item.Approved = false
			o.Changed, o.Route, o.DropRequest = exists, true, true
			// The former subscriber sees the user go offline (RFC 6121 §3.3.3).
			o.SendUnavailable = from
		} else {
			o.DropRequest = true
		}
	case "unsubscribed":
		if to || item.AskOut {
			o.Item.Subscription = combine(false, from)
			o.Item.AskOut = false
			o.Changed, o.Route = exists, true
		}
	}
	return o
}
