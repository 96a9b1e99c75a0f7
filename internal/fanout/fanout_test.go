package fanout

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunLimitAndOrder(t *testing.T) {
	for _, tc := range []struct{ n, limit, want int }{
		{n: 50, limit: 4, want: 4},
		{n: 3, limit: 10, want: 3},
		{n: 5, limit: 0, want: 1}, // below 1 counts as 1
		{n: 0, limit: 3, want: 0},
	} {
		t.Run(fmt.Sprintf("n%d_limit%d", tc.n, tc.limit), func(t *testing.T) {
			var running, peak atomic.Int32
			got := Run(context.Background(), tc.n, tc.limit, func(_ context.Context, i int) string {
				r := running.Add(1)
				for {
					p := peak.Load()
					if r <= p || peak.CompareAndSwap(p, r) {
						break
					}
				}
				// later indexes finish first, so order cannot come from timing
				time.Sleep(2*time.Millisecond + time.Duration(tc.n-i)*100*time.Microsecond)
				running.Add(-1)
				return fmt.Sprint("r", i)
			}, func(i int) string { t.Errorf("index %d not started without a cancel", i); return "" })
			if len(got) != tc.n {
				t.Fatalf("%d results, want %d", len(got), tc.n)
			}
			for i, r := range got {
				if r != fmt.Sprint("r", i) {
					t.Errorf("result %d = %q, want r%d", i, r, i)
				}
			}
			if int(peak.Load()) != tc.want {
				t.Errorf("peak concurrency %d, want %d", peak.Load(), tc.want)
			}
		})
	}
}

// A failing host does not stop the others (no errgroup.WithContext).
func TestRunFailureDoesNotCancelOthers(t *testing.T) {
	got := Run(context.Background(), 6, 2, func(ctx context.Context, i int) error {
		if i == 0 {
			return fmt.Errorf("host %d failed", i)
		}
		time.Sleep(time.Millisecond)
		return ctx.Err()
	}, func(i int) error { return fmt.Errorf("%d not started", i) })
	for i, err := range got {
		if (i == 0) != (err != nil) {
			t.Errorf("result %d = %v", i, err)
		}
	}
}

// Cancelling ctx: the calls in flight finish (and see the cancel), the
// ones not started never start and get notStarted's result.
func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n, limit = 10, 3
	started := make(chan int, n)
	release := make(chan struct{})
	var mu sync.Mutex
	ran := map[int]bool{}
	done := make(chan []string)
	go func() {
		done <- Run(ctx, n, limit, func(ctx context.Context, i int) string {
			mu.Lock()
			ran[i] = true
			mu.Unlock()
			started <- i
			<-release
			if ctx.Err() != nil {
				return "finished after cancel"
			}
			return "finished"
		}, func(i int) string { return "not started" })
	}()
	for range limit {
		<-started
	}
	cancel()
	close(release)
	got := <-done
	inFlight, skipped := 0, 0
	for i, r := range got {
		switch r {
		case "finished after cancel":
			inFlight++
			if !ran[i] {
				t.Errorf("index %d reported in flight but never ran", i)
			}
		case "not started":
			skipped++
			if ran[i] {
				t.Errorf("index %d ran after the cancel", i)
			}
		default:
			t.Errorf("result %d = %q", i, r)
		}
	}
	if inFlight != limit || skipped != n-limit {
		t.Errorf("%d in flight and %d not started, want %d and %d: %q", inFlight, skipped, limit, n-limit, got)
	}
}

func TestRunCancelledBefore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := Run(ctx, 4, 2, func(context.Context, int) bool { t.Error("started after the cancel"); return true },
		func(int) bool { return false })
	if len(got) != 4 {
		t.Fatalf("%d results, want 4", len(got))
	}
}
