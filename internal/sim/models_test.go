package sim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
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

// TestSecAggConfigsShareOneDecoding: the agents of a round share one
// decoded SecAgg+ config (it lists every participant); other bytes for
// the round get a decoding of their own, and old rounds are dropped.
func TestSecAggConfigsShareOneDecoding(t *testing.T) {
	encode := func(round string, n int) []byte {
		cfg := secagg.Config{RoundID: []byte(round), Dim: 4}
		for i := range n {
			pub, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Participants = append(cfg.Participants, secagg.Participant{ID: uint32(i + 1), SigningKey: pub})
		}
		b, err := cfg.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var c secaggConfigs
	raw := encode("r1", 5)
	a, ra, err := c.get(1, raw)
	if err != nil {
		t.Fatal(err)
	}
	b, rb, err := c.get(1, bytes.Clone(raw))
	if err != nil || a != b || ra != rb {
		t.Fatalf("two agents of round 1 got %p and %p (%v); want one shared config", a, b, err)
	}
	if len(a.Participants) != 5 {
		t.Fatalf("%d participants, want 5", len(a.Participants))
	}
	other, _, err := c.get(1, encode("r1", 6))
	if err != nil || other == a || len(other.Participants) != 6 {
		t.Fatalf("other bytes for round 1: %p with %d participants (%v)", other, len(other.Participants), err)
	}
	for r := uint64(2); r <= 4; r++ {
		if _, _, err := c.get(r, encode("r", 3)); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.rounds) != keepConfigs || c.rounds[1] != nil {
		t.Fatalf("cache holds rounds %v, want the latest %d", slices.Collect(maps.Keys(c.rounds)), keepConfigs)
	}
	if _, _, err := c.get(9, []byte("junk")); err == nil {
		t.Fatal("junk decoded")
	}
}
