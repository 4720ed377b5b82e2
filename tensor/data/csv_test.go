package data

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestReadCSV(t *testing.T) {
	in := "\ufeffid, a ,b,species\n" +
		"1,1.5,2,setosa\n" +
		"2,-3,4e2,virginica\n" +
		"3,\"5\",6,setosa\n" +
		"4,0,0,versicolor\n"
	tab, err := ReadCSV(strings.NewReader(in), CSVOptions{Label: "species", Ignore: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tab.Features, []string{"a", "b"}) {
		t.Errorf("features %v", tab.Features)
	}
	if !slices.Equal(tab.Classes, []string{"setosa", "versicolor", "virginica"}) {
		t.Errorf("classes %v", tab.Classes)
	}
	if want := []float32{1.5, 2, -3, 400, 5, 6, 0, 0}; !slices.Equal(tab.Data.X, want) {
		t.Errorf("X = %v, want %v", tab.Data.X, want)
	}
	if want := []int32{0, 2, 0, 1}; !slices.Equal(tab.Data.Y, want) {
		t.Errorf("Y = %v, want %v", tab.Data.Y, want)
	}
	if tab.Data.Classes != 3 || !slices.Equal(tab.Data.Shape, []int{2}) || tab.Data.Validate() != nil {
		t.Errorf("dataset %+v", tab.Data)
	}
}

func TestReadCSVLayoutAndClasses(t *testing.T) {
	in := "y;p;q;r\n10;1;2;3\n2;4;5;6\n1;7;8;9\n10;0;0;0\n"
	tests := []struct {
		name    string
		opts    CSVOptions
		x       []float32
		y       []int32
		classes []string
	}{
		{"numeric labels sort as numbers", CSVOptions{Label: "y", Comma: ';'},
			[]float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0}, []int32{2, 1, 0, 2}, []string{"1", "2", "10"}},
		{"features reorder", CSVOptions{Label: "y", Comma: ';', Features: []string{"r", "p"}},
			[]float32{3, 1, 6, 4, 9, 7, 0, 0}, []int32{2, 1, 0, 2}, []string{"1", "2", "10"}},
		{"fixed classes", CSVOptions{Label: "y", Comma: ';', Features: []string{"q"}, Classes: []string{"10", "1", "2", "3"}},
			[]float32{2, 5, 8, 0}, []int32{0, 2, 1, 0}, []string{"10", "1", "2", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := ReadCSV(strings.NewReader(in), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tab.Data.X, tt.x) || !slices.Equal(tab.Data.Y, tt.y) || !slices.Equal(tab.Classes, tt.classes) ||
				tab.Data.Classes != len(tt.classes) {
				t.Fatalf("X %v Y %v classes %v", tab.Data.X, tab.Data.Y, tab.Classes)
			}
		})
	}
}

func TestReadCSVMissing(t *testing.T) {
	in := "a,b,label\n" +
		"1,10,x\n" +
		"NA,20,y\n" + // line 3
		"3,?,x\n" +
		"7, ,y\n" +
		"8,NaN,x\n" +
		"2,40,\n" + // missing label: line 7
		"9,nan,y\n"
	tests := []struct {
		name    string
		opts    CSVOptions
		x       []float32
		y       []int32
		dropped int
		imputed int
	}{
		{"drop", CSVOptions{Missing: MissingDrop}, []float32{1, 10}, []int32{0}, 6, 0},
		{"mean", CSVOptions{Missing: MissingMean},
			[]float32{1, 10, 5.6, 20, 3, 15, 7, 15, 8, 15, 9, 15}, []int32{0, 1, 0, 1, 0, 1}, 1, 5},
		{"median", CSVOptions{Missing: MissingMedian},
			[]float32{1, 10, 7, 20, 3, 15, 7, 15, 8, 15, 9, 15}, []int32{0, 1, 0, 1, 0, 1}, 1, 5},
		{"constant", CSVOptions{Missing: MissingConstant, Fill: -1},
			[]float32{1, 10, -1, 20, 3, -1, 7, -1, 8, -1, 9, -1}, []int32{0, 1, 0, 1, 0, 1}, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Label = "label"
			tab, err := ReadCSV(strings.NewReader(in), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tab.Data.X, tt.x) || !slices.Equal(tab.Data.Y, tt.y) {
				t.Fatalf("X %v Y %v, want %v %v", tab.Data.X, tab.Data.Y, tt.x, tt.y)
			}
			if tab.Dropped != tt.dropped || tab.Imputed != tt.imputed {
				t.Fatalf("dropped %d imputed %d, want %d %d", tab.Dropped, tab.Imputed, tt.dropped, tt.imputed)
			}
		})
	}
}

