package data

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fedge/fedge/tensor"
)

const messy = `age,color,income,label
31,red,100,yes
,blue,200,no
40,red,,yes
25,,300,no
50,green,100000,yes
35,blue,250,
`

func readMessy(t *testing.T) *RawTable {
	t.Helper()
	tab, err := ReadRawCSV(strings.NewReader(messy), CSVOptions{Label: "label", Classes: []string{"no", "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestReadRawCSVKeepsMissingCells(t *testing.T) {
	tab := readMessy(t)
	if tab.Rows() != 6 || len(tab.Columns) != 3 {
		t.Fatalf("%d rows, %d columns", tab.Rows(), len(tab.Columns))
	}
	age, color := tab.Column("age"), tab.Column("color")
	if age.Missing != 1 || !age.Numeric() || age.Values[1] == age.Values[1] {
		t.Fatalf("age %+v", age)
	}
	if color.Numeric() || color.Missing != 1 || color.Text[0] != "red" || color.Text[3] != "" {
		t.Fatalf("color %+v", color)
	}
	if tab.Labels[5] != -1 || tab.Labels[0] != 1 || tab.Lines[5] != 7 {
		t.Fatalf("labels %v lines %v", tab.Labels, tab.Lines)
	}
}

func TestReadRawCSVRefusesBadInputWhole(t *testing.T) {
	tests := []struct {
		name, in   string
		opts       CSVOptions
		line       int
		column     string
		wantErr    error
		wantSubstr string
	}{
		{"short row", "a,b,label\n1,2,x\n3,x\n", CSVOptions{}, 3, "", ErrFormat, "wrong number of fields"},
		{"long line", "a,label\n1,x\n" + strings.Repeat("9", 2000) + ",x\n", CSVOptions{MaxLineBytes: 1000}, 3, "", ErrLimit, "longer than 1000"},
		{"infinite", "a,label\n1,x\ninf,y\n", CSVOptions{}, 3, "a", ErrFormat, "not finite"},
		{"unknown class", "a,label\n1,x\n2,z\n", CSVOptions{Classes: []string{"x"}}, 3, "label", ErrFormat, "not in the classes"},
		{"missing feature", "a,label\n1,x\n", CSVOptions{Features: []string{"b"}}, 1, "", ErrFormat, "no feature column"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Label = "label"
			_, err := ReadRawCSV(strings.NewReader(tt.in), tt.opts)
			var le *LineError
			if !errors.As(err, &le) || le.Line != tt.line || le.Column != tt.column || !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Fatalf("err %v, want line %d column %q %v", err, tt.line, tt.column, tt.wantErr)
			}
		})
	}
}

func f32(v float32) *float32 { return &v }

func TestCleanTablePolicies(t *testing.T) {
	tab := readMessy(t)
	cols := []tensor.InputColumn{
		{Name: "age", Missing: tensor.ColumnMean, Fill: 36.5},
		{Name: "color", Missing: tensor.ColumnDrop, Categories: []string{"red", "blue"}, Other: true},
		{Name: "income", Missing: tensor.ColumnConstant, Fill: 5, Lo: f32(0), Hi: f32(1000)},
	}
	ds, rep, err := CleanTable(tab, nil, cols)
	if err != nil {
		t.Fatal(err)
	}
	// Row 4 misses color (drop), row 6 its label: 4 rows kept.
	want := CleanReport{Rows: 6, Kept: 4, Dropped: 2, Filled: 2, Clipped: 1, Unknown: 1}
	if rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	if ds.Features() != 5 || ds.Len() != 4 {
		t.Fatalf("dataset %d×%d", ds.Len(), ds.Features())
	}
	rows := [][]float32{
		{31, 1, 0, 0, 100},
		{36.5, 0, 1, 0, 200},
		{40, 1, 0, 0, 5},
		{50, 0, 0, 1, 1000}, // green is "other"; 100000 clipped
	}
	for i, r := range rows {
		if got := ds.X[i*5 : i*5+5]; !slices.Equal(got, r) {
			t.Errorf("row %d: %v, want %v", i, got, r)
		}
	}
	if !slices.Equal(ds.Y, []int32{1, 0, 1, 1}) {
		t.Errorf("labels %v", ds.Y)
	}
	// Unknown categories without an other slot give all zeros.
	cols[1].Other = false
	ds, _, err = CleanTable(tab, nil, cols)
	if err != nil || ds.Features() != 4 || !slices.Equal(ds.X[12:16], []float32{50, 0, 0, 1000}) {
		t.Fatalf("zero unknown: %v %v", err, ds.X)
	}
}

func TestCleanTableRejectNamesLineAndColumn(t *testing.T) {
	tab := readMessy(t)
	_, _, err := CleanTable(tab, nil, []tensor.InputColumn{{Name: "age"}})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 3 || le.Column != "age" || !errors.Is(err, ErrMissingValue) {
		t.Fatalf("err %v", err)
	}
	_, _, err = CleanTable(tab, nil, []tensor.InputColumn{{Name: "color", Missing: tensor.ColumnDrop}})
	if !errors.As(err, &le) || le.Line != 2 || le.Column != "color" || !errors.Is(err, ErrFormat) {
		t.Fatalf("text in a numeric column: %v", err)
	}
}

func TestNumericCategories(t *testing.T) {
	tab, err := ReadRawCSV(strings.NewReader("zone,label\n1,a\n2,b\n3,a\n"), CSVOptions{Label: "label"})
	if err != nil {
		t.Fatal(err)
	}
	ds, rep, err := CleanTable(tab, nil, []tensor.InputColumn{{Name: "zone", Categories: []string{"1", "2"}}})
	if err != nil || rep.Unknown != 1 || !slices.Equal(ds.X, []float32{1, 0, 0, 1, 0, 0}) {
		t.Fatalf("%v %+v %v", err, rep, ds.X)
	}
}

func TestHistogramQuantile(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, 10001)
	for i := range vals {
		vals[i] = float32(r.NormFloat64()*3 + 10)
	}
	lo, hi, bins := -2.0, 22.0, 240
	counts := make([]float64, bins+2)
	Histogram(counts, lo, hi, vals)
	sorted := slices.Clone(vals)
	slices.Sort(sorted)
	w := (hi - lo) / float64(bins)
	for _, q := range []float64{0.01, 0.25, 0.5, 0.99} {
		exact := float64(sorted[int(q*float64(len(sorted)-1))])
		if got := HistogramQuantile(counts, lo, hi, q); math.Abs(got-exact) > w {
			t.Errorf("q%v: %v, exact %v, bin %v", q, got, exact, w)
		}
	}
	// Out-of-range quantiles are the range's ends; empty is NaN.
	few := make([]float64, 4)
	Histogram(few, 0, 1, []float32{-5, -4, 0.5, 9})
	if HistogramQuantile(few, 0, 1, 0.1) != 0 || HistogramQuantile(few, 0, 1, 0.95) != 1 {
		t.Errorf("outer bins: %v", few)
	}
	if !math.IsNaN(HistogramQuantile(make([]float64, 4), 0, 1, 0.5)) {
		t.Error("empty histogram")
	}
}

