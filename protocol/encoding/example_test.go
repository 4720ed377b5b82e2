package encoding_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/fedge/fedge/protocol/encoding"
)

// A coordinator ships a new model version as a delta against the version an
// agent holds: top-1% of the change, int8-quantized, deflated. The agent
// decodes it against its copy; the header's hash proves the result.
func Example() {
	rng := rand.New(rand.NewPCG(1, 2))
	old := make([]float32, 100000)
	for i := range old {
		old[i] = float32(rng.NormFloat64() * 0.05)
	}
	next := make([]float32, len(old))
	for i := range next {
		next[i] = old[i] + float32(rng.NormFloat64()*5e-4)
	}

	opts := encoding.Options{Codec: encoding.Int8, TopK: 0.01, Compressor: encoding.Flate}
	blob, err := encoding.Encode(next, old, opts)
	if err != nil {
		panic(err)
	}
	got, err := encoding.Decode(blob, old)
	if err != nil {
		panic(err)
	}
	h, _ := encoding.ParseHeader(blob)
	fmt.Println("encoding:", opts)
	fmt.Println("delta:", h.Delta(), "kept:", h.Kept, "of", h.Count)
	fmt.Println("more than 100x smaller:", 4*len(next)/len(blob) > 100)
	fmt.Println("hash checked:", encoding.HashParams(got) == h.ResultHash)
	// Output:
	// encoding: int8/256+top1%+flate
	// delta: true kept: 1000 of 100000
	// more than 100x smaller: true
	// hash checked: true
}

// Choose picks the smallest encoding within the error the operator allows.
func ExampleChoose() {
	rng := rand.New(rand.NewPCG(3, 4))
	params := make([]float32, 50000)
	for i := range params {
		params[i] = float32(rng.NormFloat64() * 0.05)
	}
	candidates := []encoding.Options{
		{Codec: encoding.Float32},
		{Codec: encoding.Float16},
		{Codec: encoding.Int8},
	}
	for _, maxErr := range []float64{0, 1e-3, 1e-2} {
		_, c, err := encoding.Choose(params, nil, candidates, maxErr)
		if err != nil {
			panic(err)
		}
		fmt.Printf("max error %g: %v (error below max: %v)\n", maxErr, c.Options, c.Stats.RelErr <= maxErr)
	}
	// Output:
	// max error 0: float32 (error below max: true)
	// max error 0.001: float16 (error below max: true)
	// max error 0.01: int8/256 (error below max: true)
}

// ErrorFeedback keeps what top-k left out and sends it later.
func ExampleErrorFeedback() {
	var enc encoding.Encoder
	var ef encoding.ErrorFeedback
	update := []float32{4, -1, 0.5, 3}
	opts := encoding.Options{TopK: 0.25} // one of four entries per round
	for round := 1; round <= 3; round++ {
		blob, err := ef.AppendEncode(nil, &enc, update, nil, opts)
		if err != nil {
			panic(err)
		}
		sent, _ := encoding.Decode(blob, nil)
		fmt.Println("round", round, "sent", sent, "residual", ef.Residual())
	}
	// Output:
	// round 1 sent [4 0 0 0] residual [0 -1 0.5 3]
	// round 2 sent [0 0 0 6] residual [4 -2 1 0]
	// round 3 sent [8 0 0 0] residual [0 -3 1.5 3]
}

// A coordinator pushes a new model version to an agent that holds the
// previous one: the lossless delta decodes to exactly the committed
// parameters, so the agent's model has the version's name (its hash).
func ExampleLosslessDelta() {
	rng := rand.New(rand.NewPCG(5, 6))
	old := make([]float32, 100000)
	for i := range old {
		old[i] = float32(rng.NormFloat64() * 0.05)
	}
	next := make([]float32, len(old))
	for i := range next {
		next[i] = old[i] + float32(rng.NormFloat64()*1e-4)
	}
	next[0] = float32(math.Copysign(0, -1)) // even -0 survives

	blob, err := encoding.Encode(next, old, encoding.LosslessDelta())
	if err != nil {
		panic(err)
	}
	got, err := encoding.Decode(blob, old)
	if err != nil {
		panic(err)
	}
	fmt.Println("encoding:", encoding.LosslessDelta())
	fmt.Println("same version:", encoding.HashParams(got) == encoding.HashParams(next))
	fmt.Println("-0 kept:", math.Signbit(float64(got[0])))
	fmt.Println("under 2/3 of float32:", 3*len(blob) < 2*4*len(next))
	// Output:
	// encoding: float32-xor+flate
	// same version: true
	// -0 kept: true
	// under 2/3 of float32: true
}
