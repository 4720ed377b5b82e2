package onnx

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	pb "github.com/fedge/fedge/tensor/onnx/internal/onnxpb"
)

const limit = 64 << 20

// mixSpec has every exportable layer type, a multi-channel input with a
// standardize on it, a strided convolution, a pool with its own stride and
// a standardize on the vector after a multi-channel flatten (where the
// engine's and ONNX's orders differ).
func mixSpec() tensor.Spec {
	n := 5 * 2 * 2
	return tensor.Spec{Name: "mix", Input: []int{3, 9, 8}, Layers: []tensor.LayerSpec{
		{Type: tensor.LayerStandardize, Shift: ramp(3*9*8, 0.1, -2), Scale: ramp(3*9*8, 0.01, 0.5)},
		{Type: tensor.LayerConv2D, Filters: 4, Kernel: 3, Padding: 1}, {Type: tensor.LayerReLU},
		{Type: tensor.LayerMaxPool, Kernel: 2, Stride: 1},
		{Type: tensor.LayerConv2D, Filters: 5, Kernel: 3, Stride: 3},
		{Type: tensor.LayerFlatten},
		{Type: tensor.LayerStandardize, Shift: ramp(n, 0.3, -1), Scale: ramp(n, 0.05, 0.2)},
		{Type: tensor.LayerDense, Units: 7}, {Type: tensor.LayerReLU},
		{Type: tensor.LayerDense, Units: 3},
	}}
}

func ramp(n int, step, start float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = start + step*float32(i%13)
	}
	return out
}

// randomModel returns a model of spec with normal random parameters
// (biases included).
func randomModel(t testing.TB, spec tensor.Spec, seed uint64) *tensor.Model {
	t.Helper()
	m, err := tensor.NewModel(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 9))
	for i := range m.Params {
		m.Params[i] = float32(rng.NormFloat64() * 0.2)
	}
	return m
}

func randomInputs(m *tensor.Model, n int) []float32 {
	rng := rand.New(rand.NewPCG(4, 5))
	x := make([]float32, n*m.Features())
	for i := range x {
		x[i] = float32(rng.Float64())
	}
	return x
}

