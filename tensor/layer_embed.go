package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// PadID is the value that fills the unused places of a text model's input.
// An embedding-bag input holds one token id per place, as a float32 (exact
// for every id below MaxVocab); PadID, and any value that is not an
// integer in [0, Vocab), is not a token and counts for nothing.
const PadID = -1

// MaxVocab bounds an embedding bag's vocabulary: float32 represents every
// integer up to 2^24 exactly, so every id survives the model's float32
// input.
const MaxVocab = 1 << 24

// MaxNGrams bounds TextSpec.NGrams.
const MaxNGrams = 8

// HashFNV1a names the hash of TextSpec.Hash: 64-bit FNV-1a (offset basis
// 14695981039346656037, prime 1099511628211), with no seed and no state
// beyond the bytes hashed, so every host, build and run gives the same ids.
const HashFNV1a = "fnv1a64"

// TextSpec says how a text model turns raw text into its input: the
// tokenizer of package tensor/text reads it, in training and in serving
// alike, so every agent and every server number tokens the same way
// without exchanging a vocabulary (the hashing trick).
//
// The text is lower-cased and split into words; each word, and each run of
// 2..NGrams consecutive words joined by single spaces, is hashed with Hash
// and taken modulo the vocabulary size of the model's first layer (an
// embedding_bag). The ids fill the model's input of Input[0] places in text
// order, the word's id before the n-grams ending at it; a text with more
// ids is cut, one with fewer is padded with PadID. The zero value means
// words only, hashed with HashFNV1a.
type TextSpec struct {
	// NGrams is the longest word n-gram hashed: 1 means words only, 2 adds
	// pairs of consecutive words. Zero means 1; at most MaxNGrams.
	NGrams int `json:"ngrams,omitempty"`
	// Hash names the hash function; "" means HashFNV1a, the only one.
	Hash string `json:"hash,omitempty"`
}

// MaxN returns the longest n-gram: NGrams, or 1 if it is zero.
func (t TextSpec) MaxN() int { return max(t.NGrams, 1) }

// validate checks t against the spec it belongs to.
func (t TextSpec) validate(s Spec) error {
	if t.NGrams < 0 || t.NGrams > MaxNGrams {
		return fmt.Errorf("text: ngrams %d outside [0, %d]", t.NGrams, MaxNGrams)
	}
	if t.Hash != "" && t.Hash != HashFNV1a {
		return fmt.Errorf("text: hash %q is not %q", t.Hash, HashFNV1a)
	}
	if len(s.Layers) == 0 || s.Layers[0].Type != LayerEmbeddingBag {
		return fmt.Errorf("text: the first layer of a text model must be %s", LayerEmbeddingBag)
	}
	return nil
}

// TextVocab returns the vocabulary size and the number of token places of
// a text model's input (Vocab of its embedding bag, Input[0]), or false if
// s is not a valid text model.
func (s Spec) TextVocab() (vocab, maxTokens int, ok bool) {
	if s.Text == nil || s.Validate() != nil {
		return 0, 0, false
	}
	return s.Layers[0].Vocab, s.Input[0], true
}

// TextClassifierSpec returns a fastText-style classifier of hashed words
// and n-grams: an embedding bag of vocab rows of dim values (the mean of
// the embeddings of at most maxTokens ids), then a dense layer to classes
// logits.
func TextClassifierSpec(vocab, dim, maxTokens, ngrams, classes int) Spec {
	return Spec{Name: "text-classifier", Input: []int{maxTokens}, Text: &TextSpec{NGrams: ngrams},
		Layers: []LayerSpec{
			{Type: LayerEmbeddingBag, Vocab: vocab, Dim: dim},
			{Type: LayerDense, Units: classes},
		}}
}