func TestReadCSVMissingTokens(t *testing.T) {
	// With custom tokens "" and "NA" are values: "" a class, "NA" a bad number.
	in := "a,label\n-,x\n4,\n2,x\n"
	tab, err := ReadCSV(strings.NewReader(in), CSVOptions{Label: "label", Missing: MissingMean, MissingTokens: []string{"-"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tab.Classes, []string{"", "x"}) || !slices.Equal(tab.Data.X, []float32{3, 4, 2}) ||
		!slices.Equal(tab.Data.Y, []int32{1, 0, 1}) || tab.Imputed != 1 {
		t.Fatalf("classes %q X %v Y %v imputed %d", tab.Classes, tab.Data.X, tab.Data.Y, tab.Imputed)
	}
	_, err = ReadCSV(strings.NewReader("a,label\nNA,x\n"), CSVOptions{Label: "label", Missing: MissingMean, MissingTokens: []string{"-"}})
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("NA with custom tokens: err = %v, want ErrFormat", err)
	}
}

func TestReadCSVReject(t *testing.T) {
	in := "a,b,label\n1,2,x\n3,NA,y\n"
	_, err := ReadCSV(strings.NewReader(in), CSVOptions{Label: "label"})
	var le *LineError
	if !errors.Is(err, ErrMissingValue) || !errors.As(err, &le) || le.Line != 3 || le.Column != "b" {
		t.Fatalf("err = %v (%+v), want a missing value at line 3 column b", err, le)
	}
	if !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("message %q lacks the line", err)
	}
}

func TestReadCSVErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		opts CSVOptions
		want error
		line int
	}{
		{"empty input", "", CSVOptions{}, ErrFormat, 0},
		{"no label column", "a,b\n1,2\n", CSVOptions{Label: "c"}, ErrFormat, 1},
		{"duplicate column", "a,a,y\n1,2,3\n", CSVOptions{}, ErrFormat, 1},
		{"only label", "y\nx\n", CSVOptions{}, ErrFormat, 1},
		{"unknown feature", "a,y\n1,x\n", CSVOptions{Features: []string{"b"}}, ErrFormat, 1},
		{"label as feature", "a,y\n1,x\n", CSVOptions{Features: []string{"y"}}, ErrFormat, 1},
		{"bad number", "a,y\n1,x\n2,x\nzz,y\n", CSVOptions{}, ErrFormat, 4},
		{"infinite", "a,y\n1,x\nInf,y\n", CSVOptions{}, ErrFormat, 3},
		{"float32 overflow", "a,y\n1e39,x\n", CSVOptions{}, ErrFormat, 2},
		{"field count", "a,y\n1,x\n1,2,x\n", CSVOptions{}, ErrFormat, 3},
		{"bare quote", "a,y\n1,x\n\"1\"2,x\n", CSVOptions{}, ErrFormat, 3},
		{"label not in classes", "a,y\n1,x\n1,z\n", CSVOptions{Classes: []string{"x"}}, ErrFormat, 3},
		{"all missing for mean", "a,b,y\n1,NA,x\n2,?,x\n", CSVOptions{Missing: MissingMean}, ErrMissingValue, 0},
		{"all missing for median", "a,b,y\n1,NA,x\n2,?,x\n", CSVOptions{Missing: MissingMedian}, ErrMissingValue, 0},
		{"missing label rejected", "a,y\n1,x\n2,NA\n", CSVOptions{}, ErrMissingValue, 3},
		{"too many rows", "a,y\n1,x\n2,x\n3,x\n", CSVOptions{MaxRows: 2}, ErrLimit, 4},
		{"too many columns", "a,b,c,y\n1,2,3,x\n", CSVOptions{MaxColumns: 3}, ErrLimit, 0},
		{"too many classes", "a,y\n1,x\n2,z\n3,w\n", CSVOptions{MaxClasses: 2}, ErrLimit, 4},
		{"too many bytes", "a,y\n1,x\n2,x\n3,x\n", CSVOptions{MaxBytes: 10}, ErrLimit, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Label == "" {
				tt.opts.Label = "y"
			}
			_, err := ReadCSV(strings.NewReader(tt.in), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var le *LineError
			if tt.line > 0 && (!errors.As(err, &le) || le.Line != tt.line) {
				t.Fatalf("err = %v, want line %d", err, tt.line)
			}
		})
	}
	if _, err := ReadCSV(strings.NewReader("a,y\n1,x\n"), CSVOptions{}); err == nil {
		t.Fatal("empty Label accepted")
	}
	// Exactly MaxBytes is accepted.
	in := "a,y\n1,x\n"
	if _, err := ReadCSV(strings.NewReader(in), CSVOptions{Label: "y", MaxBytes: int64(len(in))}); err != nil {
		t.Fatalf("input of exactly MaxBytes: %v", err)
	}
}
