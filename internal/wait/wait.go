package wait

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrTimeout is returned by Until when the timeout passes before the
// condition holds.
var ErrTimeout = errors.New("wait: timed out")

// The pause between two calls of the condition starts at firstPause and
// doubles up to maxPause, or a twentieth of the timeout if that is less: a
// condition that holds soon is seen soon, one that takes seconds (an
// election, a training round) is not asked about more than ten times a
// second, and a short window is still looked at often.
const (
	firstPause = 10 * time.Millisecond
	maxPause   = 100 * time.Millisecond
)

// Until calls cond until it returns true, and then returns nil. It returns
// an error wrapping ErrTimeout when timeout passes first, and ctx's cause
// when ctx ends first. cond is called at least once, on the calling
// goroutine, and never after Until returns.
func Until(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	pause, most := pauses(timeout)
	t := time.NewTimer(pause)
	defer t.Stop()
	for !cond() {
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w after %v", ErrTimeout, timeout)
		}
		t.Reset(min(pause, time.Until(deadline)))
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
		pause = min(2*pause, most)
	}
	return nil
}

// pauses returns Until's first pause between calls of the condition and
// the longest it doubles up to, for a wait of timeout.
func pauses(timeout time.Duration) (first, most time.Duration) {
	return firstPause, min(maxPause, max(timeout/20, firstPause))
}

// Sleep waits d or until ctx ends, and reports whether it waited the
// whole d (false: ctx ended first). Retry loops back off with it.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
