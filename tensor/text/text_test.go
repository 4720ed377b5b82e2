package text

import (
	"errors"
	"hash/fnv"
	"slices"
	"strings"
	"testing"

	"github.com/fedge/fedge/tensor"
)

func TestWords(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"ascii", "Hello, World!  It's 2024.", []string{"hello", "world", "it", "s", "2024"}},
		{"hyphen and digits", "e-mail x86_64 COVID-19", []string{"e", "mail", "x86", "64", "covid", "19"}},
		{"latin", "Ünïcode STRASSE Straße Œuvre", []string{"ünïcode", "strasse", "straße", "œuvre"}},
		{"greek and cyrillic", "ΣΟΦΙΑ Москва", []string{"σοφια", "москва"}},
		{"combining mark", "cafe\u0301 ok", []string{"cafe\u0301", "ok"}},
		{"han and kana", "東京タワーへ行く", []string{"東", "京", "タ", "ワ", "ー", "へ", "行", "く"}},
		{"mixed scripts", "GPU计算 fast", []string{"gpu", "计", "算", "fast"}},
		{"invalid utf-8", "ab\xffcd", []string{"ab", "cd"}},
		{"empty", " \t\n.,;", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Words(nil, tt.doc); !slices.Equal(got, tt.want) {
				t.Errorf("Words(%q) = %q, want %q", tt.doc, got, tt.want)
			}
		})
	}
}

// fnvID is the contract written out with the standard library's FNV-1a.
func fnvID(s string, vocab int) int32 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return int32(h.Sum64() % uint64(vocab))
}

