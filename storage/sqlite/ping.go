package sqlite

import (
	"context"
	"fmt"
)

// Ping checks that the database answers a trivial query, for health
// checks. It fails with ErrClosed after Close.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return fmt.Errorf("sqlite: ping: %w", ErrClosed)
	}
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}
