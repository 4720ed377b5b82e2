package stagedriver_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol/stagedriver"
)

func TestStageBarrier(t *testing.T) {
	var sum int
	s := stagedriver.NewBarrier("masked", []string{"a", "b", "c"}, func(agent string, msg any) error {
		v := msg.(int)
		if v < 0 {
			return errors.New("negative")
		}
		sum += v // streaming: the stage keeps no message
		return nil
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	results := map[string]any{}
	errs := map[string]error{}
	var mu sync.Mutex
	for _, a := range []string{"a", "b"} {
		wg.Add(1)
		go func(a string) {
			defer wg.Done()
			r, err := s.Submit(ctx, a, 5)
			mu.Lock()
			results[a], errs[a] = r, err
			mu.Unlock()
		}(a)
	}
	// A rejected message leaves the agent expected.
	if _, err := s.Submit(ctx, "c", -1); err == nil {
		t.Fatal("rejected message accepted")
	}
	if _, err := s.Submit(ctx, "zed", 1); !errors.Is(err, stagedriver.ErrNotInvited) {
		t.Fatalf("stranger: %v", err)
	}
	arrived, missing := s.Wait(ctx, time.Now().Add(300*time.Millisecond))
	if len(arrived) != 2 || len(missing) != 1 || missing[0] != "c" {
		t.Fatalf("arrived %v missing %v", arrived, missing)
	}
	if sum != 10 {
		t.Fatalf("streamed sum %d", sum)
	}
	if _, err := s.Submit(ctx, "c", 1); !errors.Is(err, stagedriver.ErrStageClosed) {
		t.Fatalf("latecomer: %v", err)
	}
	s.Release(map[string]any{"a": "reply-a"}) // b was dropped by the engine
	wg.Wait()
	if results["a"] != "reply-a" || errs["a"] != nil {
		t.Fatalf("a got %v %v", results["a"], errs["a"])
	}
	if !errors.Is(errs["b"], stagedriver.ErrStageClosed) {
		t.Fatalf("b should learn it was dropped: %v", errs["b"])
	}
}

func TestStageFullReleasesEarly(t *testing.T) {
	s := stagedriver.NewBarrier("adv", []string{"a"}, nil)
	go func() { _, _ = s.Submit(context.Background(), "a", 1) }()
	start := time.Now()
	arrived, _ := s.Wait(context.Background(), time.Now().Add(10*time.Second))
	if len(arrived) != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("stage did not release when full: %v after %v", arrived, time.Since(start))
	}
	s.Fail(errors.New("round finished"))
}

// TestRoundGoneAgentSkipsLaterStages: an agent whose session ended after
// it spoke in one stage is not waited for in any later stage of the round.
func TestRoundGoneAgentSkipsLaterStages(t *testing.T) {
	r := &stagedriver.Round{}
	st := r.Open("advertise_keys", 0, []string{"a", "b"}, nil)
	go func() { _, _ = st.Submit(context.Background(), "a", nil) }()
	r.Withdraw("b") // b's session ends while a stage waits for it
	arrived, missing := st.Wait(context.Background(), time.Now().Add(time.Minute))
	if len(arrived) != 1 || len(missing) != 0 {
		t.Fatalf("stage 1: arrived %v, missing %v", arrived, missing)
	}
	st.Release(map[string]any{"a": nil})
	r.Withdraw("a") // a's session ends between stages
	next := r.Open("share_keys", 0, []string{"a"}, nil)
	start := time.Now()
	if arrived, _ := next.Wait(context.Background(), time.Now().Add(time.Minute)); len(arrived) != 0 || time.Since(start) > time.Second {
		t.Fatalf("stage 2 waited %v for a gone agent (arrived %v)", time.Since(start), arrived)
	}
}
