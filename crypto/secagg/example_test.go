package secagg_test

import (
	"crypto/ed25519"
	"fmt"
	"log"
	"math/rand/v2"

	"github.com/fedge/fedge/crypto/secagg"
)

// Five clients compute a weighted mean (FedAvg-style) under secure
// aggregation; client 5 drops out after sharing its keys, and the server
// still recovers the exact sum of the other four, learning nothing else.
func Example() {
	ids := []uint32{1, 2, 3, 4, 5}
	signers := map[uint32]ed25519.PrivateKey{}
	q := &secagg.Quantizer{Clip: 1, Bits: 16, MaxWeight: 100}
	const d = 2
	cfg := &secagg.Config{RoundID: []byte("example round 1"), Dim: q.EncodedLen(d), Quantizer: q}
	for _, id := range ids {
		signers[id] = ed25519.NewKeyFromSeed(append(make([]byte, 31), byte(id)))
		cfg.Participants = append(cfg.Participants, secagg.Participant{ID: id, SigningKey: signers[id].Public().(ed25519.PublicKey)})
	}
	check := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	srv, err := secagg.NewServer(cfg)
	check(err)
	clients := map[uint32]*secagg.Client{}
	for _, id := range ids {
		clients[id], err = secagg.NewClient(cfg, id, signers[id], nil)
		check(err)
	}

	// Stage 0: advertise keys.
	for _, id := range ids {
		m, err := clients[id].AdvertiseKeys()
		check(err)
		check(srv.AddAdvertiseKeys(m))
	}
	next, err := srv.EndAdvertiseKeys()
	check(err)
	// Stage 1: share keys.
	for _, id := range next {
		kl, err := srv.KeyList(id)
		check(err)
		m, err := clients[id].ShareKeys(kl)
		check(err)
		check(srv.AddShareKeys(m))
	}
	next, err = srv.EndShareKeys()
	check(err)
	// Stage 2: masked inputs. Client i holds x = (0.1 i, -0.05 i) over 10 i
	// examples; client 5 drops here.
	rng := rand.New(rand.NewPCG(1, 2))
	for _, id := range next {
		if id == 5 {
			continue
		}
		x := []float32{0.1 * float32(id), -0.05 * float32(id)}
		enc := make([]uint32, q.EncodedLen(d))
		check(q.Encode(enc, x, 10*id, rng))
		sl, err := srv.ShareList(id)
		check(err)
		m, err := clients[id].MaskedInput(sl, enc)
		check(err)
		check(srv.AddMaskedInput(m))
	}
	next, err = srv.EndMaskedInput()
	check(err)
	// Stage 3: consistency check of the survivor set.
	list, err := srv.SurvivorList()
	check(err)
	for _, id := range next {
		m, err := clients[id].ConsistencyCheck(list)
		check(err)
		check(srv.AddConsistencyCheck(m))
	}
	next, err = srv.EndConsistencyCheck()
	check(err)
	// Stage 4: unmask.
	for _, id := range next {
		sg, err := srv.SignatureList(id)
		check(err)
		m, err := clients[id].Unmask(sg)
		check(err)
		check(srv.AddUnmask(m))
	}
	res, err := srv.Finish()
	check(err)

	mean := make([]float32, d)
	total, err := q.DecodeMean(mean, res.Sum)
	check(err)
	fmt.Println("survivors:", res.Survivors)
	fmt.Println("total weight:", total)
	fmt.Printf("weighted mean: (%.3f, %.3f)\n", mean[0], mean[1])
	// Output:
	// survivors: [1 2 3 4]
	// total weight: 100
	// weighted mean: (0.300, -0.150)
}
