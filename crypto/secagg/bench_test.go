package secagg

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Benchmarks against Bonawitz et al. 2017 (CCS), whose prototype (single
// threaded Java) took ~0.85 s per client for n=500, D=100K and, at the
// server, ~2 s / ~62 s / ~143 s at 0% / 10% / 30% dropout (n=500) and
// ~414 s for n=1000 at 30%. Run e.g.
//
//	go test -run '^$' -bench 'Client_N1000|ServerUnmask_N1000|MaskPRG' -benchtime 3x ./crypto/secagg

// BenchmarkMaskPRG measures the mask generator: AES-128-CTR keystream added
// into a uint32 vector, per core (one goroutine) and on all cores.
func BenchmarkMaskPRG(b *testing.B) {
	const dim = 1 << 20 // 4 MiB of mask per term
	for _, tc := range []struct {
		name     string
		terms    int
		parallel bool
	}{{"1core_1seed", 1, false}, {"1core_21seeds", 21, false}, {"allcores_21seeds", 21, true}} {
		b.Run(tc.name, func(b *testing.B) {
			dst := make([]uint32, dim)
			terms := make([]maskTerm, tc.terms)
			for i := range terms {
				terms[i].seed[0] = byte(i)
				terms[i].neg = i%2 == 0
			}
			b.SetBytes(int64(4 * dim * tc.terms))
			applyMasksRange(dst, 0, terms[:1]) // fault the pages in
			cpu0 := processCPU()
			for b.Loop() {
				if tc.parallel {
					applyMasks(dst, terms)
				} else {
					applyMasksRange(dst, 0, terms)
				}
			}
			bytes := float64(4*dim*tc.terms) * float64(b.N)
			b.ReportMetric(bytes/b.Elapsed().Seconds()/1e9, "GB/s")
			if cpu := (processCPU() - cpu0).Seconds(); cpu > 0 {
				b.ReportMetric(bytes/cpu/1e9, "GB/cpu-s")
			}
		})
	}
}

// benchConfig returns a round of n participants with deterministic keys.
func benchConfig(n, k, dim int) (*Config, []uint32, map[uint32]ed25519.PrivateKey) {
	cfg := &Config{RoundID: []byte(fmt.Sprintf("bench-%d-%d-%d", n, k, dim)), Neighbours: k, Dim: dim, GraphSeed: [32]byte{42}}
	signers := map[uint32]ed25519.PrivateKey{}
	ids := make([]uint32, n)
	for i := range ids {
		id := uint32(1000 + 7*i)
		ids[i] = id
		var seed [32]byte
		binary.LittleEndian.PutUint32(seed[:], id)
		signers[id] = ed25519.NewKeyFromSeed(seed[:])
		cfg.Participants = append(cfg.Participants, Participant{ID: id, SigningKey: signers[id].Public().(ed25519.PublicKey)})
	}
	return cfg, ids, signers
}

func benchInput(id uint32, dim int) []uint32 {
	x := make([]uint32, dim)
	for i := range x {
		x[i] = id*uint32(i) + 12345
	}
	return x
}

func encodedLen(m wireMsg) int {
	b, _ := m.MarshalBinary()
	return len(b)
}

// benchClient times one client's whole round (all five stages, including
// NewClient) with its neighbours' messages prepared outside the timer; the
// neighbours are real clients, fresh each iteration.
func benchClient(b *testing.B, n, k, dim int) {
	cfg, ids, signers := benchConfig(n, k, dim)
	target := ids[0]
	adv := map[uint32]*AdvertiseKeys{} // current advertisement of everyone
	for _, id := range ids {
		c, err := NewClient(cfg, id, signers[id], nil)
		if err != nil {
			b.Fatal(err)
		}
		if adv[id], err = c.AdvertiseKeys(); err != nil {
			b.Fatal(err)
		}
	}
	probe, _ := NewClient(cfg, target, signers[target], nil)
	nbrs := probe.Neighbours()
	digest := probe.p.digest
	u3 := ids // nobody drops
	u3Hash := survivorsHash(u3)
	x := benchInput(target, dim)
	var upload int
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 {
			cpu += processCPU()
		}
		b.StopTimer()
		fresh := map[uint32]*Client{}
		for _, v := range nbrs {
			c, err := NewClient(cfg, v, signers[v], nil)
			if err != nil {
				b.Fatal(err)
			}
			fresh[v] = c
			if adv[v], err = c.AdvertiseKeys(); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		cpu -= processCPU()
		c, err := NewClient(cfg, target, signers[target], nil)
		if err != nil {
			b.Fatal(err)
		}
		a, err := c.AdvertiseKeys()
		if err != nil {
			b.Fatal(err)
		}
		cpu += processCPU()
		b.StopTimer()
		adv[target] = a
		kl := &KeyList{Round: digest, To: target}
		sl := &ShareList{Round: digest, To: target}
		for _, v := range nbrs {
			kl.Keys = append(kl.Keys, *adv[v])
			vl := &KeyList{Round: digest, To: v}
			for _, w := range fresh[v].Neighbours() {
				vl.Keys = append(vl.Keys, *adv[w])
			}
			sk, err := fresh[v].ShareKeys(vl)
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range sk.Shares {
				if e.Peer == target {
					sl.Shares = append(sl.Shares, EncryptedShare{Peer: v, Ciphertext: e.Ciphertext})
				}
			}
		}
		list := &SurvivorList{Round: digest, Survivors: u3}
		sg := &SignatureList{Round: digest, To: target}
		for _, v := range nbrs {
			sg.Checks = append(sg.Checks, signConsistency(signers[v], &digest, v, &u3Hash))
		}
		b.StartTimer()
		cpu -= processCPU()
		sk, err := c.ShareKeys(kl)
		if err != nil {
			b.Fatal(err)
		}
		mi, err := c.MaskedInput(sl, x)
		if err != nil {
			b.Fatal(err)
		}
		cc, err := c.ConsistencyCheck(list)
		if err != nil {
			b.Fatal(err)
		}
		um, err := c.Unmask(sg)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			upload = encodedLen(a) + encodedLen(sk) + encodedLen(mi) + encodedLen(cc) + encodedLen(um)
		}
	}
	cpu += processCPU()
	b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(len(nbrs)), "neighbours")
	b.ReportMetric(float64(upload)/1e3, "upload-kB")
}