// planEmbeddingBag validates an embedding bag at place i of a spec whose
// current shape is shape and fills in p.
func planEmbeddingBag(p *layerPlan, i int, ls LayerSpec, shape []int) error {
	if i != 0 {
		return fmt.Errorf("must be the first layer: its input is token ids, not values a layer computes")
	}
	if len(shape) != 1 {
		return fmt.Errorf("input shape %v is not [max tokens]", shape)
	}
	if ls.Vocab <= 0 || ls.Vocab > MaxVocab {
		return fmt.Errorf("vocab %d outside [1, %d]", ls.Vocab, MaxVocab)
	}
	if ls.Dim <= 0 || ls.Dim > MaxActivation {
		return fmt.Errorf("dim %d outside [1, %d]", ls.Dim, MaxActivation)
	}
	if float64(ls.Vocab)*float64(ls.Dim) > MaxParams {
		return fmt.Errorf("%d×%d embeddings exceed %d parameters", ls.Vocab, ls.Dim, MaxParams)
	}
	p.out = []int{ls.Dim}
	p.fanIn, p.fanOut = 1, ls.Dim
	p.weights = ls.Vocab * ls.Dim
	p.params = p.weights
	p.paramLayer = true
	return nil
}

// embeddingBag maps each example's token ids to the mean of their rows of
// an embedding table W [Vocab, Dim] (row-major, no bias): EmbeddingBag
// with mode "mean" in PyTorch's terms. The input is a fixed number of
// places, each a token id or padding (see PadID); an example without any
// token gives zeros. It is always a model's first layer, so its backward
// never computes an input gradient (ids have none).
type embeddingBag struct {
	lp    *layerPlan
	vocab int
}

func (l *embeddingBag) plan() *layerPlan  { return l.lp }
func (l *embeddingBag) elementwise() bool { return false }
func (l *embeddingBag) needsOutput() bool { return false }
func (l *embeddingBag) scratch(n int, train bool) (int, int, int) {
	return 0, 0, 0
}

// init draws the embeddings uniformly from ±1/√Dim, so that the mean of a
// bag has values of order 1/√Dim whatever the bag's size.
func (l *embeddingBag) init(w []float32, rng *rand.Rand) {
	bound := 1 / math.Sqrt(float64(l.lp.spec.Dim))
	for i := range w {
		w[i] = float32((2*rng.Float64() - 1) * bound)
	}
}

// tokenID returns v as a row of the table, or -1 if v is not a token id.
func (l *embeddingBag) tokenID(v float32) int {
	if !(v >= 0 && v < float32(l.vocab)) || v != float32(int32(v)) {
		return -1
	}
	return int(v)
}

// count returns the number of tokens among the ids of one example.
func (l *embeddingBag) count(ids []float32) int {
	k := 0
	for _, v := range ids {
		if l.tokenID(v) >= 0 {
			k++
		}
	}
	return k
}

func (l *embeddingBag) forward(_ *pass, _ *buffers, w, x, y []float32, n int) {
	in, d := l.lp.inSize, l.lp.outSize
	for r := range n {
		ids := x[r*in : (r+1)*in]
		yr := y[r*d : (r+1)*d : (r+1)*d]
		clear(yr)
		k := l.count(ids)
		if k == 0 {
			continue
		}
		for _, v := range ids {
			if t := l.tokenID(v); t >= 0 {
				addTo(yr, w[t*d:(t+1)*d])
			}
		}
		inv := 1 / float32(k)
		for j := range yr {
			yr[j] *= inv
		}
	}
}

func (l *embeddingBag) backward(_ *pass, _ *buffers, _, gw, x, _, dy, dx []float32, n int) {
	in, d := l.lp.inSize, l.lp.outSize
	clear(gw)
	for r := range n {
		ids := x[r*in : (r+1)*in]
		k := l.count(ids)
		if k == 0 {
			continue
		}
		inv := 1 / float32(k)
		dyr := dy[r*d : (r+1)*d : (r+1)*d]
		for _, v := range ids {
			if t := l.tokenID(v); t >= 0 {
				g := gw[t*d : (t+1)*d : (t+1)*d]
				for j, u := range dyr {
					g[j] += u * inv
				}
			}
		}
	}
	if dx != nil { // never: the layer is first (planEmbeddingBag)
		clear(dx[:n*in])
	}
}
