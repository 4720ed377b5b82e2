package tensor_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedge/fedge/tensor"
)

func ExampleNamedSpec() {
	for _, name := range []string{tensor.SpecLogReg, tensor.Spec2NN, tensor.SpecCNN, tensor.SpecGCN} {
		spec, _ := tensor.NamedSpec(name)
		n, _ := spec.ParamCount()
		fmt.Println(name, n)
	}
	// Output:
	// logreg 7850
	// 2nn 199210
	// cnn 1663370
	// gcn 23063
}

// Train a small network on XOR, then ask it for class probabilities.
func ExampleTrain() {
	spec := tensor.Spec{Input: []int{2}, Layers: []tensor.LayerSpec{
		{Type: tensor.LayerDense, Units: 16}, {Type: tensor.LayerReLU},
		{Type: tensor.LayerDense, Units: 2},
	}}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	ds := &tensor.Dataset{
		X:     []float32{0, 0, 0, 1, 1, 0, 1, 1},
		Y:     []int32{0, 1, 1, 0},
		Shape: []int{2}, Classes: 2,
	}
	_, err = tensor.Train(context.Background(), m, ds, tensor.TrainConfig{
		Epochs: 300, BatchSize: 4, Seed: 1,
		Optimizer: tensor.NewAdam(tensor.AdamConfig{LR: 0.05}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	probs, _ := m.Predict(ds.X, 4) // 4 × 2 probabilities
	for i := range 4 {
		fmt.Printf("%v xor %v: class %d\n", ds.X[2*i], ds.X[2*i+1], argmax(probs[2*i:2*i+2]))
	}
	met, _ := tensor.Evaluate(m, ds)
	fmt.Printf("accuracy %.2f\n", met.Accuracy())
	// Output:
	// 0 xor 0: class 0
	// 0 xor 1: class 1
	// 1 xor 0: class 1
	// 1 xor 1: class 0
	// accuracy 1.00
}

func argmax(p []float32) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

// A model travels as bytes: spec, parameters and a checksum.
func ExampleModel_MarshalBinary() {
	spec, _ := tensor.NamedSpec(tensor.Spec2NN)
	m, _ := tensor.NewModel(spec, 7)
	b, _ := m.MarshalBinary()
	back, err := tensor.UnmarshalModel(b)
	fmt.Println(err, back.Spec.Name, back.NumParams(), back.Hash() == m.Hash())
	// Output: <nil> 2nn 199210 true
}

// Carry a feature standardization inside a model: per-feature means and
// 1/σ (for example gathered by secure sum) become a parameter-free first
// layer, so training sees standardized values and the model takes raw
// inputs.
func ExampleSpec_Standardized() {
	base := tensor.Spec{Input: []int{2}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 2}}}
	// Feature 1 is a thousand times feature 0, offset by 500.
	spec, err := base.Standardized([]float32{2, 2500}, []float32{1, 0.001})
	if err != nil {
		fmt.Println(err)
		return
	}
	n0, _ := base.ParamCount()
	n1, _ := spec.ParamCount()
	fmt.Println(spec.Layers[0].Type, spec.Layers[0].Shift, spec.Layers[0].Scale, n0, n1)
	// Standardizing again replaces the layer rather than stacking one.
	again, _ := spec.Standardized([]float32{0, 0}, []float32{1, 1})
	fmt.Println(len(again.Layers), again.Layers[0].Shift)
	_, err = base.Standardized([]float32{2}, []float32{1})
	fmt.Println(errors.Is(err, tensor.ErrInvalidSpec))
	// Output:
	// standardize [2 2500] [1 0.001] 6 6
	// 2 [0 0]
	// true
}
