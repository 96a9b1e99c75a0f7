// Package fanout runs one piece of work per host, a bounded number at a
// time, and keeps one result per host.
//
// # Semantics
//
// [Run] is an [errgroup.Group] with SetLimit, not errgroup.WithContext: one
// host's failure never cancels another host's work. Results are collected
// by index, so they come back in the order of the hosts, whatever order the
// work finished in. The context only governs scheduling: once it is
// cancelled, work not yet started is never started and gets the result
// notStarted gives it, while work already running is waited for (it sees
// the same ctx and decides itself what a cancellation means for it —
// a transaction in flight, for one, finishes its protocol).
package fanout

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// Run calls do(ctx, i) for every i in [0, n), at most limit at a time
// (a limit below 1 counts as 1), and returns the n results in index order
// once every call it started has returned. When ctx is cancelled, no
// further call of do starts: each index not yet started gets
// notStarted(i) instead. do and notStarted are called from many
// goroutines at once; each index gets exactly one of the two.
func Run[T any](ctx context.Context, n, limit int, do func(ctx context.Context, i int) T, notStarted func(i int) T) []T {
	out := make([]T, n)
	var g errgroup.Group
	g.SetLimit(max(1, limit))
	for i := range n {
		if ctx.Err() != nil {
			out[i] = notStarted(i)
			continue
		}
		// Go blocks until a slot is free; ctx may be cancelled meanwhile,
		// so the call checks again once it holds its slot.
		g.Go(func() error {
			if ctx.Err() != nil {
				out[i] = notStarted(i)
				return nil
			}
			out[i] = do(ctx, i)
			return nil
		})
	}
	_ = g.Wait() // every call returns nil: failures are results, not errors
	return out
}
