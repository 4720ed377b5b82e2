package secagg

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkAggregateMaskedInput measures the server's streaming
// aggregation of one masked upload as the coordinator runs it: decode the
// wire message, then add its vector into the running sum (what
// Server.AddMaskedInput does after its checks). Throughput is in bytes of
// masked vector per second.
func BenchmarkAggregateMaskedInput_D1663370(b *testing.B) {
	const dim = 1_663_370
	r := rand.New(rand.NewPCG(1, 2))
	m := &MaskedInput{From: 7, Y: make([]uint32, dim)}
	for i := range m.Y {
		m.Y[i] = r.Uint32()
	}
	wire, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	sum := make([]uint32, dim)
	want := make([]uint32, dim)
	b.SetBytes(4 * dim)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var in MaskedInput
		if err := in.UnmarshalBinary(wire); err != nil {
			b.Fatal(err)
		}
		addVec(sum, in.Y)
	}
	b.StopTimer()
	for j := range want {
		want[j] = m.Y[j] * uint32(b.N)
	}
	for j := range sum {
		if sum[j] != want[j] {
			b.Fatalf("sum[%d] = %d, want %d", j, sum[j], want[j])
		}
	}
}

// BenchmarkAggregateMaskedInputWire is the same aggregation straight from
// the wire bytes (Server.AddMaskedInputWire's inner loop).
func BenchmarkAggregateMaskedInputWire_D1663370(b *testing.B) {
	const dim = 1_663_370
	r := rand.New(rand.NewPCG(1, 2))
	m := &MaskedInput{From: 7, Y: make([]uint32, dim)}
	for i := range m.Y {
		m.Y[i] = r.Uint32()
	}
	wire, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	body := wire[len(wire)-4*dim:]
	sum := make([]uint32, dim)
	b.SetBytes(4 * dim)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		addWireLE(sum, body)
	}
	b.StopTimer()
	for j := range sum {
		if sum[j] != m.Y[j]*uint32(b.N) {
			b.Fatalf("sum[%d] wrong", j)
		}
	}
}

// TestAddMaskedInputWireExactSum runs rounds with dropouts through the
// wire-level aggregation path: the unmasked sum equals the plain sum of
// the survivors' inputs, exactly.
func TestAddMaskedInputWireExactSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := 0; trial < 5; trial++ {
		s := newSim(t, rng, 12, 6, 0, 257)
		s.wirePath = true
		s.drop[s.ids[trial]] = 2 // one client vanishes at the masked-input stage
		res, serr := s.run()
		if serr.err != nil {
			t.Fatalf("trial %d: stage %d: %v", trial, serr.stage, serr.err)
		}
		want := s.plainSum(res.Survivors)
		for i := range want {
			if res.Sum[i] != want[i] {
				t.Fatalf("trial %d: sum[%d] = %d, want %d", trial, i, res.Sum[i], want[i])
			}
		}
		if len(res.Survivors) != 11 {
			t.Fatalf("trial %d: %d survivors", trial, len(res.Survivors))
		}
	}
}

// TestMaskedStreamExactSum streams masked inputs into the sum in uneven
// pieces, and half of a dropping client's input that an undoing stream
// then takes out: the unmasked sum equals the plain sum of the
// survivors' inputs, exactly (each piece added once).
func TestMaskedStreamExactSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for trial := 0; trial < 5; trial++ {
		s := newSim(t, rng, 12, 6, 0, 257)
		s.streamPath = true
		s.drop[s.ids[trial]] = 2 // streams half its input, then vanishes
		res, serr := s.run()
		if serr.err != nil {
			t.Fatalf("trial %d: stage %d: %v", trial, serr.stage, serr.err)
		}
		want := s.plainSum(res.Survivors)
		for i := range want {
			if res.Sum[i] != want[i] {
				t.Fatalf("trial %d: sum[%d] = %d, want %d", trial, i, res.Sum[i], want[i])
			}
		}
		if len(res.Survivors) != 11 {
			t.Fatalf("trial %d: %d survivors", trial, len(res.Survivors))
		}
	}
}
