package gateway

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"wren.im/wren/push/provider"
	"wren.im/wren/storage"
	"wren.im/wren/xmpp"
)

// content is what a push tells the device.
type content struct {
	count     int
	sender    string
	body      string
	important bool
}

// merge returns c updated by a later notification n: n's summary wins,
// but the push stays important once it was, and keeps the last body (and
// its sender) when n has none, so that the alert still has a text.
func (c content) merge(n content) content {
	out := n
	if out.body == "" && c.body != "" {
		out.body, out.sender = c.body, c.sender
	}
	out.important = c.important || n.important
	return out
}

// outcome is the result of one attempt, as told to the publishers that
// waited for it.
type outcome struct {
	status     string // a storage.Push* outcome
	providerID string
	reason     string
	// serr is the error for the publishers, nil when the push was
	// delivered or will be retried.
	serr *xmpp.StanzaError
}

// waiter receives the outcome of the attempt that carried a notification.
// It must not block.
type waiter func(outcome)

func stoppedOutcome() outcome {
	return outcome{
		status: storage.PushFailed,
		reason: "the push gateway is shutting down",
		serr: &xmpp.StanzaError{Type: xmpp.ErrTypeWait, Condition: xmpp.CondRecipientUnavailable,
			Text: "the push gateway is shutting down; try again later"},
	}
}

type jobState int

const (
	stateQueued   jobState = iota // in the work channel
	stateInFlight                 // a worker is sending it
	stateWaiting                  // in the retry heap
)

// job is the one push pending for a device (coalescing keeps it at one).
// Its fields are guarded by Gateway.mu.
type job struct {
	node  string
	dev   storage.PushDevice
	c     content
	id    string // push id (a UUID, APNs' apns-id)
	first time.Time
	// attempts made, record id (0 before the first attempt's record),
	// notifications merged into this push.
	attempts  int
	record    int64
	coalesced int
	// waiters are answered by the next attempt's outcome.
	waiters []waiter
	state   jobState

	// While in flight: notifications that arrived meanwhile, which the
	// attempt does not carry.
	dirty      bool
	nextC      content
	nextFirst  time.Time
	next       []waiter
	nextMerges int

	due   time.Time // while waiting
	index int       // in the retry heap
}

// recordAt returns j's delivery record for dev, of a push as important as
// given, with an outcome at now.
func (j *job) recordAt(dev storage.PushDevice, important bool, now time.Time, status, providerID, reason string) storage.PushDelivery {
	return storage.PushDelivery{
		ID: j.record, Time: j.first,
		Owner: dev.Owner, DeviceID: dev.DeviceID, Provider: dev.Provider, Node: j.node,
		Outcome: status, ProviderID: providerID, Reason: reason,
		Attempts: j.attempts, Latency: now.Sub(j.first), Important: important, Coalesced: j.coalesced,
	}
}

// enqueue queues a push of c to dev, or merges c into the push already
// pending for dev. w is answered with the outcome of the first attempt
// that carries c (at once when c joins a push waiting for a retry). It
// returns false, without calling w, when the queue is full.
func (g *Gateway) enqueue(dev storage.PushDevice, c content, w waiter) bool {
	now := g.now()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		w(stoppedOutcome())
		return true
	}
	if j := g.jobs[dev.Node]; j != nil {
		j.dev = dev // the latest registration, in case the token changed
		j.c = j.c.merge(c)
		switch j.state {
		case stateQueued:
			j.coalesced++
			j.waiters = append(j.waiters, w)
			g.mu.Unlock()
		case stateInFlight:
			if j.dirty {
				j.nextC = j.nextC.merge(c)
			} else {
				j.dirty, j.nextC, j.nextFirst = true, c, now
			}
			j.nextMerges++
			j.next = append(j.next, w)
			g.mu.Unlock()
		case stateWaiting:
			j.coalesced++
			g.mu.Unlock()
			w(outcome{status: storage.PushRetrying, reason: "merged into a push waiting to be retried"})
		}
		return true
	}
	if len(g.jobs) >= g.cfg.QueueSize {
		g.mu.Unlock()
		return false
	}
	j := &job{node: dev.Node, dev: dev, c: c, id: newPushID(), first: now, waiters: []waiter{w}, state: stateQueued, index: -1}
	g.jobs[dev.Node] = j
	g.work <- j // never blocks: the channel holds at most len(g.jobs) <= QueueSize jobs
	depth := len(g.jobs)
	g.mu.Unlock()
	g.metrics.QueueDepth(depth)
	return true
}

// worker sends queued pushes until Close.
func (g *Gateway) worker() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case j := <-g.work:
			g.attempt(j)
		}
	}
}

