package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// PartitionIID deals the indices 0..n-1 to clients at random: parts differ
// in size by at most one and each part is sorted. The result depends only
// on (n, clients, seed). It panics if clients < 1 or n < 0.
func PartitionIID(n, clients int, seed uint64) [][]int {
	if clients < 1 || n < 0 {
		panic(fmt.Sprintf("data.PartitionIID: n=%d, clients=%d", n, clients))
	}
	perm := newRand(seed).Perm(n)
	parts := make([][]int, clients)
	off := 0
	for c := range clients {
		size := n / clients
		if c < n%clients {
			size++
		}
		parts[c] = perm[off : off+size : off+size]
		slices.Sort(parts[c])
		off += size
	}
	return parts
}

// PartitionPathological is the pathological non-IID split of the FedAvg
// paper (McMahan et al. 2017): sort the examples by label (ties by index),
// cut them into clients·shardsPerClient contiguous shards of equal size, and
// give each client shardsPerClient shards drawn at random without
// replacement. With MNIST's 60,000 examples, 100 clients and 2 shards each,
// every shard holds 300 examples and most clients see only two digits. When
// the shards do not divide len(labels), the first len(labels) mod shards
// shards hold one example more, so every example is dealt.
func PartitionPathological(labels []int32, clients, shardsPerClient int, seed uint64) ([][]int, error) {
	n := len(labels)
	if clients < 1 || shardsPerClient < 1 {
		return nil, fmt.Errorf("data.PartitionPathological: clients=%d, shardsPerClient=%d: %w", clients, shardsPerClient, ErrPartition)
	}
	shards := clients * shardsPerClient
	if shards > n || shards/shardsPerClient != clients {
		return nil, fmt.Errorf("data.PartitionPathological: %d shards of %d examples: %w", shards, n, ErrPartition)
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case labels[a] < labels[b]:
			return -1
		case labels[a] > labels[b]:
			return 1
		}
		return 0
	})
	bounds := make([]int, shards+1) // shard s is order[bounds[s]:bounds[s+1]]
	for s := range shards {
		size := n / shards
		if s < n%shards {
			size++
		}
		bounds[s+1] = bounds[s] + size
	}
	deal := newRand(seed).Perm(shards)
	parts := make([][]int, clients)
	for c := range parts {
		for _, s := range deal[c*shardsPerClient : (c+1)*shardsPerClient] {
			parts[c] = append(parts[c], order[bounds[s]:bounds[s+1]]...)
		}
		slices.Sort(parts[c])
	}
	return parts, nil
}

// maxDirichletDraws bounds PartitionDirichlet's resampling.
const maxDirichletDraws = 1000

// PartitionDirichlet is the label-skewed split of Hsu et al. (2019), as used
// by FedMA and NIID-Bench: for each class, draw client proportions
// p ~ Dir(alpha, ..., alpha) and deal the class's shuffled examples in those
// proportions. The whole draw is repeated while any client holds fewer than
// minSize examples (at most 1000 times, then ErrPartition). Small alpha
// (0.1) gives each client a few dominant classes; large alpha (100) is close
// to IID. Each part is sorted; the result depends only on the arguments.
func PartitionDirichlet(labels []int32, clients int, alpha float64, seed uint64, minSize int) ([][]int, error) {
	n := len(labels)
	if clients < 1 || !(alpha > 0) || math.IsInf(alpha, 0) || minSize < 0 {
		return nil, fmt.Errorf("data.PartitionDirichlet: clients=%d, alpha=%v, minSize=%d: %w", clients, alpha, minSize, ErrPartition)
	}
	if minSize > 0 && clients > n/minSize {
		return nil, fmt.Errorf("data.PartitionDirichlet: %d clients of at least %d out of %d examples: %w", clients, minSize, n, ErrPartition)
	}
	byClass := map[int32][]int{}
	for i, l := range labels {
		byClass[l] = append(byClass[l], i)
	}
	classes := make([]int32, 0, len(byClass))
	for l := range byClass {
		classes = append(classes, l)
	}
	slices.Sort(classes)

	rng := newRand(seed)
	p := make([]float64, clients)
	for range maxDirichletDraws {
		parts := make([][]int, clients)
		for _, l := range classes {
			idx := slices.Clone(byClass[l])
			rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			dirichlet(rng, alpha, p)
			cum, start := 0.0, 0
			for c := range clients {
				cum += p[c]
				end := int(cum * float64(len(idx)))
				if c == clients-1 {
					end = len(idx)
				}
				end = min(max(end, start), len(idx))
				parts[c] = append(parts[c], idx[start:end]...)
				start = end
			}
		}
		if slices.IndexFunc(parts, func(q []int) bool { return len(q) < minSize }) < 0 {
			for _, q := range parts {
				slices.Sort(q)
			}
			return parts, nil
		}
	}
	return nil, fmt.Errorf("data.PartitionDirichlet: no draw in %d gave every client %d examples (alpha=%v): %w", maxDirichletDraws, minSize, alpha, ErrPartition)
}

// dirichlet fills p with a draw from the symmetric Dirichlet(alpha). It
// normalizes Gamma(alpha) draws in log space, so that small alpha, whose
// Gamma draws underflow float64, still gives a proper distribution.
func dirichlet(rng *rand.Rand, alpha float64, p []float64) {
	hi := math.Inf(-1)
	for i := range p {
		p[i] = logGamma(rng, alpha)
		hi = math.Max(hi, p[i])
	}
	var sum float64
	for i := range p {
		p[i] = math.Exp(p[i] - hi)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
}

// logGamma returns the logarithm of a Gamma(alpha, 1) draw, by Marsaglia and
// Tsang's method (2000); for alpha < 1 it draws Gamma(alpha+1) and
// multiplies by U^(1/alpha), in log space.
func logGamma(rng *rand.Rand, alpha float64) float64 {
	boost := 0.0
	if alpha < 1 {
		u := 1 - rng.Float64() // in (0, 1]
		boost = math.Log(u) / alpha
		alpha++
	}
	d := alpha - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return math.Log(d*v) + boost
		}
	}
}
