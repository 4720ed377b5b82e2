package text

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/fedge/fedge/tensor"
)

// ErrNotText reports a spec that is not a valid text model (no Text
// section, or not valid).
var ErrNotText = errors.New("text: not a text model")

// FNV-1a 64-bit constants.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Tokenizer maps text to token ids as a text model's TextSpec says. It
// holds no mutable state: one Tokenizer serves any number of goroutines.
type Tokenizer struct {
	vocab     uint64
	maxTokens int
	ngrams    int
}

// New returns the tokenizer of a text model's spec: its Text section, the
// vocabulary of its embedding bag and the places of its input. A spec
// without a valid Text section gets ErrNotText.
func New(spec tensor.Spec) (*Tokenizer, error) {
	vocab, places, ok := spec.TextVocab()
	if !ok {
		if err := spec.Validate(); err != nil {
			return nil, fmt.Errorf("text.New: %w: %w", ErrNotText, err)
		}
		return nil, fmt.Errorf("text.New: model %q: %w (its spec has no text section)", spec.Name, ErrNotText)
	}
	return &Tokenizer{vocab: uint64(vocab), maxTokens: places, ngrams: spec.Text.MaxN()}, nil
}

// MaxTokens returns the number of places of the model's input.
func (t *Tokenizer) MaxTokens() int { return t.maxTokens }

// Vocab returns the number of distinct ids.
func (t *Tokenizer) Vocab() int { return int(t.vocab) }

// Encode appends to dst exactly MaxTokens values: the ids of doc (as
// float32, exact below tensor.MaxVocab), cut or padded with tensor.PadID,
// and returns the extended slice and the number of ids doc has in all
// (more than MaxTokens when it was cut). It does not allocate when dst has
// room.
func (t *Tokenizer) Encode(dst []float32, doc string) ([]float32, int) {
	start := len(dst)
	dst, n := appendIDs(t, dst, t.maxTokens, doc)
	for len(dst)-start < t.maxTokens {
		dst = append(dst, tensor.PadID)
	}
	return dst, n
}

// AppendIDs appends every id of doc, uncut, to dst.
func (t *Tokenizer) AppendIDs(dst []int32, doc string) []int32 {
	dst, _ = appendIDs(t, dst, -1, doc)
	return dst
}

// Dataset tokenizes docs into a tensor.Dataset of the model's input shape
// with labels y and the given number of classes. It also returns how many
// documents were cut to MaxTokens.
func (t *Tokenizer) Dataset(docs []string, y []int32, classes int) (*tensor.Dataset, int, error) {
	if len(docs) != len(y) {
		return nil, 0, fmt.Errorf("text.Tokenizer.Dataset: %d documents, %d labels: %w", len(docs), len(y), tensor.ErrShape)
	}
	ds := &tensor.Dataset{X: make([]float32, 0, len(docs)*t.maxTokens), Y: append([]int32(nil), y...),
		Shape: []int{t.maxTokens}, Classes: classes}
	cut := 0
	for _, d := range docs {
		var n int
		ds.X, n = t.Encode(ds.X, d)
		if n > t.maxTokens {
			cut++
		}
	}
	if err := ds.Validate(); err != nil {
		return nil, 0, fmt.Errorf("text.Tokenizer.Dataset: %w", err)
	}
	return ds, cut, nil
}

// Words appends the lower-cased words of doc to dst, in order: the units
// the tokenizer hashes (for tests and for explaining ids).
func Words(dst []string, doc string) []string {
	var w []byte
	for _, r := range doc {
		switch c, k := classify(r); k {
		case runeWord:
			w = utf8.AppendRune(w, c)
		case runeAlone:
			if len(w) > 0 {
				dst = append(dst, string(w))
			}
			dst = append(dst, string(c))
			w = w[:0]
		default:
			if len(w) > 0 {
				dst = append(dst, string(w))
			}
			w = w[:0]
		}
	}
	if len(w) > 0 {
		dst = append(dst, string(w))
	}
	return dst
}

// Kinds of rune for word splitting.
const (
	runeSep   = iota // separates words
	runeWord         // part of a word
	runeAlone        // a word by itself (scripts without spaces)
)

// classify returns r lower-cased and its kind.
func classify(r rune) (rune, int) {
	switch {
	case r < utf8.RuneSelf:
		switch {
		case 'a' <= r && r <= 'z' || '0' <= r && r <= '9':
			return r, runeWord
		case 'A' <= r && r <= 'Z':
			return r + 'a' - 'A', runeWord
		}
		return r, runeSep
	case r >= 0x2e80 && unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana): // the three start at U+2E80 or later
		return r, runeAlone
	case unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
		return unicode.ToLower(r), runeWord
	}
	return r, runeSep
}

// asciiWord maps an ASCII byte to itself lower-cased if it belongs to a
// word (a letter or a digit), else to 0.
var asciiWord = func() (t [utf8.RuneSelf]byte) {
	for b := range utf8.RuneSelf {
		if c, kind := classify(rune(b)); kind == runeWord {
			t[b] = byte(c)
		}
	}
	return t
}()

// appendIDs appends the ids of doc to dst, at most limit of them (all if
// limit < 0), and returns the extended slice and how many ids doc has.
//
// Words are hashed as they are read, with no buffer: FNV-1a is a stream,
// so the hash of "<n-gram> <word>" continues from the n-gram's own hash
// (kept from the previous word) over a space and the word's bytes.
func appendIDs[T float32 | int32](t *Tokenizer, dst []T, limit int, doc string) ([]T, int) {
	var prev, cur [tensor.MaxNGrams]uint64 // [k]: hash of the (k+1)-gram ending at the previous / current word
	grams := 0                             // n-grams ending at the current word
	have := 0                              // earlier words an n-gram may use, at most ngrams-1
	n := 0
	emit := func(h uint64) {
		if limit < 0 || n < limit {
			dst = append(dst, T(h%t.vocab))
		}
		n++
	}
	begin := func() {
		grams = min(have, t.ngrams-1) + 1
		cur[0] = fnvOffset
		for k := 1; k < grams; k++ {
			cur[k] = fnvByte(prev[k-1], ' ')
		}
	}
	feed := func(c rune) {
		var b [utf8.UTFMax]byte
		m := utf8.EncodeRune(b[:], c)
		for k := range grams {
			h := cur[k]
			for _, x := range b[:m] {
				h = (h ^ uint64(x)) * fnvPrime
			}
			cur[k] = h
		}
	}
	end := func() {
		for k := range grams {
			emit(cur[k])
		}
		prev = cur
		have = min(have+1, t.ngrams-1)
		grams = 0
	}
	for i := 0; i < len(doc); {
		if b := doc[i]; b < utf8.RuneSelf { // ASCII: no decoding, one byte to hash
			i++
			l := asciiWord[b]
			if l == 0 {
				if grams > 0 {
					end()
				}
				continue
			}
			if grams == 0 {
				begin()
			}
			for k := range grams {
				cur[k] = (cur[k] ^ uint64(l)) * fnvPrime
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(doc[i:])
		i += size
		c, kind := classify(r)
		switch kind {
		case runeWord:
			if grams == 0 {
				begin()
			}
			feed(c)
		case runeAlone:
			if grams > 0 {
				end()
			}
			begin()
			feed(c)
			end()
		default:
			if grams > 0 {
				end()
			}
		}
	}
	if grams > 0 {
		end()
	}
	return dst, n
}

// fnvByte continues an FNV-1a hash h over one byte.
func fnvByte(h uint64, c byte) uint64 { return (h ^ uint64(c)) * fnvPrime }
