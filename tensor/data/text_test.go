package data

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestReadTextCSV(t *testing.T) {
	in := "\ufeffid,label,text\n" +
		"1,spam,\"WIN a prize, now!\"\n" +
		"2,ham,\"see you at\nlunch\"\n" +
		"3, spam ,\n"
	tab, err := ReadText(strings.NewReader(in), TextOptions{Format: TextCSV})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tab.Texts, []string{"WIN a prize, now!", "see you at\nlunch", ""}) ||
		!slices.Equal(tab.Classes, []string{"ham", "spam"}) || !slices.Equal(tab.Labels, []int32{1, 0, 1}) {
		t.Fatalf("read %+v", tab)
	}
	tab, err = ReadText(strings.NewReader("body;y\nhello;b\n"), TextOptions{Format: TextCSV, Comma: ';', TextColumn: "body", LabelColumn: "y", Classes: []string{"a", "b", "c"}})
	if err != nil || !slices.Equal(tab.Labels, []int32{1}) || len(tab.Classes) != 3 {
		t.Fatalf("fixed classes: %+v, %v", tab, err)
	}
}

func TestReadTextJSONL(t *testing.T) {
	in := `{"text": "caf\u00e9 au lait", "label": 2, "id": "x"}` + "\n\n" +
		`{"label": "10", "text": "ten"}` + "\r\n" +
		`{"text": "", "label": 2.0}`
	tab, err := ReadText(strings.NewReader(in), TextOptions{Format: TextJSONL})
	if err != nil {
		t.Fatal(err)
	}
	// Numeric labels sort numerically, as ReadCSV's do; 2.0 is its own
	// label, as written.
	if !slices.Equal(tab.Texts, []string{"café au lait", "ten", ""}) || !slices.Equal(tab.Classes, []string{"2", "2.0", "10"}) ||
		!slices.Equal(tab.Labels, []int32{0, 2, 1}) {
		t.Fatalf("read %+v", tab)
	}
}

// TestReadTextErrors: every bad input names its line and column, and
// nothing is half-read.
func TestReadTextErrors(t *testing.T) {
	tests := []struct {
		name   string
		format string
		in     string
		opts   TextOptions
		want   error
		line   int
		column string
	}{
		{"csv no text column", TextCSV, "body,label\nx,a\n", TextOptions{}, ErrFormat, 1, ""},
		{"csv missing label", TextCSV, "text,label\nx,a\ny,\n", TextOptions{}, ErrMissingValue, 3, "label"},
		{"csv bad quote", TextCSV, "text,label\nx,a\n\"y,a\n", TextOptions{}, ErrFormat, 3, ""},
		{"csv unknown class", TextCSV, "text,label\nx,a\ny,z\n", TextOptions{Classes: []string{"a", "b"}}, ErrFormat, 3, "label"},
		{"csv invalid utf-8", TextCSV, "text,label\nx\xff,a\n", TextOptions{}, ErrFormat, 2, "text"},
		{"csv doc too long", TextCSV, "text,label\n" + strings.Repeat("w ", 20) + ",a\n", TextOptions{MaxDocBytes: 16}, ErrLimit, 2, "text"},
		{"csv too many rows", TextCSV, "text,label\nx,a\ny,a\nz,a\n", TextOptions{MaxRows: 2}, ErrLimit, 4, ""},
		{"jsonl not an object", TextJSONL, "{\"text\":\"x\",\"label\":1}\n[1]\n", TextOptions{}, ErrFormat, 2, ""},
		{"jsonl syntax", TextJSONL, "{\"text\":\"x\",\"label\":1}\n\n{\"text\": \n", TextOptions{}, ErrFormat, 3, ""},
		{"jsonl no text", TextJSONL, "{\"body\":\"x\",\"label\":1}\n", TextOptions{}, ErrMissingValue, 1, "text"},
		{"jsonl text not a string", TextJSONL, "{\"text\":5,\"label\":1}\n", TextOptions{}, ErrFormat, 1, "text"},
		{"jsonl null label", TextJSONL, "{\"text\":\"x\",\"label\":null}\n", TextOptions{}, ErrMissingValue, 1, "label"},
		{"jsonl label object", TextJSONL, "{\"text\":\"x\",\"label\":{}}\n", TextOptions{}, ErrFormat, 1, "label"},
		{"jsonl line too long", TextJSONL, "{\"text\":\"x\",\"label\":1}\n{\"text\":\"" + strings.Repeat("a", 70<<10) + "\",\"label\":1}\n", TextOptions{MaxDocBytes: 10}, ErrLimit, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Format = tt.format
			tab, err := ReadText(strings.NewReader(tt.in), tt.opts)
			var le *LineError
			if tab != nil || !errors.Is(err, tt.want) || !errors.As(err, &le) || le.Line != tt.line || le.Column != tt.column {
				t.Fatalf("ReadText = %v, %v; want %v at line %d column %q", tab, err, tt.want, tt.line, tt.column)
			}
		})
	}
	if _, err := ReadText(strings.NewReader("text,label\nx,a\n"), TextOptions{Format: "xml"}); err == nil || !strings.Contains(err.Error(), `format "xml"`) {
		t.Fatalf("unknown format: %v", err)
	}
	if _, err := ReadText(strings.NewReader("text,label\nxxxxxxxxxx,a\n"), TextOptions{Format: TextCSV, MaxBytes: 8}); !errors.Is(err, ErrLimit) {
		t.Fatalf("over MaxBytes: %v", err)
	}
}

func FuzzReadText(f *testing.F) {
	f.Add("text,label\nhello,a\n\"two\nlines\",b\n", true)
	f.Add("{\"text\":\"x\",\"label\":1}\n\n{\"text\":\"y\",\"label\":\"b\"}\n", false)
	f.Fuzz(func(t *testing.T, in string, csv bool) {
		format := TextJSONL
		if csv {
			format = TextCSV
		}
		tab, err := ReadText(bytes.NewReader([]byte(in)), TextOptions{Format: format, MaxBytes: 1 << 16, MaxDocBytes: 1 << 10})
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if len(tab.Texts) != len(tab.Labels) {
			t.Fatalf("%d texts, %d labels", len(tab.Texts), len(tab.Labels))
		}
		for _, y := range tab.Labels {
			if y < 0 || int(y) >= len(tab.Classes) {
				t.Fatalf("label %d of %d classes", y, len(tab.Classes))
			}
		}
	})
}
