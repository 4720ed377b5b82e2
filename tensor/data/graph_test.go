package data

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fedge/fedge/tensor"
)

const (
	testEdges = "# a triangle and a tail\n" +
		"10 20\n" +
		"20 30   # trailing comment\n" +
		"\n" +
		"30,10\n" +
		"30 40\n" +
		"40 30\n" // duplicate, merged
	testFeatures = "10 1 0\n" +
		"20, 0.5, 1\n" +
		"# comment\n" +
		"30 0 0\n" +
		"40 -1 2e0\n"
	testLabels = "40 cat\n10 dog\n20 dog\n30 cat\n"
)

func TestReadGraph(t *testing.T) {
	gt, err := ReadGraph(strings.NewReader(testEdges), strings.NewReader(testFeatures), strings.NewReader(testLabels), GraphOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := gt.Graph
	if !slices.Equal(gt.IDs, []int64{10, 20, 30, 40}) || !slices.Equal(gt.Classes, []string{"cat", "dog"}) || gt.Edges != 5 {
		t.Fatalf("ids %v classes %v edges %d", gt.IDs, gt.Classes, gt.Edges)
	}
	if g.Nodes() != 4 || g.Features != 2 || g.Classes != 2 || !slices.Equal(g.Y, []int32{1, 1, 0, 0}) ||
		!slices.Equal(g.X, []float32{1, 0, 0.5, 1, 0, 0, -1, 2}) {
		t.Fatalf("graph %+v", g)
	}
	want, _ := tensor.NormalizeAdjacency(4, [][2]int32{{0, 1}, {1, 2}, {2, 0}, {2, 3}})
	if !reflect.DeepEqual(g.Adj, want) {
		t.Fatalf("adjacency %+v, want %+v", g.Adj, want)
	}
	// Node 2 (id 30) has neighbours 0, 1, 3 and itself: degree 4.
	if v := g.Adj.Val[g.Adj.RowPtr[3]]; math.Abs(float64(v)-1/math.Sqrt(2*4)) > 1e-6 {
		t.Fatalf("A[3][2] = %v", v)
	}
}

func TestReadGraphOptions(t *testing.T) {
	edges := testEdges + "10 99\n"
	_, err := ReadGraph(strings.NewReader(edges), strings.NewReader(testFeatures), strings.NewReader(testLabels), GraphOptions{})
	var le *LineError
	if !errors.Is(err, ErrFormat) || !errors.As(err, &le) || le.Input != "edges" || le.Line != 8 {
		t.Fatalf("unknown node: err = %v", err)
	}
	gt, err := ReadGraph(strings.NewReader(edges), strings.NewReader(testFeatures), strings.NewReader(testLabels),
		GraphOptions{SkipUnknownEdges: true, Classes: []string{"dog", "cat", "bird"}})
	if err != nil {
		t.Fatal(err)
	}
	if gt.SkippedEdges != 1 || gt.Graph.Classes != 3 || !slices.Equal(gt.Graph.Y, []int32{0, 0, 1, 1}) {
		t.Fatalf("skipped %d classes %d y %v", gt.SkippedEdges, gt.Graph.Classes, gt.Graph.Y)
	}
}

func TestReadGraphErrors(t *testing.T) {
	tests := []struct {
		name                    string
		edges, features, labels string
		opts                    GraphOptions
		want                    error
		input                   string
		line                    int
	}{
		{"no nodes", "", "# nothing\n", "", GraphOptions{}, ErrFormat, "", 0},
		{"feature id not int", "", "a 1\n", "", GraphOptions{}, ErrFormat, "features", 1},
		{"no features", "", "1\n", "", GraphOptions{}, ErrFormat, "features", 1},
		{"ragged features", "", "1 2 3\n2 4\n", "", GraphOptions{}, ErrFormat, "features", 2},
		{"duplicate node", "", "1 2\n1 4\n", "", GraphOptions{}, ErrFormat, "features", 2},
		{"NaN feature", "", "1 2\n2 NaN\n", "", GraphOptions{}, ErrFormat, "features", 2},
		{"bad feature", "", "1 2\n2 x\n", "", GraphOptions{}, ErrFormat, "features", 2},
		{"empty csv field", "", "1,,2\n", "", GraphOptions{}, ErrFormat, "features", 1},
		{"edge with three ids", "1 2 3\n", "1 0\n2 0\n", "1 a\n2 a\n", GraphOptions{}, ErrFormat, "edges", 1},
		{"edge id not int", "1 2\n1 b\n", "1 0\n2 0\n", "1 a\n2 a\n", GraphOptions{}, ErrFormat, "edges", 2},
		{"edge to unknown", "1 2\n2 3\n", "1 0\n2 0\n", "1 a\n2 a\n", GraphOptions{}, ErrFormat, "edges", 2},
		{"unlabelled node", "1 2\n", "1 0\n2 0\n", "1 a\n", GraphOptions{}, ErrFormat, "", 0},
		{"label unknown node", "1 2\n", "1 0\n2 0\n", "1 a\n2 a\n3 a\n", GraphOptions{}, ErrFormat, "labels", 3},
		{"label twice", "1 2\n", "1 0\n2 0\n", "1 a\n1 a\n", GraphOptions{}, ErrFormat, "labels", 2},
		{"label fields", "1 2\n", "1 0\n2 0\n", "1\n", GraphOptions{}, ErrFormat, "labels", 1},
		{"label not in classes", "1 2\n", "1 0\n2 0\n", "1 a\n2 b\n", GraphOptions{Classes: []string{"a"}}, ErrFormat, "labels", 2},
		{"too many nodes", "", "1 0\n2 0\n3 0\n", "", GraphOptions{MaxNodes: 2}, ErrLimit, "features", 3},
		{"too many features", "", "1 0 0 0\n", "", GraphOptions{MaxFeatures: 2}, ErrLimit, "features", 1},
		{"too many values", "", "1 0 0\n2 0 0\n", "", GraphOptions{MaxValues: 3}, ErrLimit, "features", 2},
		{"too many edges", "1 2\n2 1\n1 2\n", "1 0\n2 0\n", "1 a\n2 a\n", GraphOptions{MaxEdges: 2}, ErrLimit, "edges", 3},
		{"line too long", "", "1 " + strings.Repeat("0 ", 100) + "\n", "", GraphOptions{MaxLine: 64}, ErrLimit, "features", 1},
		{"limits overflow int32", "", "1 0\n", "", GraphOptions{MaxEdges: math.MaxInt32}, ErrLimit, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadGraph(strings.NewReader(tt.edges), strings.NewReader(tt.features), strings.NewReader(tt.labels), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var le *LineError
			if tt.line > 0 && (!errors.As(err, &le) || le.Input != tt.input || le.Line != tt.line) {
				t.Fatalf("err = %v, want %s line %d", err, tt.input, tt.line)
			}
		})
	}
}

func TestReadGraphFiles(t *testing.T) {
	dir := t.TempDir()
	paths := writeFiles(t, dir, map[string]string{"e": testEdges, "f": testFeatures, "l": testLabels})
	gt, err := ReadGraphFiles(paths["e"], paths["f"], paths["l"], GraphOptions{})
	if err != nil || gt.Graph.Nodes() != 4 {
		t.Fatalf("%v %v", gt, err)
	}
	if _, err := ReadGraphFiles(paths["e"], dir+"/missing", paths["l"], GraphOptions{}); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestSyntheticGraph(t *testing.T) {
	g, err := SyntheticGraph(2000, 4, 16, 3)
	if err != nil {
		t.Fatal(err)
	}
	if g.Nodes() != 2000 || g.Features != 16 || g.Classes != 4 || len(g.X) != 2000*16 || g.Adj.Rows != 2000 {
		t.Fatalf("graph of %d nodes, %d features, %d classes", g.Nodes(), g.Features, g.Classes)
	}
	count := make([]int, 4)
	for _, l := range g.Y {
		count[l]++
	}
	if !slices.Equal(count, []int{500, 500, 500, 500}) {
		t.Fatalf("class sizes %v", count)
	}
	within, total := 0, 0
	for i := range g.Nodes() {
		for _, j := range g.Adj.ColIdx[g.Adj.RowPtr[i]:g.Adj.RowPtr[i+1]] {
			if int(j) != i {
				total++
				if g.Y[j] == g.Y[i] {
					within++
				}
			}
		}
	}
	deg, homophily := float64(total)/2000, float64(within)/float64(total)
	if deg < 7 || deg > 8.5 || math.Abs(homophily-0.8) > 0.03 {
		t.Fatalf("average degree %v homophily %v, want about 8 and 0.8", deg, homophily)
	}
	// Learnable from features, better with neighbours: a nearest-class-mean
	// classifier on the raw features, then on the features averaged by the
	// normalized adjacency (one GCN propagation).
	raw := nearestMeanAccuracy(g.X, g.Y, 16, 4)
	prop := nearestMeanAccuracy(propagate(g.Adj, g.X, 16), g.Y, 16, 4)
	t.Logf("nearest class mean accuracy: features %.3f, propagated %.3f", raw, prop)
	if raw < 0.4 || raw > 0.85 || prop < raw+0.1 {
		t.Fatalf("accuracy %v from features, %v after propagation", raw, prop)
	}
	again, _ := SyntheticGraph(2000, 4, 16, 3)
	other, _ := SyntheticGraph(2000, 4, 16, 4)
	if !reflect.DeepEqual(g, again) || reflect.DeepEqual(g.Y, other.Y) {
		t.Fatal("not determined by the seed")
	}
	for _, bad := range []SBMConfig{
		{Nodes: 1, Classes: 1, Features: 1},
		{Nodes: 10, Classes: 11, Features: 1},
		{Nodes: 10, Classes: 6, Features: 1, Homophily: 1},
		{Nodes: 10, Classes: 2, Features: 0},
		{Nodes: 10, Classes: 2, Features: 2, AvgDegree: 20},
		{Nodes: 10, Classes: 2, Features: 2, Homophily: 1.5},
		{Nodes: 10, Classes: 2, Features: 2, Noise: -1},
	} {
		if _, err := bad.Generate(); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func propagate(a *tensor.CSR, x []float32, f int) []float32 {
	out := make([]float32, len(x))
	for i := range a.Rows {
		for k := a.RowPtr[i]; k < a.RowPtr[i+1]; k++ {
			j, v := int(a.ColIdx[k]), a.Val[k]
			for c := range f {
				out[i*f+c] += v * x[j*f+c]
			}
		}
	}
	return out
}

func nearestMeanAccuracy(x []float32, y []int32, f, k int) float64 {
	mean := make([]float64, k*f)
	count := make([]float64, k)
	for i, l := range y {
		count[l]++
		for c := range f {
			mean[int(l)*f+c] += float64(x[i*f+c])
		}
	}
	for l := range k {
		for c := range f {
			mean[l*f+c] /= count[l]
		}
	}
	right := 0
	for i, l := range y {
		best, bestD := -1, math.Inf(1)
		for m := range k {
			var d float64
			for c := range f {
				e := float64(x[i*f+c]) - mean[m*f+c]
				d += e * e
			}
			if d < bestD {
				best, bestD = m, d
			}
		}
		if int32(best) == l {
			right++
		}
	}
	return float64(right) / float64(len(y))
}

func TestSplitGraph(t *testing.T) {
	g, err := SyntheticGraph(300, 3, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	parts := PartitionIID(300, 3, 2)
	parts[2] = parts[2][:50] // parts need not cover the graph
	subs, err := SplitGraph(g, parts)
	if err != nil {
		t.Fatal(err)
	}
	// Count g's edges inside each part.
	partOf := map[int]int{}
	for c, p := range parts {
		for _, v := range p {
			partOf[v] = c
		}
	}
	wantEdges := make([]int, 3)
	for i := range g.Nodes() {
		for _, j := range g.Adj.ColIdx[g.Adj.RowPtr[i]:g.Adj.RowPtr[i+1]] {
			ci, oki := partOf[i]
			cj, okj := partOf[int(j)]
			if int(j) > i && oki && okj && ci == cj {
				wantEdges[ci]++
			}
		}
	}
	for c, sub := range subs {
		if sub.Nodes() != len(parts[c]) || sub.Features != 4 || sub.Classes != 3 {
			t.Fatalf("part %d: %d nodes", c, sub.Nodes())
		}
		for li, v := range parts[c] {
			if sub.Y[li] != g.Y[v] || !slices.Equal(sub.X[li*4:li*4+4], g.X[v*4:v*4+4]) {
				t.Fatalf("part %d node %d: features or label not copied", c, li)
			}
		}
		// nnz = nodes (self loops) + 2 × edges.
		if got := len(sub.Adj.ColIdx) - sub.Nodes(); got != 2*wantEdges[c] {
			t.Fatalf("part %d: %d off-diagonal entries, want %d", c, got, 2*wantEdges[c])
		}
	}
	if wantEdges[0] == 0 {
		t.Fatal("no edge kept inside part 0")
	}
	for _, bad := range [][][]int{{{0, 1}, {1, 2}}, {{-1}}, {{300}}} {
		if _, err := SplitGraph(g, bad); !errors.Is(err, ErrPartition) {
			t.Errorf("parts %v: err = %v", bad, err)
		}
	}
}
