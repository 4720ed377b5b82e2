package tensor

import (
	"fmt"
	"math"
	"sort"
)

// CSR is a sparse matrix in compressed sparse row form: the non-zeros of row
// i are Val[RowPtr[i]:RowPtr[i+1]] at columns ColIdx[RowPtr[i]:RowPtr[i+1]].
type CSR struct {
	Rows, Cols int
	RowPtr     []int32
	ColIdx     []int32
	Val        []float32
}

// Graph is a node-classification problem: a graph whose nodes carry feature
// vectors and classes. Adj is the normalized adjacency GCN layers multiply by.
type Graph struct {
	Adj      *CSR      // N×N normalized adjacency, D^-1/2 (A+I) D^-1/2
	X        []float32 // N × Features node features, row-major
	Features int
	Y        []int32 // class of each node
	Classes  int
}

// Nodes returns the number of nodes.
func (g *Graph) Nodes() int { return len(g.Y) }

// NormalizeAdjacency builds the symmetric normalized adjacency with self
// loops, D^-1/2 (A+I) D^-1/2, of an undirected graph on n nodes. Each edge
// is taken in both directions; duplicates and self loops in edges are merged.
func NormalizeAdjacency(n int, edges [][2]int32) (*CSR, error) {
	nbr := make([][]int32, n)
	for i := range nbr {
		nbr[i] = []int32{int32(i)}
	}
	for _, e := range edges {
		a, b := e[0], e[1]
		if a < 0 || b < 0 || int(a) >= n || int(b) >= n {
			return nil, fmt.Errorf("tensor.NormalizeAdjacency: edge (%d,%d) outside %d nodes", a, b, n)
		}
		if a == b {
			continue
		}
		nbr[a] = append(nbr[a], b)
		nbr[b] = append(nbr[b], a)
	}
	m := &CSR{Rows: n, Cols: n, RowPtr: make([]int32, n+1)}
	deg := make([]float64, n)
	for i := range nbr {
		s := nbr[i]
		sort.Slice(s, func(x, y int) bool { return s[x] < s[y] })
		u := s[:1]
		for _, v := range s[1:] {
			if v != u[len(u)-1] {
				u = append(u, v)
			}
		}
		nbr[i] = u
		deg[i] = float64(len(u))
	}
	for i, s := range nbr {
		for _, j := range s {
			m.ColIdx = append(m.ColIdx, j)
			m.Val = append(m.Val, float32(1/math.Sqrt(deg[i]*deg[j])))
		}
		m.RowPtr[i+1] = int32(len(m.ColIdx))
	}
	return m, nil
}