func TestValidateRules(t *testing.T) {
	one := 1.0
	bad := [][]ColumnRule{
		{{Name: "a"}, {Name: "a"}},
		{{Name: "a", Missing: "guess"}},
		{{Name: "a", Missing: tensor.ColumnConstant}},
		{{Name: "a", Fill: &one}},
		{{Name: "a", Clip: []float64{0.9, 0.1}}},
		{{Name: "a", Categories: []string{"x"}, Missing: tensor.ColumnMean}},
		{{Name: "a", Categories: []string{"x", "x"}}},
		{{Name: "a", Categories: []string{"x"}, Candidates: []string{"y"}}},
		{{Name: "a", Unknown: UnknownOther}},
		{{Name: "a", Bins: 10}},
	}
	for i, rules := range bad {
		if err := ValidateRules(rules); !errors.Is(err, ErrFormat) {
			t.Errorf("case %d: %v", i, err)
		}
	}
	good := []ColumnRule{{Name: "a", Missing: tensor.ColumnMedian, Clip: []float64{0.01, 0.99}, Bins: 100}, {Name: "b", Candidates: []string{"x", "y"}, Unknown: UnknownOther}}
	if err := ValidateRules(good); err != nil {
		t.Fatal(err)
	}
}

// TestPrepPhasesMatchPooled runs the three phases on two halves of a table
// and checks that the summed vectors resolve to the pooled table's mean
// and (to one bin) median, and that the quality sum adds up.
func TestPrepPhasesMatchPooled(t *testing.T) {
	tab := readMessy(t)
	rules := []ColumnRule{
		{Name: "age", Missing: tensor.ColumnMean},
		{Name: "color", Missing: tensor.ColumnDrop, Candidates: []string{"red", "blue", "pink"}},
		{Name: "income", Missing: tensor.ColumnMedian, Range: []float64{0, 1000}, Bins: 100, Clip: []float64{0, 0.75}},
	}
	halves := [][]int{{0, 1, 2}, {3, 4, 5}}
	sum := func(p *PrepPlan) []float64 {
		var tot []float64
		for _, rows := range halves {
			v, err := PrepVector(tab, rows, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(v) != p.Len() {
				t.Fatalf("phase %d: %d values, Len %d", p.Phase, len(v), p.Len())
			}
			if tot == nil {
				tot = make([]float64, len(v))
			}
			for i := range v {
				tot[i] += v[i]
			}
		}
		return tot
	}
	prof, err := ParseProfile(rules, sum(&PrepPlan{Phase: PrepProfile, Rules: rules}))
	if err != nil {
		t.Fatal(err)
	}
	// Kept rows: 1, 2, 3, 5 (4 lacks color, 6 its label).
	if prof.Rows != 6 || prof.Kept != 4 || prof.Missing[0] != 1 || prof.Missing[2] != 1 || !slices.Equal(prof.Candidates[1], []float64{2, 1, 0}) {
		t.Fatalf("profile %+v", prof)
	}
	ranges := [][2]float64{prof.HistogramRange(rules, 2)}
	hist := sum(&PrepPlan{Phase: PrepHistogram, Rules: rules, Ranges: ranges})
	cols, err := Resolve(rules, prof, ranges, hist)
	if err != nil {
		t.Fatal(err)
	}
	if cols[0].Fill != float32((31+40+50)/3.0) {
		t.Errorf("mean fill %v", cols[0].Fill)
	}
	// Pooled present incomes of kept rows: 100, 200, 100000 → median 200.
	if math.Abs(float64(cols[2].Fill)-200) > 10 {
		t.Errorf("median fill %v", cols[2].Fill)
	}
	if !slices.Equal(cols[1].Categories, []string{"red", "blue"}) || cols[2].Hi == nil || *cols[2].Hi != 1000 {
		t.Errorf("columns %+v", cols)
	}
	plan := &PrepPlan{Phase: PrepApply, Columns: cols, Moments: true}
	q, err := ParseQuality(plan, sum(plan))
	if err != nil {
		t.Fatal(err)
	}
	_, pooled, _ := CleanTable(tab, nil, cols)
	if q.Report != pooled || q.Moments.Count[0] != 4 {
		t.Fatalf("quality %+v, pooled %+v", q.Report, pooled)
	}
}