// errGone and errNotConfigured end a push without calling a provider.
var (
	errGone          = errors.New("the device was unregistered")
	errNotConfigured = errors.New("the provider is not configured")
)

// attempt makes one attempt of j and moves it on: done, waiting for a
// retry, or queued again with what arrived while it was in flight.
func (g *Gateway) attempt(j *job) {
	g.mu.Lock()
	j.state = stateInFlight
	j.attempts++
	dev, c, pushID, n := j.dev, j.c, j.id, j.attempts
	first, waiters := j.first, j.waiters
	j.waiters = nil
	g.mu.Unlock()

	if n > 1 {
		// The device may have registered a new token or gone since.
		switch d, err := g.store.PushDevice(g.ctx, dev.Node); {
		case err == nil:
			dev = d
		case errors.Is(err, storage.ErrNotFound):
			dev.Token = ""
		}
	}
	var providerID string
	var err error
	switch sender := g.senders[dev.Provider]; {
	case dev.Token == "":
		err = errGone
	case sender == nil:
		err = errNotConfigured
	default:
		providerID, err = g.send(sender, dev, c, pushID, first)
	}
	now := g.now()
	out, due := g.classify(dev, n, now, first, err)
	out.providerID = providerID

	if out.status == storage.PushDeadToken {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), storeTimeout)
		removed, derr := g.store.DeletePushDevice(sctx, dev.Node, dev.Token)
		cancel()
		switch {
		case derr != nil:
			g.log.Error("cannot remove a device whose token is dead; the next push will try again",
				"owner", dev.Owner, "provider", dev.Provider, "device", dev.DeviceID, "err", derr)
		case removed:
			g.log.Info("device token no longer valid: device removed; the app registers again when it next starts",
				"owner", dev.Owner, "provider", dev.Provider, "device", dev.DeviceID, "reason", out.reason)
		}
	}

	g.mu.Lock()
	rec := j.recordAt(dev, c.important, now, out.status, out.providerID, out.reason)
	g.mu.Unlock()
	rec.ID = g.writeRecord(rec)

	g.mu.Lock()
	j.record = rec.ID
	answer := waiters
	switch out.status {
	case storage.PushDelivered:
		if j.dirty {
			// Notifications arrived during the attempt: they make a new
			// push, sent next.
			j.c, j.first, j.waiters = j.nextC, j.nextFirst, j.next
			j.id, j.attempts, j.record, j.coalesced = newPushID(), 0, 0, j.nextMerges-1
			j.clearNext()
			j.state = stateQueued
			g.work <- j // never blocks, see enqueue
		} else {
			delete(g.jobs, j.node)
		}
	case storage.PushRetrying:
		answer = append(answer, j.next...)
		j.coalesced += j.nextMerges
		j.clearNext()
		j.state, j.due = stateWaiting, due
		heap.Push(&g.retries, j)
		select {
		case g.wake <- struct{}{}:
		default:
		}
	default:
		answer = append(answer, j.next...)
		j.clearNext()
		delete(g.jobs, j.node)
	}
	depth := len(g.jobs)
	g.mu.Unlock()

	for _, w := range answer {
		w(out)
	}
	g.metrics.Pushed(dev.Provider, out.status)
	if out.status == storage.PushDelivered {
		g.metrics.Latency(dev.Provider, now.Sub(first))
	}
	g.metrics.QueueDepth(depth)
}

func (j *job) clearNext() {
	j.dirty, j.nextC, j.nextFirst, j.next, j.nextMerges = false, content{}, time.Time{}, nil, 0
}

// send makes one call to the provider, with the request timeout.
func (g *Gateway) send(sender provider.Sender, dev storage.PushDevice, c content, pushID string, first time.Time) (string, error) {
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.RequestTimeout)
	defer cancel()
	return sender.Send(ctx, provider.Push{
		Token:        dev.Token,
		Topic:        dev.Topic,
		Sandbox:      dev.Sandbox,
		Important:    c.important,
		MessageCount: c.count,
		LastSender:   c.sender,
		LastBody:     c.body,
		Expiration:   first.Add(g.cfg.TTL),
		ID:           pushID,
	})
}

