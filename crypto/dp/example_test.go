package dp_test

import (
	"fmt"

	"github.com/fedge/fedge/crypto/dp"
)

func ExampleClipL2() {
	update := []float32{3, 4} // norm 5
	scale := dp.ClipL2(update, 1)
	fmt.Printf("scale %.4f, clipped %.4f, norm %.4f\n", scale, update, dp.L2Norm(update))

	small := []float32{0.3, 0.4}
	fmt.Printf("scale %.4f, unchanged %.4f\n", dp.ClipL2(small, 1), small)
	// Output:
	// scale 0.2000, clipped [0.6000 0.8000], norm 1.0000
	// scale 1.0000, unchanged [0.3000 0.4000]
}

// DP-SGD on MNIST as in TF-Privacy's tutorial: batches of 256 from 60000
// examples, noise multiplier 1.12, 60 epochs.
func ExampleAccountant() {
	acct, err := dp.NewAccountant(nil) // dp.DefaultOrders()
	if err != nil {
		panic(err)
	}
	q := 256.0 / 60000
	for epoch := 1; epoch <= 60; epoch++ {
		if err := acct.Step(q, 1.12, 60000/256); err != nil {
			panic(err)
		}
		if epoch == 1 || epoch == 60 {
			eps, order := acct.Epsilon(1e-5)
			classic, _ := acct.EpsilonClassic(1e-5)
			fmt.Printf("epoch %d: ε = %.2f (order %v), classic conversion %.2f\n", epoch, eps, order, classic)
		}
	}
	// Output:
	// epoch 1: ε = 0.71 (order 13), classic conversion 1.00
	// epoch 60: ε = 2.52 (order 8.25), classic conversion 2.92
}

func ExampleNoiseForBudget() {
	p := dp.Params{Epsilon: 3, Delta: 1e-5, Rounds: 1000, SampleRate: 0.01}
	z, err := dp.NoiseForBudget(p)
	if err != nil {
		panic(err)
	}
	b, err := dp.NewBudget(p)
	if err != nil {
		panic(err)
	}
	var r dp.Report
	for range p.Rounds {
		if r, err = b.Spend(p.SampleRate); err != nil {
			panic(err)
		}
	}
	fmt.Printf("noise multiplier %.3f (budget uses %.3f)\n", z, b.NoiseMultiplier())
	fmt.Printf("round %d: ε %.3f (+%.5f), %.3f left\n", r.Round, r.Epsilon, r.EpsilonIncrement, r.Remaining)
	_, err = b.Spend(p.SampleRate)
	fmt.Println(err != nil)
	// Output:
	// noise multiplier 0.865 (budget uses 0.865)
	// round 1000: ε 3.000 (+0.00114), 0.000 left
	// true
}

func ExampleAdaptiveClip() {
	// No bit noise here, to make the arithmetic visible; real runs set
	// BitNoise (or noise the bit coordinate in the secure sum).
	a, err := dp.NewAdaptiveClip(dp.AdaptiveClipConfig{InitialClip: 1, TargetQuantile: 0.5, LearningRate: 0.2})
	if err != nil {
		panic(err)
	}
	norms := []float64{0.2, 0.5, 0.7, 2, 3} // this round's update norms
	var sum float64
	for _, n := range norms {
		sum += dp.ClipBit(n, a.Clip()) // each client's coordinate in the secure sum
	}
	next, _ := a.Update(sum, len(norms), nil)
	fmt.Printf("3 of 5 under C=1: next C = %.4f\n", next)
	// Output:
	// 3 of 5 under C=1: next C = 0.9802
}
