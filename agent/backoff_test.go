package agent

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
)

// TestBackoffAfterStarting: a coordinator that answers "starting" is
// retried within startingRetry however often it answered so, while other
// failures back off up to backoffMax.
func TestBackoffAfterStarting(t *testing.T) {
	starting := fmt.Errorf("protocol.Dial 127.0.0.1:7001: %w", &protocol.Error{Code: protocol.CodeStarting, Message: "starting, retry"})
	var b backoff
	for i := 0; i < 20; i++ {
		if d := b.after(starting); d > startingRetry {
			t.Fatalf("attempt %d: waits %v after a starting coordinator, want at most %v", i+1, d, startingRetry)
		}
	}
	other := errors.New("timeout: no recent network activity")
	var longest time.Duration
	for i := 0; i < 20; i++ {
		longest = max(longest, b.after(other))
	}
	if longest < backoffMax/2 {
		t.Fatalf("an unreachable coordinator is retried after at most %v, want the backoff to grow toward %v", longest, backoffMax)
	}
}
