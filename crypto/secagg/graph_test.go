package secagg

import (
	"math"
	"testing"
)

func TestGraph(t *testing.T) {
	tests := []struct{ n, k, wantK int }{
		{3, 0, 2}, {5, 0, 4}, {10, 0, 8}, {100, 0, 14}, {1000, 0, 20},
		{20, 3, 4}, {20, 19, 19}, {20, 50, 19}, {21, 19, 20}, {7, 5, 6},
	}
	for _, tt := range tests {
		c := &Config{RoundID: []byte("g"), Neighbours: tt.k, Dim: 1}
		p, err := c.kt(tt.n)
		if err != nil {
			t.Fatalf("n=%d k=%d: %v", tt.n, tt.k, err)
		}
		if p.k != tt.wantK {
			t.Fatalf("n=%d k=%d: effective k %d, want %d", tt.n, tt.k, p.k, tt.wantK)
		}
		adj := make([]map[int]bool, tt.n)
		for i := range tt.n {
			nb := p.neighbours(i)
			if len(nb) != p.k {
				t.Fatalf("n=%d k=%d: node %d has degree %d", tt.n, p.k, i, len(nb))
			}
			adj[i] = map[int]bool{}
			for _, j := range nb {
				if j == i || adj[i][j] {
					t.Fatalf("n=%d: node %d: self loop or repeated neighbour %d", tt.n, i, j)
				}
				adj[i][j] = true
			}
		}
		set := make([]bool, tt.n)
		for i := 0; i < tt.n; i += 2 {
			set[i] = true
		}
		total := (tt.n + 1) / 2
		for i := range tt.n {
			c := 0
			for j := range tt.n {
				if adj[i][j] != p.g.adjacent(i, j) {
					t.Fatalf("adjacent(%d,%d) disagrees with neighbours", i, j)
				}
				if adj[i][j] != adj[j][i] {
					t.Fatalf("graph not symmetric at %d,%d", i, j)
				}
				if adj[i][j] && set[j] {
					c++
				}
			}
			if got := p.g.count(i, set, total); got != c {
				t.Fatalf("count(%d) = %d, want %d", i, got, c)
			}
		}
	}
}

// TestGraphSeed: the graph is a function of the seed alone, and different
// seeds give different graphs.
func TestGraphSeed(t *testing.T) {
	g1 := newGraph(200, 12, [32]byte{1})
	g2 := newGraph(200, 12, [32]byte{1})
	g3 := newGraph(200, 12, [32]byte{2})
	same, diff := true, false
	for i := range 200 {
		a, b, c := g1.neighbours(i), g2.neighbours(i), g3.neighbours(i)
		for k := range a {
			same = same && a[k] == b[k]
			diff = diff || a[k] != c[k]
		}
	}
	if !same || !diff {
		t.Fatalf("same seed equal: %v, other seed different: %v", same, diff)
	}
	// a random relabelling: node 0's neighbours are not just 1..6 and n-6..n-1
	ring := 0
	for _, j := range g1.neighbours(0) {
		if j <= 6 || j >= 194 {
			ring++
		}
	}
	if ring == 12 {
		t.Fatal("graph is the unpermuted ring")
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() *Config { return &Config{RoundID: []byte("r"), Dim: 4} }
	tests := []struct {
		name string
		mod  func(c *Config)
		n    int
		ok   bool
	}{
		{"defaults", func(c *Config) {}, 10, true},
		{"two participants", func(c *Config) {}, 2, false},
		{"no round id", func(c *Config) { c.RoundID = nil }, 10, false},
		{"long round id", func(c *Config) { c.RoundID = make([]byte, 65) }, 10, false},
		{"zero dim", func(c *Config) { c.Dim = 0 }, 10, false},
		{"threshold not a majority", func(c *Config) { c.Neighbours = 9; c.Threshold = 5 }, 10, false},
		{"threshold majority", func(c *Config) { c.Neighbours = 9; c.Threshold = 6 }, 10, true},
		{"threshold above k+1", func(c *Config) { c.Neighbours = 9; c.Threshold = 11 }, 10, false},
		{"threshold k+1", func(c *Config) { c.Neighbours = 9; c.Threshold = 10 }, 10, true},
		{"min survivors below t", func(c *Config) { c.MinSurvivors = 2 }, 10, false},
		{"min survivors n", func(c *Config) { c.MinSurvivors = 10 }, 10, true},
		{"negative k", func(c *Config) { c.Neighbours = -1 }, 10, false},
		{"quantizer overflow", func(c *Config) { c.Quantizer = &Quantizer{Clip: 1, Bits: 30} }, 10, false},
		{"quantizer ok", func(c *Config) { c.Quantizer = &Quantizer{Clip: 1, Bits: 16, MaxWeight: 1000} }, 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(c)
			_, err := c.kt(tt.n)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	// duplicate IDs and bad keys
	c := base()
	c.Participants = []Participant{{1, make([]byte, 32)}, {2, make([]byte, 32)}, {1, make([]byte, 32)}}
	if err := c.Validate(); err == nil {
		t.Fatal("duplicate IDs accepted")
	}
	c.Participants[2] = Participant{3, make([]byte, 31)}
	if err := c.Validate(); err == nil {
		t.Fatal("short signing key accepted")
	}
	c.Participants[2] = Participant{3, make([]byte, 32)}
	r, err := c.Resolve()
	if err != nil || r.Neighbours != 2 || r.Threshold != 2 || r.MinSurvivors != 2 {
		t.Fatalf("Resolve = %+v, %v", r, err)
	}
}

func TestNeighboursForDropout(t *testing.T) {
	tests := []struct {
		n          int
		drop, fail float64
		lo, hi     int
	}{
		{1000, 0, 1e-3, 20, 20},
		{1000, 0.1, 1e-3, 20, 24},
		{1000, 0.3, 1e-3, 122, 140}, // binomial tails: k=120 gives 2.1e-3, k=140 3.4e-4
		{5, 0.3, 1e-3, 4, 4},
		{1000, 0.5, 1e-3, 999, 999},
		{65536, 0.45, 1e-6, 1000, 65535},
	}
	for _, tt := range tests {
		k := NeighboursForDropout(tt.n, tt.drop, tt.fail)
		if k < tt.lo || k > tt.hi {
			t.Errorf("NeighboursForDropout(%d, %v, %v) = %d, want %d..%d", tt.n, tt.drop, tt.fail, k, tt.lo, tt.hi)
		}
		if k < tt.n-1 && dropoutFailure(tt.n, k, tt.drop) > tt.fail {
			t.Errorf("k=%d does not meet the bound", k)
		}
	}
	// binomialBelow against a direct sum
	if got, want := binomialBelow(4, 0.5, 2), 5.0/16; math.Abs(got-want) > 1e-12 {
		t.Fatalf("P(Bin(4,.5) < 2) = %v, want %v", got, want)
	}
}
