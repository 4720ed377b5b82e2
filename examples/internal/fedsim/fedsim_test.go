package fedsim

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func randomUpdates(r *rand.Rand, n, dim int) []Update {
	ups := make([]Update, n)
	for i := range ups {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(r.NormFloat64() * 0.1)
		}
		ups[i] = Update{Client: i, Vector: v, Examples: 100 + 50*i}
	}
	return ups
}

func TestAggregateSecureMatchesPlain(t *testing.T) {
	fleet, err := NewFleet("test", 8)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		drop []int
	}{
		{"all survive", nil},
		{"two drop after sharing keys", []int{2, 5}},
	}
	for round, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ups := randomUpdates(rand.New(rand.NewPCG(1, uint64(round))), fleet.Len(), 1000)
			for _, d := range tt.drop {
				ups[d].Drop = true
			}
			plain, pst, err := (&Aggregator{Fleet: fleet}).Aggregate(round, ups)
			if err != nil {
				t.Fatal(err)
			}
			sec, sst, err := (&Aggregator{Fleet: fleet, Secure: true}).Aggregate(round, ups)
			if err != nil {
				t.Fatal(err)
			}
			want := fleet.Len() - len(tt.drop)
			if pst.Survivors != want || sst.Survivors != want {
				t.Fatalf("survivors: plain %d, secure %d, want %d", pst.Survivors, sst.Survivors, want)
			}
			if pst.Weight != sst.Weight {
				t.Errorf("weight: plain %v, secure %v", pst.Weight, sst.Weight)
			}
			// 16-bit stochastic rounding with clip 1: each input is off by
			// at most 1/32767 per coordinate (scaled by weight/MaxWeight).
			var worst float64
			for i := range plain {
				worst = max(worst, math.Abs(float64(plain[i]-sec[i])))
			}
			if worst > 2e-4 {
				t.Errorf("secure mean differs from plain mean by up to %g", worst)
			}
			if sst.BytesUp <= 4*1000*int64(want) {
				t.Errorf("secure bytes up %d: less than the masked inputs alone", sst.BytesUp)
			}
		})
	}
}

func TestAggregateTooFew(t *testing.T) {
	fleet, err := NewFleet("test", 3)
	if err != nil {
		t.Fatal(err)
	}
	ups := randomUpdates(rand.New(rand.NewPCG(2, 2)), 3, 10)
	for i := range ups {
		ups[i].Drop = true
	}
	if _, _, err := (&Aggregator{Fleet: fleet}).Aggregate(0, ups); !errors.Is(err, ErrNoUpdates) {
		t.Errorf("plain: got %v, want ErrNoUpdates", err)
	}
	if _, _, err := (&Aggregator{Fleet: fleet, Secure: true}).Aggregate(1, ups); err == nil {
		t.Error("secure round with every client gone succeeded")
	}
}