func named(t testing.TB, name string) tensor.Spec {
	s, err := tensor.NamedSpec(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExportImportRoundTrip: Export then Import gives back the spec and
// the parameters bit for bit.
func TestExportImportRoundTrip(t *testing.T) {
	for _, spec := range []tensor.Spec{mixSpec(), named(t, tensor.SpecLogReg), named(t, tensor.Spec2NN), named(t, tensor.SpecCNN)} {
		m := randomModel(t, spec, 3)
		file, err := Export(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Import(bytes.NewReader(file), limit)
		if err != nil {
			t.Fatalf("%s: %v", spec.Name, err)
		}
		if back.Spec.String() != spec.String() {
			t.Fatalf("%s: imported spec\n%v\nwant\n%v", spec.Name, back.Spec, spec)
		}
		for i := range m.Params {
			if math.Float32bits(back.Params[i]) != math.Float32bits(m.Params[i]) {
				t.Fatalf("%s: param %d = %v, want %v", spec.Name, i, back.Params[i], m.Params[i])
			}
		}
	}
}

// TestExportMixMatchesGonnx runs the model with every layer type in gonnx.
func TestExportMixMatchesGonnx(t *testing.T) {
	m := randomModel(t, mixSpec(), 5)
	file, err := Export(m)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	x := randomInputs(m, n)
	want, err := m.Predict(x, n)
	if err != nil {
		t.Fatal(err)
	}
	got := runGonnx(t, file, x, n, m.Spec.Input)
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
			t.Fatalf("probability %d: gonnx %v, engine %v", i, got[i], want[i])
		}
	}
}

// TestExportDropsDropout: dropout is the identity at inference and has no
// node; importing gives the model without it, predicting the same.
func TestExportDropsDropout(t *testing.T) {
	spec := named(t, tensor.Spec2NN)
	spec.Layers = slices.Insert(spec.Layers, 3, tensor.LayerSpec{Type: tensor.LayerDropout, Rate: 0.5})
	m := randomModel(t, spec, 1)
	file, err := Export(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Import(bytes.NewReader(file), limit)
	if err != nil {
		t.Fatal(err)
	}
	if back.Spec.String() != named(t, tensor.Spec2NN).String() || !slices.Equal(back.Params, m.Params) {
		t.Fatalf("imported %v", back.Spec)
	}
}

func TestExportRefuses(t *testing.T) {
	g, err := tensor.NewModel(tensor.GCNSpec(10, 4, 3), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Export(g); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "gcnconv") {
		t.Errorf("Export(gcn) = %v, want ErrUnsupported naming gcnconv", err)
	}
	txt, err := tensor.NewModel(tensor.TextClassifierSpec(100, 4, 8, 2, 3), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Export(txt); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "layer 0 (embedding_bag)") {
		t.Errorf("Export(text classifier) = %v, want ErrUnsupported naming layer 0 (embedding_bag)", err)
	}
	spec, _ := tensor.ExternalSpec("ext", []tensor.ExternalTensor{{Name: "w", Shape: []int{3}}})
	ext, err := tensor.NewExternalModel(spec, make([]float32, 3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Export(ext); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Export(external) = %v, want ErrUnsupported", err)
	}
}

// torchCase is a PyTorch-exported file's inputs and PyTorch's outputs
// (testdata/make_torch.py).
type torchCase struct {
	Shape         []int     `json:"shape"`
	Input         []float32 `json:"input"`
	Probabilities []float32 `json:"probabilities"`
}

// TestImportTorch: files exported by torch.onnx.export (an MLP ending in
// Softmax; a CNN with a Sub/Mul normalisation, strided and padded
// convolutions, pools of stride 2 and 1, ending in LogSoftmax) import and
// predict what PyTorch computed, within 1e-5.
func TestImportTorch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		types []string
	}{
		{"torch_mlp", []string{"flatten", "dense", "relu", "dense"}},
		{"torch_cnn", []string{"standardize", "conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d", "flatten", "dense"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tc.name+".onnx"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := Import(f, limit)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, l := range m.Spec.Layers {
				types = append(types, l.Type)
			}
			if !slices.Equal(types, tc.types) {
				t.Fatalf("layers %v, want %v", types, tc.types)
			}
			js, err := os.ReadFile(filepath.Join("testdata", tc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var c torchCase
			if err := json.Unmarshal(js, &c); err != nil {
				t.Fatal(err)
			}
			n := len(c.Input) / m.Features()
			got, err := m.Predict(c.Input, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.Probabilities) {
				t.Fatalf("%d probabilities, PyTorch %d", len(got), len(c.Probabilities))
			}
			for i := range got {
				if d := math.Abs(float64(got[i] - c.Probabilities[i])); d > 1e-5 {
					t.Errorf("probability %d: fedge %v, PyTorch %v", i, got[i], c.Probabilities[i])
				}
			}
		})
	}
}

// mutate exports a small model, lets edit change its ModelProto, and
// returns the bytes.
func mutate(t *testing.T, edit func(*pb.ModelProto)) []byte {
	t.Helper()
	mp, err := exportProto(randomModel(t, named(t, tensor.Spec2NN), 1))
	if err != nil {
		t.Fatal(err)
	}
	edit(mp)
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImportRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*pb.ModelProto)
		want error
		msg  string
	}{
		{"operator", func(mp *pb.ModelProto) { mp.Graph.Node[2].OpType = proto.String("Sigmoid") }, ErrUnsupported, `operator "Sigmoid" (node "2.Relu")`},
		{"external data", func(mp *pb.ModelProto) {
			mp.Graph.Initializer[0].DataLocation = pb.TensorProto_EXTERNAL.Enum()
			mp.Graph.Initializer[0].ExternalData = []*pb.StringStringEntryProto{{Key: proto.String("location"), Value: proto.String("/etc/passwd")}}
		}, ErrExternalData, "1.weight"},
		{"short raw data", func(mp *pb.ModelProto) { mp.Graph.Initializer[0].RawData = mp.Graph.Initializer[0].RawData[:8] }, ErrFormat, "raw data"},
		{"not a chain", func(mp *pb.ModelProto) { mp.Graph.Node[3].Input[0] = InputName }, ErrUnsupported, "chains"},
		{"opset", func(mp *pb.ModelProto) { mp.OpsetImport[0].Version = proto.Int64(99) }, ErrUnsupported, "opset"},
		{"after softmax", func(mp *pb.ModelProto) {
			mp.Graph.Node = append(mp.Graph.Node, &pb.NodeProto{OpType: proto.String("Relu"), Name: proto.String("late"), Input: []string{OutputName}, Output: []string{"late"}})
		}, ErrUnsupported, "after the final Softmax"},
		{"domain", func(mp *pb.ModelProto) { mp.Graph.Node[2].Domain = proto.String("com.example") }, ErrUnsupported, "com.example"},
		{"no graph", func(mp *pb.ModelProto) { mp.Graph = nil }, ErrFormat, "no graph"},
		{"huge dims", func(mp *pb.ModelProto) { mp.Graph.Initializer[0].Dims = []int64{1 << 40, 1 << 40} }, ErrFormat, "dimension"},
		{"double weights", func(mp *pb.ModelProto) { mp.Graph.Initializer[0].DataType = proto.Int32(int32(pb.TensorProto_DOUBLE)) }, ErrUnsupported, "FLOAT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Import(bytes.NewReader(mutate(t, tc.edit)), limit)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Import = %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
	file := mutate(t, func(*pb.ModelProto) {})
	if _, err := Import(bytes.NewReader(file), int64(len(file)-1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Import over the limit = %v, want ErrTooLarge", err)
	}
	if _, err := Import(bytes.NewReader(file[:len(file)/2]), limit); !errors.Is(err, ErrFormat) {
		t.Errorf("Import(truncated) = %v, want ErrFormat", err)
	}
}

// TestImportWeightLayouts: the same dense layer written as Gemm with
// transB=1 ([out, in], PyTorch's), Gemm with transB=0 ([in, out]) and
// alpha/beta, and MatMul + Add imports to the same model.
func TestImportWeightLayouts(t *testing.T) {
	spec := tensor.Spec{Input: []int{3}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 2}}}
	m := randomModel(t, spec, 2)
	base, err := exportProto(m)
	if err != nil {
		t.Fatal(err)
	}
	outIn := base.Graph.Initializer[0] // [2, 3]
	w, _, _ := decodeFloats(outIn)
	b, _, _ := decodeFloats(base.Graph.Initializer[1])
	inOut := floatTensor("w", []int{3, 2}, transpose(w, 2, 3))
	half := make([]float32, len(b))
	for i := range b {
		half[i] = b[i] / 2 // exact: a power of two
	}
	variants := map[string]func(mp *pb.ModelProto){
		"Gemm transB=0 beta=2": func(mp *pb.ModelProto) {
			mp.Graph.Initializer[0] = inOut
			mp.Graph.Initializer[1] = floatTensor("0.bias", []int{1, 2}, half)
			mp.Graph.Node[0].Input[1] = "w"
			mp.Graph.Node[0].Attribute = []*pb.AttributeProto{intAttr("transB", 0), {Name: proto.String("beta"), Type: pb.AttributeProto_FLOAT.Enum(), F: proto.Float32(2)}}
		},
		"MatMul+Add": func(mp *pb.ModelProto) {
			mp.Graph.Initializer[0] = inOut
			mp.Graph.Node = []*pb.NodeProto{
				{Name: proto.String("mm"), OpType: proto.String("MatMul"), Input: []string{InputName, "w"}, Output: []string{"mm"}},
				{Name: proto.String("add"), OpType: proto.String("Add"), Input: []string{"0.bias", "mm"}, Output: []string{"add"}},
				{Name: proto.String("sm"), OpType: proto.String("Softmax"), Input: []string{"add"}, Output: []string{OutputName}},
			}
		},
	}
	for name, edit := range variants {
		mp := proto.Clone(base).(*pb.ModelProto)
		edit(mp)
		file, err := proto.Marshal(mp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Import(bytes.NewReader(file), limit)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got.Params, m.Params) {
			t.Errorf("%s: params %v, want %v", name, got.Params, m.Params)
		}
	}
}

// TestONNXChecker runs ONNX's own checker (Debian's python3-onnx) with
// full shape inference on exported files.
func TestONNXChecker(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import onnx").Run(); err != nil {
		testutil.Missing(t, "python3-onnx is not installed (apt-get install python3-onnx): %v", err)
	}
	dir := t.TempDir()
	for _, spec := range []tensor.Spec{mixSpec(), named(t, tensor.SpecCNN)} {
		file, err := Export(randomModel(t, spec, 1))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, spec.Name+".onnx")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, "-c", `import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
print(onnx.shape_inference.infer_shapes(m, strict_mode=True).graph.output[0].type.tensor_type.shape)`, path).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: onnx.checker: %v\n%s", spec.Name, err, out)
		}
	}
}
