package onnx

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/advancedclimatesystems/gonnx"
	gonnxpb "github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/advancedclimatesystems/gonnx/ops"
	gt "gorgonia.org/tensor"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// runGonnx runs an ONNX file in gonnx, an independent pure-Go ONNX
// runtime (opset 13), on n examples x and returns the "probabilities"
// output. gonnx has no MaxPool; maxPoolOp below adds one, written from
// the ONNX operator's definition; every other operator is gonnx's own.
func runGonnx(t testing.TB, file []byte, x []float32, n int, shape []int) []float32 {
	t.Helper()
	g, err := gonnx.NewModelFromBytes(file)
	if err != nil {
		t.Fatalf("gonnx: %v", err)
	}
	base := g.GetOperator
	g.GetOperator = func(op string) (ops.Operator, error) {
		if op == "MaxPool" {
			return &maxPoolOp{}, nil
		}
		return base(op)
	}
	dims := append([]int{n}, shape...)
	out, err := g.Run(gonnx.Tensors{InputName: gt.New(gt.WithShape(dims...), gt.WithBacking(append([]float32(nil), x...)))})
	if err != nil {
		t.Fatalf("gonnx run: %v", err)
	}
	p, ok := out[OutputName]
	if !ok || p == nil {
		t.Fatalf("gonnx: no %q output", OutputName)
	}
	v, ok := p.Data().([]float32)
	if !ok {
		t.Fatalf("gonnx output is %T", p.Data())
	}
	return v
}

// maxPoolOp is ONNX's MaxPool (2-D, no padding, dilation 1, floor mode)
// over NCHW float32 tensors, for gonnx.
type maxPoolOp struct{ k, s [2]int }

func (o *maxPoolOp) String() string { return "maxpool operator" }

func (o *maxPoolOp) Init(n *gonnxpb.NodeProto) error {
	o.s = [2]int{1, 1}
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "kernel_shape":
			o.k = [2]int{int(a.GetInts()[0]), int(a.GetInts()[1])}
		case "strides":
			o.s = [2]int{int(a.GetInts()[0]), int(a.GetInts()[1])}
		case "pads":
			for _, p := range a.GetInts() {
				if p != 0 {
					return fmt.Errorf("maxPoolOp: pads %v", a.GetInts())
				}
			}
		default:
			return fmt.Errorf("maxPoolOp: attribute %q", a.GetName())
		}
	}
	return nil
}

func (o *maxPoolOp) Apply(in []gt.Tensor) ([]gt.Tensor, error) {
	x, ok := in[0].Data().([]float32)
	sh := in[0].Shape()
	if !ok || len(sh) != 4 {
		return nil, fmt.Errorf("maxPoolOp: input %v", sh)
	}
	n, c, h, w := sh[0], sh[1], sh[2], sh[3]
	oh, ow := (h-o.k[0])/o.s[0]+1, (w-o.k[1])/o.s[1]+1
	y := make([]float32, n*c*oh*ow)
	for p := range n * c {
		for i := range oh {
			for j := range ow {
				m := float32(math.Inf(-1))
				for a := range o.k[0] {
					for b := range o.k[1] {
						m = max(m, x[(p*h+i*o.s[0]+a)*w+j*o.s[1]+b])
					}
				}
				y[(p*oh+i)*ow+j] = m
			}
		}
	}
	return []gt.Tensor{gt.New(gt.WithShape(n, c, oh, ow), gt.WithBacking(y))}, nil
}

func (o *maxPoolOp) GetMinInputs() int                     { return 1 }
func (o *maxPoolOp) GetMaxInputs() int                     { return 1 }
func (o *maxPoolOp) GetInputTypeConstraints() [][]gt.Dtype { return [][]gt.Dtype{{gt.Float32}} }
func (o *maxPoolOp) ValidateInputs(in []gt.Tensor) ([]gt.Tensor, error) {
	return ops.ValidateInputs(o, in)
}

// trainedMNIST returns a model of the named spec trained for steps SGD
// steps of batch 10 on MNIST, and the first n test images.
func trainedMNIST(t *testing.T, name string, steps, n int) (*tensor.Model, *tensor.Dataset) {
	t.Helper()
	train, test, err := data.LoadMNIST(testutil.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := tensor.NamedSpec(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, steps*10)
	for i := range idx {
		idx[i] = i
	}
	if _, err := tensor.Train(context.Background(), m, train.Subset(idx), tensor.TrainConfig{Epochs: 1, BatchSize: 10, LR: 0.05, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	first := make([]int, n)
	for i := range first {
		first[i] = i
	}
	return m, test.Subset(first)
}

// TestGonnxMatchesEngine: a trained 2nn and cnn exported to ONNX and run
// by gonnx on 1,000 MNIST test images predict the engine's classes, with
// probabilities within 1e-5; the models are trained first so that the
// predictions are not trivial (accuracy checked). gonnx's convolution
// takes about 0.4 s per image on the cnn, so with -short the cnn runs on
// the first 100 images (the 2nn on all 1,000 either way).
func TestGonnxMatchesEngine(t *testing.T) {
	cnnImages := 1000
	if testing.Short() {
		cnnImages = 100
	}
	for _, tc := range []struct {
		name     string
		steps, n int
	}{{tensor.Spec2NN, 300, 1000}, {tensor.SpecCNN, 200, cnnImages}} {
		t.Run(tc.name, func(t *testing.T) {
			m, test := trainedMNIST(t, tc.name, tc.steps, tc.n)
			file, err := Export(m)
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Predict(test.X, test.Len())
			if err != nil {
				t.Fatal(err)
			}
			batch := min(250, test.Len())
			k := m.Classes()
			correct, maxDiff := 0, 0.0
			for e0 := 0; e0 < test.Len(); e0 += batch {
				got := runGonnx(t, file, test.X[e0*m.Features():(e0+batch)*m.Features()], batch, m.Spec.Input)
				for e := range batch {
					g, w := got[e*k:(e+1)*k], want[(e0+e)*k:(e0+e+1)*k]
					if argmax(g) != argmax(w) {
						t.Errorf("image %d: gonnx class %d, engine %d", e0+e, argmax(g), argmax(w))
					}
					if argmax(w) == int(test.Y[e0+e]) {
						correct++
					}
					for c := range k {
						maxDiff = max(maxDiff, math.Abs(float64(g[c]-w[c])))
					}
				}
			}
			t.Logf("%s: %d/%d correct, max |p_gonnx - p_engine| = %.2g", tc.name, correct, test.Len(), maxDiff)
			if maxDiff > 1e-5 {
				t.Errorf("probabilities differ by %g > 1e-5", maxDiff)
			}
			if correct < test.Len()*8/10 {
				t.Errorf("accuracy %d/%d: the model did not train, the comparison is trivial", correct, test.Len())
			}
		})
	}
}

func argmax(v []float32) int {
	b := 0
	for i, x := range v {
		if x > v[b] {
			b = i
		}
	}
	return b
}