// classify turns the result of attempt n into its outcome and, for a
// push to retry, when.
func (g *Gateway) classify(dev storage.PushDevice, n int, now, first time.Time, err error) (outcome, time.Time) {
	name := providerName(dev.Provider)
	switch {
	case err == nil:
		return outcome{status: storage.PushDelivered}, time.Time{}
	case errors.Is(err, errGone):
		return outcome{status: storage.PushFailed, reason: errGone.Error(),
			serr: xmpp.NewStanzaError(xmpp.CondItemNotFound, "the device was unregistered from this push gateway")}, time.Time{}
	case errors.Is(err, errNotConfigured):
		return outcome{status: storage.PushFailed, reason: name + " is not configured on this gateway",
			serr: xmpp.NewStanzaError(xmpp.CondFeatureNotImplemented, "the operator of this push gateway has not configured "+name)}, time.Time{}
	}
	reason := err.Error()
	var perr *provider.Error
	var retryAfter time.Duration
	if errors.As(err, &perr) {
		reason = perr.Reason
		if perr.Status != 0 {
			reason = fmt.Sprintf("%s (HTTP %d)", perr.Reason, perr.Status)
		}
		retryAfter = perr.RetryAfter
	}
	switch provider.KindOf(err) {
	case provider.DeadToken:
		return outcome{status: storage.PushDeadToken, reason: reason,
			serr: xmpp.NewStanzaError(xmpp.CondItemNotFound,
				fmt.Sprintf("%s says the device token is no longer valid (%s); the device was removed from this push gateway", name, reason))}, time.Time{}
	case provider.Permanent:
		g.log.Warn("provider refused a push; if every push fails this way, check the gateway's credentials and the app's topic",
			"provider", dev.Provider, "owner", dev.Owner, "device", dev.DeviceID, "reason", reason)
		return outcome{status: storage.PushFailed, reason: reason,
			serr: &xmpp.StanzaError{Type: xmpp.ErrTypeCancel, Condition: xmpp.CondInternalServerError,
				Text: fmt.Sprintf("%s refused the push: %s", name, reason)}}, time.Time{}
	}
	unavailable := func(reason string) outcome {
		return outcome{status: storage.PushFailed, reason: reason,
			serr: &xmpp.StanzaError{Type: xmpp.ErrTypeWait, Condition: xmpp.CondRecipientUnavailable,
				Text: fmt.Sprintf("%s is unavailable: %s", name, reason)}}
	}
	if g.ctx.Err() != nil {
		return unavailable("the push gateway stopped: " + reason), time.Time{}
	}
	if n >= g.cfg.MaxAttempts {
		g.log.Warn("push given up after its last attempt; is the provider reachable from this host?",
			"provider", dev.Provider, "owner", dev.Owner, "device", dev.DeviceID, "attempts", n, "reason", reason)
		return unavailable(fmt.Sprintf("gave up after %d attempts: %s", n, reason)), time.Time{}
	}
	due := now.Add(g.backoff(n, retryAfter))
	if due.After(first.Add(g.cfg.TTL)) {
		return unavailable("expired before it could be retried: " + reason), time.Time{}
	}
	return outcome{status: storage.PushRetrying, reason: reason}, due
}

// writeRecord adds or updates a delivery record and returns its id (0
// when it could not be added).
func (g *Gateway) writeRecord(rec storage.PushDelivery) int64 {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), storeTimeout)
	defer cancel()
	if rec.ID != 0 {
		if err := g.store.UpdatePushDelivery(ctx, rec); err != nil {
			g.log.Error("cannot update a push delivery record", "owner", rec.Owner, "device", rec.DeviceID, "outcome", rec.Outcome, "err", err)
		}
		return rec.ID
	}
	id, err := g.store.AddPushDelivery(ctx, rec)
	if err != nil {
		g.log.Error("cannot store a push delivery record", "owner", rec.Owner, "device", rec.DeviceID, "outcome", rec.Outcome, "err", err)
		return 0
	}
	return id
}

// retryLoop moves the pushes whose retry is due back to the workers.
func (g *Gateway) retryLoop() {
	defer g.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		g.mu.Lock()
		now := g.now()
		for len(g.retries) > 0 && !g.retries[0].due.After(now) {
			j := heap.Pop(&g.retries).(*job)
			j.state = stateQueued
			g.work <- j // never blocks, see enqueue
		}
		wait := time.Duration(-1)
		if len(g.retries) > 0 {
			wait = g.retries[0].due.Sub(now)
		}
		g.mu.Unlock()
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-g.ctx.Done():
			return
		case <-g.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// retryHeap orders waiting jobs by due time.
type retryHeap []*job

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, k int) bool { return h[i].due.Before(h[k].due) }
func (h retryHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].index, h[k].index = i, k
}

func (h *retryHeap) Push(x any) {
	j := x.(*job)
	j.index = len(*h)
	*h = append(*h, j)
}

func (h *retryHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	j.index = -1
	*h = old[:len(old)-1]
	return j
}
