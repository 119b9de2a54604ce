package archive

import (
	"context"
	"time"
)

// trimBatch is how many messages one cleanup write removes at most, so
// that the single database writer is never held for long.
const trimBatch = 1000

// Start runs retention (archive.retention, archive.max_per_user) in a
// goroutine owned by the service: once now, then every cleanup interval,
// until Close. It does nothing when no limit is configured.
func (s *Service) Start() {
	if s.cfg.Retention <= 0 && s.cfg.MaxPerUser <= 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.cfg.CleanupInterval)
		defer t.Stop()
		for {
			s.Cleanup(s.ctx)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				return
			}
		}
	}()
}

// Close stops the retention goroutine and waits for it. It is idempotent.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Cleanup applies the retention limits to every archive once and returns
// the number of messages removed. It stops early when ctx is done.
func (s *Service) Cleanup(ctx context.Context) int {
	var olderThan time.Time
	if s.cfg.Retention > 0 {
		olderThan = s.now().Add(-s.cfg.Retention)
	}
	if olderThan.IsZero() && s.cfg.MaxPerUser <= 0 {
		return 0
	}
	start := time.Now()
	users, err := s.store.ListAccounts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("archive cleanup cannot list accounts; will retry at the next interval", "err", err)
		}
		return 0
	}
	total, trimmed := 0, 0
	for _, user := range users {
		n := 0
		for {
			removed, err := s.store.TrimArchive(ctx, user, olderThan, s.cfg.MaxPerUser, trimBatch)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("archive cleanup failed for a user; will retry at the next interval", "user", user, "err", err)
				}
				break
			}
			n += removed
			if removed < trimBatch {
				break
			}
		}
		if n > 0 {
			trimmed++
			total += n
		}
		if ctx.Err() != nil {
			break
		}
	}
	if total > 0 {
		s.log.Info("archive cleanup removed old messages", "messages", total, "archives", trimmed,
			"retention", s.cfg.Retention, "max_per_user", s.cfg.MaxPerUser, "took", time.Since(start).Round(time.Millisecond))
	}
	return total
}
