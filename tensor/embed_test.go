package tensor

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestEmbeddingBagSpecErrors(t *testing.T) {
	bag := LayerSpec{Type: LayerEmbeddingBag, Vocab: 10, Dim: 4}
	dense := LayerSpec{Type: LayerDense, Units: 2}
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"not first", Spec{Input: []int{5}, Layers: []LayerSpec{dense, bag}}, "layer 1 (embedding_bag): must be the first layer"},
		{"image input", Spec{Input: []int{1, 2, 3}, Layers: []LayerSpec{bag, dense}}, "input shape [1 2 3] is not [max tokens]"},
		{"no vocab", Spec{Input: []int{5}, Layers: []LayerSpec{{Type: LayerEmbeddingBag, Dim: 4}, dense}}, "vocab 0 outside [1, 16777216]"},
		{"vocab past float32 ids", Spec{Input: []int{5}, Layers: []LayerSpec{{Type: LayerEmbeddingBag, Vocab: MaxVocab + 1, Dim: 1}, dense}}, "vocab 16777217 outside"},
		{"no dim", Spec{Input: []int{5}, Layers: []LayerSpec{{Type: LayerEmbeddingBag, Vocab: 4}, dense}}, "dim 0 outside"},
		{"too many params", Spec{Input: []int{5}, Layers: []LayerSpec{{Type: LayerEmbeddingBag, Vocab: MaxVocab, Dim: 128}, dense}}, "embeddings exceed"},
		{"units on a bag", Spec{Input: []int{5}, Layers: []LayerSpec{{Type: LayerEmbeddingBag, Vocab: 4, Dim: 2, Units: 3}, dense}}, `field "units" does not apply to embedding_bag`},
		{"vocab on dense", Spec{Input: []int{5}, Layers: []LayerSpec{{Type: LayerDense, Units: 2, Vocab: 3}}}, `field "vocab" does not apply to dense`},
		{"text without bag", Spec{Input: []int{5}, Text: &TextSpec{}, Layers: []LayerSpec{dense}}, "the first layer of a text model must be embedding_bag"},
		{"text ngrams", Spec{Input: []int{5}, Text: &TextSpec{NGrams: 9}, Layers: []LayerSpec{bag, dense}}, "ngrams 9 outside [0, 8]"},
		{"text hash", Spec{Input: []int{5}, Text: &TextSpec{Hash: "murmur3"}, Layers: []LayerSpec{bag, dense}}, `hash "murmur3" is not "fnv1a64"`},
		{"external text", Spec{Text: &TextSpec{}, External: []ExternalTensor{{Name: "w", Shape: []int{2}}}}, "no input, layers or text tokenizer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrInvalidSpec with %q", err, tt.want)
			}
		})
	}
}

// TestEmbeddingBagForward checks the layer against its definition: the
// mean of the rows of the ids present, padding and non-ids ignored,
// repeats counted, zeros for an empty bag.
func TestEmbeddingBagForward(t *testing.T) {
	spec := Spec{Input: []int{4}, Layers: []LayerSpec{{Type: LayerEmbeddingBag, Vocab: 3, Dim: 2}, {Type: LayerDense, Units: 2}}}
	m, err := NewModel(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.NumParams() != 3*2+2*2+2 {
		t.Fatalf("%d parameters, want 12", m.NumParams())
	}
	w, b := m.LayerParams(0)
	if len(b) != 0 {
		t.Fatalf("embedding bag has %d biases", len(b))
	}
	copy(w, []float32{1, 2, 10, 20, 100, 200})
	x := []float32{
		0, 2, PadID, PadID, // mean of rows 0 and 2
		1, 1, 0, 3, // rows 1, 1, 0; 3 is past the vocabulary
		PadID, 1.5, -2, float32(math.NaN()), // no token
	}
	ws := m.newWorkspace(3, modeInfer)
	m.forward(ws, &pass{}, x, 3)
	got := ws.acts[1][:6]
	want := []float32{50.5, 101, 7, 14, 0, 0}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Fatalf("bag outputs %v, want %v", got, want)
		}
	}
}

// TestTextSpecRoundTrip: a text model's file keeps its tokenizer and
// embedding bag, and the same spec and seed give the same model bits.
func TestTextSpecRoundTrip(t *testing.T) {
	spec := TextClassifierSpec(1000, 8, 32, 2, 3)
	m, err := NewModel(spec, 5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"text":{"ngrams":2}`)) || !bytes.Contains(b, []byte(`"type":"embedding_bag","vocab":1000,"dim":8`)) {
		t.Fatalf("model file spec lacks the text fields: %q", b[16:200])
	}
	back, err := UnmarshalModel(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Spec, m.Spec) || back.Hash() != m.Hash() {
		t.Fatalf("round trip: spec %v, want %v", back.Spec, m.Spec)
	}
	vocab, places, ok := back.Spec.TextVocab()
	if !ok || vocab != 1000 || places != 32 {
		t.Fatalf("TextVocab = %d, %d, %v", vocab, places, ok)
	}
	c := m.Clone()
	m.Spec.Text.NGrams = 3 // the clone owns its TextSpec
	if c.Spec.Text.NGrams != 2 {
		t.Fatal("Clone shares the TextSpec")
	}
}

// TestEmbeddingBagTrains: a bag-of-ids classifier learns a rule that
// only the ids carry (class = whether id 3 is in the bag).
func TestEmbeddingBagTrains(t *testing.T) {
	spec := TextClassifierSpec(16, 8, 5, 1, 2)
	m, err := NewModel(spec, 2)
	if err != nil {
		t.Fatal(err)
	}
	ds := &Dataset{Shape: []int{5}, Classes: 2}
	for i := range 400 {
		row := []float32{float32(i % 16), float32(i * 7 % 16), float32(i * 5 % 13), PadID, PadID}
		y := int32(0)
		for _, v := range row {
			if v == 3 {
				y = 1
			}
		}
		ds.X, ds.Y = append(ds.X, row...), append(ds.Y, y)
	}
	if _, err := Train(context.Background(), m, ds, TrainConfig{Epochs: 30, BatchSize: 10, Seed: 1,
		Optimizer: NewSGD(SGDConfig{LR: 0.5})}); err != nil {
		t.Fatal(err)
	}
	met, err := Evaluate(m, ds)
	if err != nil {
		t.Fatal(err)
	}
	if met.Accuracy() < 0.95 {
		t.Fatalf("accuracy %.3f, want >= 0.95", met.Accuracy())
	}
}
