package api

import "testing"

// TestEndedThrough: a follower of a job moves past ended rounds, stops
// before the first running one, and keeps its mark without rounds.
func TestEndedThrough(t *testing.T) {
	r := func(id uint64, state string) Round { return Round{ID: id, State: state} }
	for _, tc := range []struct {
		rounds []Round
		after  uint64
		want   uint64
	}{
		{nil, 7, 7},
		{[]Round{r(8, RoundCommitted), r(9, RoundFailed)}, 7, 9},
		{[]Round{r(8, RoundCommitted), r(9, RoundRunning), r(10, RoundCommitted)}, 7, 8},
		{[]Round{r(8, RoundRunning)}, 7, 7},
	} {
		if got := EndedThrough(tc.rounds, tc.after); got != tc.want {
			t.Errorf("EndedThrough(%v, %d) = %d, want %d", tc.rounds, tc.after, got, tc.want)
		}
	}
}
