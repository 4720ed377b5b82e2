package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"slices"
)

// graph is the SecAgg+ neighbour graph of Bell et al. 2020: a Harary graph
// H(k, n) (a ring where each node is joined to its k/2 nearest nodes on each
// side) whose node labels are permuted at random from the public seed, which
// yields a k-regular graph in which the neighbourhoods look random. When
// k = n-1 it is the complete graph of classic SecAgg.
//
// The permutation is a Fisher-Yates shuffle driven by AES-128-CTR keyed with
// SHA-256("fedge/secagg/v1 graph" || seed), so it is fixed by this code and
// not by any library's random number generator.
type graph struct {
	n, k     int
	complete bool
	pos      []int32 // pos[i]: ring position of client index i
	at       []int32 // at[p]: client index at ring position p
}

func newGraph(n, k int, seed [32]byte) graph {
	g := graph{n: n, k: k, complete: k >= n-1}
	if g.complete {
		return g
	}
	h := sha256.New()
	h.Write([]byte("fedge/secagg/v1 graph"))
	h.Write(seed[:])
	var key [32]byte
	h.Sum(key[:0])
	r := newSeedReader(key)
	g.at = make([]int32, n)
	for i := range g.at {
		g.at[i] = int32(i)
	}
	for i := n - 1; i > 0; i-- {
		j := r.uniform(uint64(i + 1))
		g.at[i], g.at[j] = g.at[j], g.at[i]
	}
	g.pos = make([]int32, n)
	for p, i := range g.at {
		g.pos[i] = int32(p)
	}
	return g
}

// neighbours returns the indices adjacent to i in ascending order.
func (g *graph) neighbours(i int) []int {
	out := make([]int, 0, g.k)
	if g.complete {
		for j := 0; j < g.n; j++ {
			if j != i {
				out = append(out, j)
			}
		}
		return out
	}
	p := int(g.pos[i])
	for d := 1; d <= g.k/2; d++ {
		out = append(out, int(g.at[(p+d)%g.n]), int(g.at[(p-d+g.n)%g.n]))
	}
	slices.Sort(out)
	return out
}

// adjacent reports whether i and j are neighbours (i != j).
func (g *graph) adjacent(i, j int) bool {
	if i == j {
		return false
	}
	if g.complete {
		return true
	}
	d := int(g.pos[i]) - int(g.pos[j])
	if d < 0 {
		d = -d
	}
	d = min(d, g.n-d)
	return d <= g.k/2
}

// seedReader draws uniform integers from AES-128-CTR keyed by a 32-byte seed.
type seedReader struct {
	s   prgStream
	buf [512]byte
	off int
}

func newSeedReader(seed [32]byte) *seedReader {
	r := &seedReader{s: newPRG(seed, 0)}
	r.off = len(r.buf)
	return r
}

func (r *seedReader) uint64() uint64 {
	if r.off == len(r.buf) {
		clear(r.buf[:])
		r.s.XORKeyStream(r.buf[:], r.buf[:])
		r.off = 0
	}
	v := binary.LittleEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

// uniform returns an unbiased integer in [0, m), m > 0, by rejection.
func (r *seedReader) uniform(m uint64) uint64 {
	limit := math.MaxUint64 - math.MaxUint64%m // values >= limit are rejected
	for {
		if v := r.uint64(); v < limit {
			return v % m
		}
	}
}

// count returns how many neighbours j of i have set[j]; total must be the
// number of true entries in set (it answers the complete graph in O(1)).
func (g *graph) count(i int, set []bool, total int) int {
	if g.complete {
		if set[i] {
			return total - 1
		}
		return total
	}
	c := 0
	p := int(g.pos[i])
	for d := 1; d <= g.k/2; d++ {
		if set[g.at[(p+d)%g.n]] {
			c++
		}
		if set[g.at[(p-d+g.n)%g.n]] {
			c++
		}
	}
	return c
}
