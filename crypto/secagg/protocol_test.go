package secagg

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// randomTrial draws n, k, t, D and a dropout schedule touching every stage.
func randomTrial(tb testing.TB, rng *rand.Rand, maxN int) *sim {
	n := 3 + rng.IntN(maxN-2)
	k := 0 // default
	switch rng.IntN(4) {
	case 0:
		if n <= 40 { // classic SecAgg is quadratic: keep it small
			k = n - 1
		}
	case 1:
		k = 2 + rng.IntN(min(n-2, 30))
	}
	p, err := (&Config{RoundID: []byte{1}, Participants: make([]Participant, n), Neighbours: k, Dim: 1}).kt(n)
	if err != nil {
		tb.Fatal(err)
	}
	// the default threshold, or any valid one: 2t > k+1, t <= k+1
	thr := p.t
	if rng.IntN(3) == 0 {
		lo := (p.k+1)/2 + 1
		thr = lo + rng.IntN(p.k+1-lo+1)
	}
	s := newSim(tb, rng, n, k, thr, 1+rng.IntN(70))
	// dropouts spread over the stages: light (up to 15%, the common case),
	// heavy (up to n - t, which classic SecAgg always survives) or beyond
	// n - t (which must fail), sometimes none
	var budget int
	switch r := rng.IntN(8); {
	case r < 4:
		budget = n * 15 / 100
	case r < 6:
		budget = n - thr
	case r < 7:
		budget = n
	}
	perm := rng.Perm(n)
	used := 0
	for stage := 0; stage < 5; stage++ {
		take := 0
		if budget-used > 0 {
			take = rng.IntN(budget - used + 1)
			if stage < 4 {
				take /= 2
			}
		}
		for range take {
			s.drop[s.ids[perm[used]]] = stage
			used++
		}
	}
	return s
}

// kt resolves k and t for a config whose participants are placeholders.
func (c *Config) kt(n int) (*params, error) {
	cp := *c
	cp.Participants = nil
	for i := range n {
		key := make([]byte, 32)
		cp.Participants = append(cp.Participants, Participant{ID: uint32(i), SigningKey: key})
	}
	return cp.compile()
}

func TestProtocolProperty(t *testing.T) {
	trials, maxN := 120, 300
	if testing.Short() {
		trials, maxN = 30, 300
	}
	rng := rand.New(rand.NewPCG(2017, 2020))
	var ok, failed int
	for trial := range trials {
		mn := maxN
		if trial%5 != 0 {
			mn = 80 // most trials small, every fifth up to maxN
		}
		s := randomTrial(t, rng, mn)
		p, _ := s.cfg.compile()
		want, u3 := s.oracle()
		res, se := s.run()
		if want != (se.err == nil) {
			t.Fatalf("trial %d (n=%d k=%d t=%d drops=%d): oracle says success=%v, run ended at stage %d: %v",
				trial, len(s.ids), p.k, p.t, len(s.drop), want, se.stage, se.err)
		}
		if se.err != nil {
			if !errors.Is(se.err, ErrTooFewSurvivors) {
				t.Fatalf("trial %d: failure is not ErrTooFewSurvivors: %v", trial, se.err)
			}
			if s.srv.Stage() != StageFailed {
				t.Fatalf("trial %d: server at stage %v after failure", trial, s.srv.Stage())
			}
			failed++
			continue
		}
		ok++
		if !slices.Equal(res.Survivors, s.accepted) || !slices.Equal(res.Survivors, u3) {
			t.Fatalf("trial %d: survivors %v, accepted %v, oracle %v", trial, res.Survivors, s.accepted, u3)
		}
		if want := s.plainSum(res.Survivors); !slices.Equal(res.Sum, want) {
			t.Fatalf("trial %d (n=%d k=%d t=%d drops=%d): unmasked sum differs from the plain sum of %d survivors",
				trial, len(s.ids), p.k, p.t, len(s.drop), len(res.Survivors))
		}
	}
	t.Logf("%d trials: %d exact sums, %d ErrTooFewSurvivors", trials, ok, failed)
	if ok < trials/3 || failed == 0 {
		t.Fatalf("trial mix is degenerate: %d successes, %d failures", ok, failed)
	}
}

// TestDropoutBoundary: in classic SecAgg, losing n-t clients during
// unmasking still recovers the sum; losing one more fails, and so does
// losing too many at each earlier stage.
func TestDropoutBoundary(t *testing.T) {
	const n, thr = 9, 5
	tests := []struct {
		name  string
		stage int
		drops int
		ok    bool
	}{
		{"unmask n-t", 4, n - thr, true},
		{"unmask n-t+1", 4, n - thr + 1, false},
		{"consistency n-t", 3, n - thr, true},
		{"consistency n-t+1", 3, n - thr + 1, false},
		{"masked input n-t", 2, n - thr, true},
		{"masked input n-t+1", 2, n - thr + 1, false},
		{"share n-t", 1, n - thr, true},
		{"share n-t+1", 1, n - thr + 1, false},
		{"advertise n-t", 0, n - thr, true},
		{"advertise n-t+1", 0, n - thr + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tt.stage), uint64(tt.drops)))
			s := newSim(t, rng, n, n-1, thr, 33)
			for _, id := range s.ids[:tt.drops] {
				s.drop[id] = tt.stage
			}
			res, se := s.run()
			if tt.ok {
				if se.err != nil {
					t.Fatalf("round failed: %v", se.err)
				}
				if !slices.Equal(res.Sum, s.plainSum(res.Survivors)) {
					t.Fatal("sum differs from plain sum")
				}
				wantSurv := n
				if tt.stage <= 2 {
					wantSurv = n - tt.drops
				}
				if len(res.Survivors) != wantSurv {
					t.Fatalf("%d survivors, want %d", len(res.Survivors), wantSurv)
				}
				return
			}
			if !errors.Is(se.err, ErrTooFewSurvivors) {
				t.Fatalf("want ErrTooFewSurvivors, got stage %d: %v", se.stage, se.err)
			}
			if errors.Is(s.srv.Err(), ErrTooFewSurvivors) == false {
				t.Fatalf("Server.Err = %v", s.srv.Err())
			}
			if _, err := s.srv.Finish(); !errors.Is(err, ErrTooFewSurvivors) {
				t.Fatalf("Finish after failure: %v", err)
			}
		})
	}
}
