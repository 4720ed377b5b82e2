package coordinator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestStageBarrier(t *testing.T) {
	var sum int
	s := newStage("masked", []string{"a", "b", "c"}, func(agent string, msg any) error {
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
			r, err := s.submit(ctx, a, 5)
			mu.Lock()
			results[a], errs[a] = r, err
			mu.Unlock()
		}(a)
	}
	// A rejected message leaves the agent expected.
	if _, err := s.submit(ctx, "c", -1); err == nil {
		t.Fatal("rejected message accepted")
	}
	if _, err := s.submit(ctx, "zed", 1); !errors.Is(err, ErrNotInvited) {
		t.Fatalf("stranger: %v", err)
	}
	arrived, missing := s.wait(ctx, time.Now().Add(300*time.Millisecond))
	if len(arrived) != 2 || len(missing) != 1 || missing[0] != "c" {
		t.Fatalf("arrived %v missing %v", arrived, missing)
	}
	if sum != 10 {
		t.Fatalf("streamed sum %d", sum)
	}
	if _, err := s.submit(ctx, "c", 1); !errors.Is(err, ErrStageClosed) {
		t.Fatalf("latecomer: %v", err)
	}
	s.release(map[string]any{"a": "reply-a"}) // b was dropped by the engine
	wg.Wait()
	if results["a"] != "reply-a" || errs["a"] != nil {
		t.Fatalf("a got %v %v", results["a"], errs["a"])
	}
	if !errors.Is(errs["b"], ErrStageClosed) {
		t.Fatalf("b should learn it was dropped: %v", errs["b"])
	}
}

func TestStageFullReleasesEarly(t *testing.T) {
	s := newStage("adv", []string{"a"}, nil)
	go func() { _, _ = s.submit(context.Background(), "a", 1) }()
	start := time.Now()
	arrived, _ := s.wait(context.Background(), time.Now().Add(10*time.Second))
	if len(arrived) != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("stage did not release when full: %v after %v", arrived, time.Since(start))
	}
	s.fail(ErrRoundFinished)
}

// TestRoundGoneAgentSkipsLaterStages: an agent whose session ended after
// it spoke in one stage is not waited for in any later stage of the round.
func TestRoundGoneAgentSkipsLaterStages(t *testing.T) {
	r := &activeRound{id: 1}
	st := r.open("advertise_keys", 0, []string{"a", "b"}, nil)
	go func() { _, _ = st.submit(context.Background(), "a", nil) }()
	r.withdraw("b") // b's session ends while a stage waits for it
	arrived, missing := st.wait(context.Background(), time.Now().Add(time.Minute))
	if len(arrived) != 1 || len(missing) != 0 {
		t.Fatalf("stage 1: arrived %v, missing %v", arrived, missing)
	}
	st.release(map[string]any{"a": nil})
	r.withdraw("a") // a's session ends between stages
	next := r.open("share_keys", 0, []string{"a"}, nil)
	start := time.Now()
	if arrived, _ := next.wait(context.Background(), time.Now().Add(time.Minute)); len(arrived) != 0 || time.Since(start) > time.Second {
		t.Fatalf("stage 2 waited %v for a gone agent (arrived %v)", time.Since(start), arrived)
	}
}
