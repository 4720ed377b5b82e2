package sim

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// TestModelCacheWaitersRetryAFailedDownload: when the download another
// agent started fails, the agents waiting for it download again instead
// of failing with its error.
func TestModelCacheWaitersRetryAFailedDownload(t *testing.T) {
	spec, err := tensor.NamedSpec(tensor.SpecLogReg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	mc := newModelCache()
	release := make(chan struct{})
	var calls atomic.Int32
	errTimeout := errors.New("stream timed out")
	mc.fetch = func(ctx context.Context, _ *protocol.Session, _ uint64, _ protocol.Hash, _ *tensor.Model) (*tensor.Model, error) {
		if calls.Add(1) == 1 {
			<-release
			return nil, errTimeout
		}
		return want, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() { _, err := mc.get(ctx, nil, 2, protocol.Hash{}); first <- err }()
	testutil.WaitFor(t, 10*time.Second, "the first download", func() bool { return calls.Load() == 1 })
	waiter := make(chan error, 1)
	go func() {
		m, err := mc.get(ctx, nil, 2, protocol.Hash{})
		if err == nil && m != want {
			err = errors.New("another model")
		}
		waiter <- err
	}()
	testutil.WaitFor(t, 10*time.Second, "an agent waiting for the download", func() bool { return mc.waiting.Load() == 1 })
	close(release)
	if err := <-first; !errors.Is(err, errTimeout) {
		t.Fatalf("first download: %v, want its own error", err)
	}
	if err := <-waiter; err != nil {
		t.Fatalf("the waiting agent failed with %v; want it to download again", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d downloads, want 2", n)
	}
}
