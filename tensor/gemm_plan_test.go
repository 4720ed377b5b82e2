package tensor

import "testing"

// newTestProblem describes op(A)·op(B) for plan and packing tests; the
// operands are not needed to plan.
func newTestProblem(transA, transB bool, m, n, k int) gemmProblem {
	p := gemmProblem{m: m, n: n, k: k, rsA: k, csA: 1, rsB: n, csB: 1, rsC: n, csC: 1}
	if transA {
		p.rsA, p.csA = 1, m
	}
	if transB {
		p.rsB, p.csB = 1, k
	}
	return p
}

func TestGemmPlanOrientation(t *testing.T) {
	tests := []struct {
		name           string
		transA, transB bool
		m, n, k        int
		wantSwapped    bool
	}{
		// dX = dY·Wᵀ at batch 16: transposing all of W into panels would
		// cost as much as the product, so Cᵀ = W·dYᵀ reads W in place.
		{"dense-dX-batch16", false, true, 16, 300, 300, true},
		{"square", false, false, 512, 512, 512, false},
		{"square-transposed-B", false, true, 512, 512, 512, false},
		{"conv-forward", false, false, 9800, 64, 800, false},
	}
	kernelSets := [][]*gemmKernel{defaultKernels, {genericKernel}}
	for _, tt := range tests {
		for _, ks := range kernelSets {
			t.Run(tt.name+"/"+ks[0].name, func(t *testing.T) {
				p := newTestProblem(tt.transA, tt.transB, tt.m, tt.n, tt.k)
				p.plan(ks, gemmAuto)
				if swapped := p.csC != 1; swapped != tt.wantSwapped {
					t.Fatalf("swapped = %v, want %v", swapped, tt.wantSwapped)
				}
				if p.kern == nil {
					t.Fatal("no kernel chosen")
				}
				// The swap must keep the product: Cᵀ is n×m.
				if tt.wantSwapped && (p.m != tt.n || p.n != tt.m || p.rsC != 1 || p.csC != tt.n) {
					t.Fatalf("swapped problem m=%d n=%d rsC=%d csC=%d", p.m, p.n, p.rsC, p.csC)
				}
			})
		}
	}
}

func TestGemmPlanForcedOrientation(t *testing.T) {
	for _, o := range []gemmOrient{gemmNormal, gemmSwapped} {
		p := newTestProblem(false, true, 16, 300, 300)
		p.plan(defaultKernels, o)
		if swapped := p.csC != 1; swapped != (o == gemmSwapped) {
			t.Fatalf("orient %d: swapped = %v", o, swapped)
		}
	}
}

func TestGemmPacking(t *testing.T) {
	tests := []struct {
		name         string
		transB       bool
		rows, cols   int
		wantA, wantB bool
	}{
		{"small-in-place", false, 64, 200, false, false},
		{"transposed-B-always-packed", true, 64, 200, false, true},
		{"large-packed", false, 1024, 1024, true, true},
		{"tall-narrow", false, 9800, 64, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProblem(false, tt.transB, tt.rows, tt.cols, 100)
			p.kern = genericKernel
			a, b := p.packing(tt.rows, tt.cols)
			if a != tt.wantA || b != tt.wantB {
				t.Fatalf("packing = %v, %v, want %v, %v", a, b, tt.wantA, tt.wantB)
			}
		})
	}
}

// TestGemmWorkers checks the split: tiny products stay on the caller, big
// ones use every worker allowed, never more than there are tiles.
func TestGemmWorkers(t *testing.T) {
	tests := []struct {
		name    string
		m, n, k int
		max     int
		want    int
	}{
		{"tiny", 10, 10, 200, 8, 1},
		{"big", 512, 512, 512, 2, 2},
		{"gomaxprocs-1", 512, 512, 512, 1, 1},
		{"few-tiles", 4, 4, 1 << 20, 8, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProblem(false, false, tt.m, tt.n, tt.k)
			p.kern = genericKernel
			if got := p.workers(tt.max, 0); got != tt.want {
				t.Fatalf("workers = %d, want %d", got, tt.want)
			}
		})
	}
}