func newTok(t testing.TB, vocab, places, ngrams int) *Tokenizer {
	t.Helper()
	tok, err := New(tensor.TextClassifierSpec(vocab, 4, places, ngrams, 2))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestIDsAreFNV1a pins the ids to their definition: FNV-1a-64 of the
// lower-cased word, or of the n-gram's words joined by single spaces,
// modulo the vocabulary, each word's id before the n-grams ending at it.
func TestIDsAreFNV1a(t *testing.T) {
	const vocab = 1 << 20
	tok := newTok(t, vocab, 64, 3)
	got := tok.AppendIDs(nil, "New  York, new-YORK city")
	var want []int32
	for _, s := range []string{
		"new",
		"york", "new york",
		"new", "york new", "new york new",
		"york", "new york", "york new york",
		"city", "york city", "new york city",
	} {
		want = append(want, fnvID(s, vocab))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	// The hash is fixed for good: a model trained today must read the
	// same ids from the same text on any host, next year.
	if h := fnv.New64a(); func() uint64 { h.Write([]byte("hello")); return h.Sum64() }() != 0xa430d84680aabd0b {
		t.Fatal("the standard library's FNV-1a changed")
	}
	if got := newTok(t, 1<<24, 4, 1).AppendIDs(nil, "HELLO"); !slices.Equal(got, []int32{0xa430d84680aabd0b % (1 << 24)}) {
		t.Fatalf("id of hello = %v", got)
	}
}

// TestIDsMatchWords: on any text, ASCII or not, the ids are those of
// the words Words finds and of their n-grams, as the package doc defines
// them.
func TestIDsMatchWords(t *testing.T) {
	const vocab = 1 << 16
	for _, doc := range []string{
		"Straße ΣΟΦΙΑ 東京タワー, Москва-2024!",
		"cafe\u0301 CAFÉ naïve x86_64 ½ ⅓ ٣",
		"ab\xffcd e\u0301\u0301 \U0001F600 smile",
		benchDoc, unicodeDoc,
	} {
		for n := 1; n <= 3; n++ {
			words := Words(nil, doc)
			var want []int32
			for i := range words {
				want = append(want, fnvID(words[i], vocab))
				for k := 1; k < n && k <= i; k++ {
					want = append(want, fnvID(strings.Join(words[i-k:i+1], " "), vocab))
				}
			}
			if got := newTok(t, vocab, 8, n).AppendIDs(nil, doc); !slices.Equal(got, want) {
				t.Errorf("%d-grams of %.30q: ids %v, want %v", n, doc, got, want)
			}
		}
	}
}

func TestEncodePadsAndCuts(t *testing.T) {
	tok := newTok(t, 1000, 5, 2)
	x, n := tok.Encode(nil, "a b")
	want := []float32{float32(fnvID("a", 1000)), float32(fnvID("b", 1000)), float32(fnvID("a b", 1000)), tensor.PadID, tensor.PadID}
	if !slices.Equal(x, want) || n != 3 {
		t.Fatalf("Encode(a b) = %v, %d; want %v, 3", x, n, want)
	}
	x, n = tok.Encode(x, "one two three four")
	if len(x) != 10 || n != 7 || x[5] != float32(fnvID("one", 1000)) || x[8] != float32(fnvID("three", 1000)) || x[9] != float32(fnvID("two three", 1000)) {
		t.Fatalf("second Encode = %v, %d", x, n)
	}
	x, n = tok.Encode(nil, "")
	if !slices.Equal(x, []float32{-1, -1, -1, -1, -1}) || n != 0 {
		t.Fatalf("Encode of no words = %v, %d", x, n)
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	tok := newTok(t, 1<<18, 256, 2)
	dst := make([]float32, 0, 256)
	allocs := testing.AllocsPerRun(100, func() { dst, _ = tok.Encode(dst[:0], benchDoc) })
	if allocs != 0 {
		t.Fatalf("Encode allocates %v times per call", allocs)
	}
}

func TestNewRefusesNonText(t *testing.T) {
	spec, _ := tensor.NamedSpec(tensor.SpecLogReg)
	if _, err := New(spec); !errors.Is(err, ErrNotText) {
		t.Fatalf("New(logreg) = %v, want ErrNotText", err)
	}
	bad := tensor.TextClassifierSpec(0, 4, 8, 1, 2)
	if _, err := New(bad); !errors.Is(err, ErrNotText) || !errors.Is(err, tensor.ErrInvalidSpec) {
		t.Fatalf("New(vocab 0) = %v, want ErrNotText and ErrInvalidSpec", err)
	}
}

func TestDataset(t *testing.T) {
	tok := newTok(t, 50, 3, 1)
	ds, cut, err := tok.Dataset([]string{"a b", "a b c d", "x"}, []int32{1, 0, 2}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 3 || ds.Features() != 3 || ds.Classes != 3 || cut != 1 || ds.Row(2)[1] != tensor.PadID {
		t.Fatalf("dataset %+v, cut %d", ds, cut)
	}
	if _, _, err := tok.Dataset([]string{"a"}, nil, 2); !errors.Is(err, tensor.ErrShape) {
		t.Fatalf("mismatched labels: %v", err)
	}
}

// benchDoc is a document of 120 words, mixed case and punctuation: the
// size of a support ticket or a short e-mail.
const benchDoc = `Hello team, the nightly backup on the EU storage cluster failed again at 02:14 UTC.
The job reported "disk quota exceeded" on volume vol-7, although the dashboard shows 38% free.
We restarted the agent twice; the second run got further but stopped while compressing the
database snapshot. Could someone from infrastructure check whether the quota was lowered
during last week's migration? Customers in Frankfurt and Paris noticed slower reports this
morning, which might be related. I attached the logs and the output of the df command.
Thanks, Maria (on call until Friday). P.S. Ticket #48213 has the earlier history of this issue.`

// BenchmarkTokenize measures documents per second through Encode with
// words and pairs of words, as docs/BENCHMARKS.md reports (-cpu 1).
func BenchmarkTokenize(b *testing.B) {
	tok := newTok(b, 1<<18, 256, 2)
	dst := make([]float32, 0, 256)
	b.SetBytes(int64(len(benchDoc)))
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = tok.Encode(dst[:0], benchDoc)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}

// unicodeDoc is a short multilingual document: German, Russian, Greek
// and Japanese, about two thirds of its bytes outside ASCII.
const unicodeDoc = `Die nächste Sicherung des Clusters in Frankfurt ist fehlgeschlagen; bitte prüfen Sie die Größe des Datenträgers.
Резервное копирование кластера снова не удалось, диск переполнен. Η αντιγραφή ασφαλείας απέτυχε ξανά.
東京のサーバーでバックアップが失敗しました。ディスクがいっぱいです。`

// BenchmarkTokenizeUnicode is BenchmarkTokenize on unicodeDoc, where
// every rune is decoded and classified.
func BenchmarkTokenizeUnicode(b *testing.B) {
	tok := newTok(b, 1<<18, 256, 2)
	dst := make([]float32, 0, 256)
	b.SetBytes(int64(len(unicodeDoc)))
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = tok.Encode(dst[:0], unicodeDoc)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}