func BenchmarkClient_N1000_D100k(b *testing.B)    { benchClient(b, 1000, 0, 100_000) }
func BenchmarkClient_N1000_D1663370(b *testing.B) { benchClient(b, 1000, 0, 1_663_370) }

// BenchmarkClient_N1000_D100k_K130 uses the degree chosen for 30% dropout.
func BenchmarkClient_N1000_D100k_K130(b *testing.B)   { benchClient(b, 1000, 130, 100_000) }
func BenchmarkClient_Classic_N500_D100k(b *testing.B) { benchClient(b, 500, 499, 100_000) }

// benchWorld is every client's messages up to the masked inputs, built once.
type benchWorld struct {
	k       int
	cfg     *Config
	ids     []uint32
	signers map[uint32]ed25519.PrivateKey
	clients map[uint32]*Client // after MaskedInput
	adv     []*AdvertiseKeys
	sk      []*ShareKeys
	mi      map[uint32]*MaskedInput
}

func newBenchWorld(b *testing.B, n, k, dim int) *benchWorld {
	cfg, ids, signers := benchConfig(n, k, dim)
	w := &benchWorld{k: k, cfg: cfg, ids: ids, signers: signers, clients: map[uint32]*Client{}, mi: map[uint32]*MaskedInput{}}
	srv, err := NewServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		c, err := NewClient(cfg, id, signers[id], nil)
		if err != nil {
			b.Fatal(err)
		}
		w.clients[id] = c
		a, err := c.AdvertiseKeys()
		if err != nil {
			b.Fatal(err)
		}
		w.adv = append(w.adv, a)
		if err := srv.AddAdvertiseKeys(a); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := srv.EndAdvertiseKeys(); err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		kl, err := srv.KeyList(id)
		if err != nil {
			b.Fatal(err)
		}
		sk, err := w.clients[id].ShareKeys(kl)
		if err != nil {
			b.Fatal(err)
		}
		w.sk = append(w.sk, sk)
		if err := srv.AddShareKeys(sk); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := srv.EndShareKeys(); err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		sl, err := srv.ShareList(id)
		if err != nil {
			b.Fatal(err)
		}
		if w.mi[id], err = w.clients[id].MaskedInput(sl, benchInput(id, dim)); err != nil {
			b.Fatal(err)
		}
	}
	return w
}

// benchRound is the rest of a round for one dropout set: the clients in
// drop never send their masked input.
type benchRound struct {
	w         *benchWorld
	survivors []uint32
	cc        []*ConsistencyCheck
	um        []*Unmask
}

