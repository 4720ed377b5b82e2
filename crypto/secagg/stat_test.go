package secagg

import (
	"math"
	"math/rand/v2"
	"testing"
)

// chiSquareCritical is the upper p-quantile of chi-square with k degrees of
// freedom (Wilson-Hilferty), z the standard normal p-quantile.
func chiSquareCritical(k int, z float64) float64 {
	a := 2 / (9 * float64(k))
	return float64(k) * math.Pow(1-a+z*math.Sqrt(a), 3)
}

func chiSquare(counts []int, total int) float64 {
	e := float64(total) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - e
		x += d * d / e
	}
	return x
}

// uniformityFailures runs the tests on y and returns those that reject
// uniformity at p = 1e-6 (z = 4.753): the byte histogram, the histogram
// of the low 4 bits of each word, and that of the top byte of each word.
func uniformityFailures(y []uint32) []string {
	const z = 4.753
	var bytes [256]int
	var low [16]int
	var top [256]int
	for _, w := range y {
		for k := 0; k < 4; k++ {
			bytes[byte(w>>(8*k))]++
		}
		low[w&15]++
		top[w>>24]++
	}
	var fails []string
	if chiSquare(bytes[:], 4*len(y)) > chiSquareCritical(255, z) {
		fails = append(fails, "bytes")
	}
	if chiSquare(low[:], len(y)) > chiSquareCritical(15, z) {
		fails = append(fails, "low bits")
	}
	if chiSquare(top[:], len(y)) > chiSquareCritical(255, z) {
		fails = append(fails, "top byte")
	}
	return fails
}

// TestMaskedInputLooksUniform: the masked vector of a single client with a
// structured input (all zeros, or a ramp) passes chi-square uniformity
// tests; so does it with only its pairwise masks or only its self mask;
// with both removed (the bare input) the same tests reject it.
func TestMaskedInputLooksUniform(t *testing.T) {
	const dim = 1 << 16
	inputs := map[string]func(i int) uint32{
		"zeros": func(int) uint32 { return 0 },
		"ramp":  func(i int) uint32 { return uint32(i) },
	}
	for name, f := range inputs {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(42, 42))
			s := newSim(t, rng, 5, 4, 3, dim)
			for _, id := range s.ids {
				for i := range s.inputs[id] {
					s.inputs[id][i] = f(i)
				}
			}
			srv, cl := s.srv, s.clients
			for _, id := range s.ids {
				noErr(t, "AddAdvertiseKeys", srv.AddAdvertiseKeys(must(cl[id].AdvertiseKeys())(t, "AdvertiseKeys")))
			}
			must(srv.EndAdvertiseKeys())(t, "EndAdvertiseKeys")
			for _, id := range s.ids {
				kl := must(srv.KeyList(id))(t, "KeyList")
				noErr(t, "AddShareKeys", srv.AddShareKeys(must(cl[id].ShareKeys(kl))(t, "ShareKeys")))
			}
			must(srv.EndShareKeys())(t, "EndShareKeys")
			id := s.ids[2]
			c := cl[id]
			sl := must(srv.ShareList(id))(t, "ShareList")
			y := must(c.MaskedInput(sl, s.inputs[id]))(t, "MaskedInput").Y

			if fails := uniformityFailures(y); len(fails) > 0 {
				t.Fatalf("masked input fails uniformity: %v", fails)
			}
			// remove the self mask: the pairwise masks alone still hide x
			pairOnly := append([]uint32(nil), y...)
			applyMasks(pairOnly, []maskTerm{{seed: c.seed, neg: true}})
			if fails := uniformityFailures(pairOnly); len(fails) > 0 {
				t.Fatalf("input under pairwise masks fails uniformity: %v", fails)
			}
			// remove the pairwise masks too: the bare input must fail
			var pair []maskTerm
			for _, e := range sl.Shares {
				secret, err := agree(c.maskKey, &c.keys[e.Peer].MaskKey)
				if err != nil {
					t.Fatal(err)
				}
				seed, _ := pairSeed(secret, &c.p.digest, id, e.Peer)
				pair = append(pair, maskTerm{seed: seed, neg: !pairNeg(id, e.Peer)})
			}
			bare := append([]uint32(nil), pairOnly...)
			applyMasks(bare, pair)
			for i, v := range bare {
				if v != s.inputs[id][i] {
					t.Fatalf("removing the masks did not give back the input at %d", i)
				}
			}
			if fails := uniformityFailures(bare); len(fails) == 0 {
				t.Fatal("the unmasked input passes the uniformity tests: the test has no power")
			}
			// and the self mask alone hides it as well
			selfOnly := append([]uint32(nil), bare...)
			applyMasks(selfOnly, []maskTerm{{seed: c.seed}})
			if fails := uniformityFailures(selfOnly); len(fails) > 0 {
				t.Fatalf("input under the self mask fails uniformity: %v", fails)
			}
		})
	}
}
