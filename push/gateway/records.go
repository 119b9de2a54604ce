package gateway

import (
	"context"
	"fmt"
	"time"

	"wren.im/wren/storage"
)

// warnInterval spaces out repeated warnings about the same condition.
const warnInterval = time.Minute

// Records returns the delivery records matching f, newest first, for the
// admin command line. f.Owner may be any JID of the owner.
func (g *Gateway) Records(ctx context.Context, f storage.PushDeliveryFilter) ([]storage.PushDelivery, error) {
	if f.Owner != "" {
		owner, err := bareOwner(f.Owner)
		if err != nil {
			return nil, err
		}
		f.Owner = owner
	}
	recs, err := g.store.PushDeliveries(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("push gateway records: %w", err)
	}
	return recs, nil
}

// Devices returns the devices an owner (any JID of the account)
// registered, oldest first. They include the publish secrets.
func (g *Gateway) Devices(ctx context.Context, owner string) ([]storage.PushDevice, error) {
	bare, err := bareOwner(owner)
	if err != nil {
		return nil, err
	}
	devs, err := g.store.PushDevices(ctx, bare)
	if err != nil {
		return nil, fmt.Errorf("push gateway devices: %w", err)
	}
	return devs, nil
}

// TestResult is the outcome of a test push to one device.
type TestResult struct {
	Device storage.PushDevice
	// Outcome is a storage.Push* outcome of the first attempt, or
	// "timeout" when ctx ended before it was known.
	Outcome string
	// ProviderID is the provider's id of a delivered push; Reason says
	// why another was not delivered.
	ProviderID string
	Reason     string
	// Latency is the time from queueing to the outcome.
	Latency time.Duration
}

// TestMessage is the body of the test push.
const TestMessage = "Wren test push"

// Test sends an important test push (one message, body TestMessage) to
// every device that owner (any JID of the account) registered and waits
// for the outcome of each first attempt, or for ctx to end (give it a
// deadline). The pushes go through the queue and are recorded like any
// other. Start must have been called.
func (g *Gateway) Test(ctx context.Context, owner string) ([]TestResult, error) {
	devs, err := g.Devices(ctx, owner)
	if err != nil {
		return nil, err
	}
	c := content{count: 1, body: TestMessage, important: true}
	results := make([]TestResult, len(devs))
	waits := make([]chan outcome, len(devs))
	start := g.now()
	for i, dev := range devs {
		results[i].Device = dev
		ch := make(chan outcome, 1)
		if !g.enqueue(dev, c, func(o outcome) { ch <- o }) {
			g.dropped(ctx, dev, c)
			ch <- outcome{status: storage.PushDroppedQueueFull, reason: "queue full"}
		}
		waits[i] = ch
	}
	for i, ch := range waits {
		select {
		case o := <-ch:
			results[i].Outcome, results[i].ProviderID, results[i].Reason = o.status, o.providerID, o.reason
		case <-ctx.Done():
			results[i].Outcome, results[i].Reason = "timeout", ctx.Err().Error()
		}
		results[i].Latency = g.now().Sub(start)
	}
	return results, nil
}

// Cleanup removes the delivery records older than the retention and
// returns how many it removed.
func (g *Gateway) Cleanup(ctx context.Context) int {
	olderThan := g.now().Add(-g.cfg.RecordRetention)
	total := 0
	for {
		n, err := g.store.TrimPushDeliveries(ctx, olderThan, trimBatch)
		if err != nil {
			if ctx.Err() == nil {
				g.log.Error("push delivery record cleanup failed; will retry at the next interval", "err", err)
			}
			break
		}
		total += n
		if n < trimBatch || ctx.Err() != nil {
			break
		}
	}
	if total > 0 {
		g.log.Info("removed old push delivery records", "records", total, "retention", g.cfg.RecordRetention)
	}
	return total
}

// cleanupLoop applies the record retention at start and then every
// CleanupInterval until Close.
func (g *Gateway) cleanupLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.CleanupInterval)
	defer t.Stop()
	for {
		g.Cleanup(g.ctx)
		select {
		case <-t.C:
		case <-g.ctx.Done():
			return
		}
	}
}