func (w *benchWorld) round(b *testing.B, dropFrac float64) *benchRound {
	r := &benchRound{w: w}
	rng := rand.New(rand.NewPCG(uint64(dropFrac*1000), 1))
	for _, id := range w.ids {
		if rng.Float64() >= dropFrac {
			r.survivors = append(r.survivors, id)
		}
	}
	srv := r.serveUntil(b, StageConsistencyCheck)
	list, err := srv.SurvivorList()
	if err != nil {
		b.Fatal(err)
	}
	// copies of the clients, so that each dropout set starts from the same
	// post-MaskedInput state
	clients := map[uint32]*Client{}
	for _, id := range r.survivors {
		c := *w.clients[id]
		c.held = maps.Clone(c.held)
		clients[id] = &c
		cc, err := c.ConsistencyCheck(list)
		if err != nil {
			b.Fatal(err)
		}
		r.cc = append(r.cc, cc)
		if err := srv.AddConsistencyCheck(cc); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := srv.EndConsistencyCheck(); err != nil {
		b.Fatal(err)
	}
	for _, id := range r.survivors {
		sg, err := srv.SignatureList(id)
		if err != nil {
			b.Fatal(err)
		}
		um, err := clients[id].Unmask(sg)
		if err != nil {
			b.Fatal(err)
		}
		r.um = append(r.um, um)
	}
	return r
}

// serveUntil runs a fresh server over the recorded messages up to stage
// `until` (StageDone: the whole round) and returns it; it also asks for
// every per-client reply, as a real server must build them.
func (r *benchRound) serveUntil(b *testing.B, until Stage) *Server {
	w := r.w
	srv, err := NewServer(w.cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, a := range w.adv {
		if err := srv.AddAdvertiseKeys(a); err != nil {
			b.Fatal(err)
		}
	}
	next, err := srv.EndAdvertiseKeys()
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range next {
		if _, err := srv.KeyList(id); err != nil {
			b.Fatal(err)
		}
	}
	for _, sk := range w.sk {
		if err := srv.AddShareKeys(sk); err != nil {
			b.Fatal(err)
		}
	}
	if next, err = srv.EndShareKeys(); err != nil {
		b.Fatal(err)
	}
	for _, id := range next {
		if _, err := srv.ShareList(id); err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range r.survivors {
		if err := srv.AddMaskedInput(w.mi[id]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := srv.EndMaskedInput(); err != nil {
		b.Fatal(err)
	}
	if until == StageConsistencyCheck {
		return srv
	}
	if _, err := srv.SurvivorList(); err != nil {
		b.Fatal(err)
	}
	for _, cc := range r.cc {
		if err := srv.AddConsistencyCheck(cc); err != nil {
			b.Fatal(err)
		}
	}
	if next, err = srv.EndConsistencyCheck(); err != nil {
		b.Fatal(err)
	}
	for _, id := range next {
		if _, err := srv.SignatureList(id); err != nil {
			b.Fatal(err)
		}
	}
	for _, um := range r.um {
		if err := srv.AddUnmask(um); err != nil {
			b.Fatal(err)
		}
	}
	return srv
}

// benchServer times the server's whole round (every Add, End and reply of
// every stage, and Finish) over messages recorded once, for 0%, 10% and
// 30% of the clients dropping before their masked input; finish-s is the
// part spent in Finish (reconstruction and mask removal). With k = 0 the
// degree is NeighboursForDropout(n, dropout, 1e-3) for each dropout rate,
// as a coordinator expecting that rate would choose it.
func benchServer(b *testing.B, n, k, dim int) {
	var w *benchWorld // the last world built, reused while k is the same
	for _, drop := range []int{0, 10, 30} {
		b.Run(fmt.Sprintf("Drop%d", drop), func(b *testing.B) {
			kk := k
			if kk == 0 {
				kk = NeighboursForDropout(n, float64(drop)/100, 1e-3)
			}
			if w == nil || w.k != kk {
				w = nil // let the old world go before building the next
				w = newBenchWorld(b, n, kk, dim)
			}
			r := w.round(b, float64(drop)/100)
			var finish time.Duration
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				srv := r.serveUntil(b, StageDone)
				t0 := time.Now()
				res, err := srv.Finish()
				finish += time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					b.StopTimer()
					want := make([]uint32, dim)
					for _, id := range res.Survivors {
						for j, v := range benchInput(id, dim) {
							want[j] += v
						}
					}
					if !slices.Equal(res.Sum, want) || !slices.Equal(res.Survivors, r.survivors) {
						b.Fatal("wrong sum")
					}
					b.StartTimer()
				}
			}
			b.ReportMetric((processCPU()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(n-len(r.survivors)), "dropped")
			b.ReportMetric(float64(kk), "k")
			b.ReportMetric(finish.Seconds()/float64(b.N), "finish-s")
		})
	}
}

func BenchmarkServerUnmask_N1000_D100k(b *testing.B)        { benchServer(b, 1000, 0, 100_000) }
func BenchmarkServerUnmask_Classic_N500_D100k(b *testing.B) { benchServer(b, 500, 499, 100_000) }
