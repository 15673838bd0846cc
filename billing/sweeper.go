package billing

import (
	"context"
	"log/slog"
	"time"
)

// Sweeper releases holds that outlived their time to live, so a hold never
// outlives the run that placed it even when that run's process died.
type Sweeper struct {
	Ledger   Ledger
	Interval time.Duration // default 30s
	Batch    int           // default 500
	Log      *slog.Logger
}

// SweepOnce expires every hold past its time to live, in batches.
func (s *Sweeper) SweepOnce(ctx context.Context) (int, error) {
	batch := s.Batch
	if batch <= 0 {
		batch = 500
	}
	total := 0
	for {
		expired, err := s.Ledger.ExpireHolds(ctx, batch)
		total += len(expired)
		if err != nil || len(expired) < batch {
			return total, err
		}
	}
}

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.SweepOnce(ctx)
		if s.Log != nil {
			if err != nil && ctx.Err() == nil {
				s.Log.Error("hold sweep failed", "err", err)
			} else if n > 0 {
				s.Log.Info("expired holds", "count", n)
			}
		}
		t.Reset(interval)
	}
}
