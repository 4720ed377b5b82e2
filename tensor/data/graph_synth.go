package data

import (
	"fmt"
	"math"

	"github.com/fedge/fedge/tensor"
)

// SBMConfig describes a synthetic node-classification graph: a planted
// partition stochastic block model whose classes show both in the node
// features (noisy class centroids) and in the edges (homophily), so that a
// GCN, which averages features over neighbours, beats a model that sees the
// features alone.
type SBMConfig struct {
	Nodes, Classes, Features int
	// AvgDegree is the expected number of neighbours of a node. If zero, 8.
	AvgDegree float64
	// Homophily is the probability that an edge joins two nodes of the
	// same class. If zero, 0.8.
	Homophily float64
	// Noise is the standard deviation of each feature's Gaussian noise
	// around its class centroid; centroids are drawn from N(0, 1/Features)
	// per feature, so two centroids lie about √2 apart. If zero, 0.8,
	// which leaves features alone weakly informative.
	Noise float64
	Seed  uint64
}

// SyntheticGraph generates a graph with the default SBMConfig: classes of
// equal size (up to one node), average degree 8, homophily 0.8, noise 0.8.
// It needs at least two nodes per class.
// The result depends only on the arguments.
func SyntheticGraph(nodes, classes, features int, seed uint64) (*tensor.Graph, error) {
	return SBMConfig{Nodes: nodes, Classes: classes, Features: features, Seed: seed}.Generate()
}

// Generate draws the graph. Each of the Nodes·AvgDegree/2 edges picks a
// node at random, then, with probability Homophily, a partner of the same
// class, else one of another class; duplicate edges merge.
func (c SBMConfig) Generate() (*tensor.Graph, error) {
	if c.AvgDegree == 0 {
		c.AvgDegree = 8
	}
	if c.Homophily == 0 {
		c.Homophily = 0.8
	}
	if c.Noise == 0 {
		c.Noise = 0.8
	}
	if c.Nodes < 2 || c.Classes < 1 || 2*c.Classes > c.Nodes || c.Features < 1 ||
		!(c.AvgDegree > 0 && c.AvgDegree < float64(c.Nodes)) ||
		!(c.Homophily >= 0 && c.Homophily <= 1) || !(c.Noise > 0) || math.IsInf(c.Noise, 0) ||
		int64(c.Nodes)*int64(c.Features) > DefaultGraphMaxValues ||
		float64(c.Nodes)*c.AvgDegree/2 > DefaultGraphMaxEdges {
		return nil, fmt.Errorf("data.SBMConfig.Generate: invalid config %+v", c)
	}
	if c.Classes == 1 {
		c.Homophily = 1
	}
	rng := newRand(c.Seed)
	n, k, f := c.Nodes, c.Classes, c.Features

	y := make([]int32, n)
	for i := range y {
		y[i] = int32(i % k)
	}
	rng.Shuffle(n, func(i, j int) { y[i], y[j] = y[j], y[i] })
	members := make([][]int32, k)
	for i, l := range y {
		members[l] = append(members[l], int32(i))
	}

	centroid := make([]float64, k*f)
	for i := range centroid {
		centroid[i] = rng.NormFloat64() / math.Sqrt(float64(f))
	}
	x := make([]float32, n*f)
	for i, l := range y {
		for j := range f {
			x[i*f+j] = float32(centroid[int(l)*f+j] + c.Noise*rng.NormFloat64())
		}
	}

	m := int(math.Round(float64(n) * c.AvgDegree / 2))
	edges := make([][2]int32, 0, m)
	for len(edges) < m {
		a := int32(rng.IntN(n))
		la := y[a]
		var b int32
		if rng.Float64() < c.Homophily {
			same := members[la]
			if len(same) < 2 {
				continue
			}
			b = same[rng.IntN(len(same))]
		} else {
			other := rng.IntN(n - len(members[la]))
			// Index into the nodes of the other classes, in class order.
			for l := range members {
				if int32(l) == la {
					continue
				}
				if other < len(members[l]) {
					b = members[l][other]
					break
				}
				other -= len(members[l])
			}
		}
		if a != b {
			edges = append(edges, [2]int32{a, b})
		}
	}
	adj, err := tensor.NormalizeAdjacency(n, edges)
	if err != nil {
		return nil, fmt.Errorf("data.SBMConfig.Generate: %w", err)
	}
	return &tensor.Graph{Adj: adj, X: x, Features: f, Y: y, Classes: k}, nil
}

// SplitGraph cuts g into one subgraph per part, for federated GCN training:
// part c's subgraph has the nodes parts[c] (local node i is g's node
// parts[c][i]), their features and labels, and the edges of g whose both
// ends lie in the part; edges between parts are lost, as they are when
// clients hold disjoint pieces of a graph. Parts must be disjoint and in
// range but need not cover g. The subgraphs keep g's Classes.
func SplitGraph(g *tensor.Graph, parts [][]int) ([]*tensor.Graph, error) {
	n := g.Nodes()
	if g.Adj == nil || g.Adj.Rows != n || len(g.Adj.RowPtr) != n+1 || len(g.X) != n*g.Features ||
		int(g.Adj.RowPtr[n]) != len(g.Adj.ColIdx) {
		return nil, fmt.Errorf("data.SplitGraph: inconsistent graph of %d nodes: %w", n, ErrMismatch)
	}
	part := make([]int32, n)  // part of each node, -1 if none
	local := make([]int32, n) // index within its part
	for i := range part {
		part[i] = -1
	}
	for c, p := range parts {
		for li, v := range p {
			if v < 0 || v >= n {
				return nil, fmt.Errorf("data.SplitGraph: part %d has node %d outside %d: %w", c, v, n, ErrPartition)
			}
			if part[v] >= 0 {
				return nil, fmt.Errorf("data.SplitGraph: node %d in parts %d and %d: %w", v, part[v], c, ErrPartition)
			}
			part[v], local[v] = int32(c), int32(li)
		}
	}
	edges := make([][][2]int32, len(parts))
	for i := range n {
		if part[i] < 0 {
			continue
		}
		lo, hi := g.Adj.RowPtr[i], g.Adj.RowPtr[i+1]
		if lo < 0 || lo > hi || int(hi) > len(g.Adj.ColIdx) {
			return nil, fmt.Errorf("data.SplitGraph: bad adjacency row %d: %w", i, ErrMismatch)
		}
		for _, j := range g.Adj.ColIdx[lo:hi] {
			if j < 0 || int(j) >= n {
				return nil, fmt.Errorf("data.SplitGraph: adjacency column %d outside %d nodes: %w", j, n, ErrMismatch)
			}
			// Each undirected edge appears as (i,j) and (j,i); keep i < j.
			if int(j) > i && part[j] == part[i] {
				edges[part[i]] = append(edges[part[i]], [2]int32{local[i], local[j]})
			}
		}
	}
	out := make([]*tensor.Graph, len(parts))
	f := g.Features
	for c, p := range parts {
		sub := &tensor.Graph{X: make([]float32, len(p)*f), Features: f, Y: make([]int32, len(p)), Classes: g.Classes}
		for li, v := range p {
			copy(sub.X[li*f:(li+1)*f], g.X[v*f:(v+1)*f])
			sub.Y[li] = g.Y[v]
		}
		adj, err := tensor.NormalizeAdjacency(len(p), edges[c])
		if err != nil {
			return nil, fmt.Errorf("data.SplitGraph: %w", err)
		}
		sub.Adj = adj
		out[c] = sub
	}
	return out, nil
}
