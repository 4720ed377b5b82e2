package testcluster_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// messyRows generates n rows of a table with a learnable rule: the label
// is 1 when 0.75·(x1−5) − (2/3)·(x2+1) + effect(color) > 0. With missing,
// 10% of x1 and of x2 cells and 4% of color cells are empty, and 0.5% of
// x2 values are sensor glitches 300 too high (the label follows the true
// value).
func messyRows(r *rand.Rand, n int, missing bool) []string {
	colors := []string{"red", "green", "blue"}
	effect := map[string]float64{"red": 1, "green": -1, "blue": 0}
	rows := make([]string, 0, n)
	for range n {
		x1, x2 := r.NormFloat64()*2+5, r.NormFloat64()*3-1
		color := colors[r.IntN(3)]
		label := 0
		if 0.75*(x1-5)-2.0/3*(x2+1)+effect[color] > 0 {
			label = 1
		}
		c1, c2, c3 := fmt.Sprintf("%.4f", x1), fmt.Sprintf("%.4f", x2), color
		if missing {
			if r.Float64() < 0.005 {
				c2 = fmt.Sprintf("%.4f", x2+300)
			}
			if r.Float64() < 0.1 {
				c1 = ""
			}
			if r.Float64() < 0.1 {
				c2 = ""
			}
			if r.Float64() < 0.04 {
				c3 = ""
			}
		}
		rows = append(rows, fmt.Sprintf("%s,%s,%s,%d", c1, c2, c3, label))
	}
	return rows
}

const messyHeader = "x1,x2,color,label\n"

func rawTable(t *testing.T, rows []string) *data.RawTable {
	t.Helper()
	tab, err := data.ReadRawCSV(strings.NewReader(messyHeader+strings.Join(rows, "\n")+"\n"), data.CSVOptions{Label: "label", Classes: []string{"0", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// exactQuantile is the q-quantile of sorted values (nearest rank).
func exactQuantile(sorted []float32, q float64) float64 {
	return float64(sorted[int(math.Round(q*float64(len(sorted)-1)))])
}

// TestFederatedCleaning runs a job with cleaning rules, clipping and a
// categorical column over 4 real agents (QUIC, Raft, SecAgg+), each
// holding a quarter of a messy CSV: the fills equal the pooled mean and
// (to one histogram bin) median, the job's record shows the federation's
// data quality, and the model matches, within 1 point of accuracy, the
// same model trained centrally on the pooled data cleaned with the same
// rules.
func TestFederatedCleaning(t *testing.T) {
	heavy(t)
	const agents, perAgent, rounds = 4, 500, 8
	r := rand.New(rand.NewPCG(7, 11))
	all := messyRows(r, agents*perAgent, true)
	dir := t.TempDir()
	for i := range agents {
		body := messyHeader + strings.Join(all[i*perAgent:(i+1)*perAgent], "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("part%d.csv", i)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := testcluster.New(t, testcluster.Options{Agents: agents, MNIST: "unused", Agent: func(i int, cfg *agent.Config) {
		cfg.Dataset = agent.DatasetConfig{Kind: agent.DatasetCSV, Path: filepath.Join(dir, fmt.Sprintf("part%d.csv", i)),
			LabelColumn: "label", Classes: []string{"0", "1"}}
	}})
	rules := []data.ColumnRule{
		{Name: "x1", Missing: tensor.ColumnMean},
		{Name: "x2", Missing: tensor.ColumnMedian, Clip: []float64{0.01, 0.99}, Range: []float64{-20, 20}, Bins: 400},
		{Name: "color", Missing: tensor.ColumnDrop, Candidates: []string{"red", "green", "blue", "violet"}},
	}
	const binWidth = 40.0 / 400
	spec := api.JobSpec{
		Name: "clean", Spec: []byte(`{"name": "tab", "input": [1], "layers": [{"type": "dense", "units": 2}]}`),
		Rounds: rounds, Fraction: 1, MinClients: 3, Seed: 1,
		Data:     api.DataSchema{Kind: "csv", Standardize: true, Columns: rules},
		Plan:     api.LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		Deadline: api.Deadlines{Download: api.Duration(5 * time.Second), Train: api.Duration(15 * time.Second), Stage: api.Duration(5 * time.Second)},
	}
	job := c.StartJob(spec)
	done := c.WaitCommitted(job, rounds, 180*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fed, err := c.Admin.FetchModel(ctx, done[len(done)-1].ModelOut)
	if err != nil {
		t.Fatal(err)
	}
	cols := fed.Spec.Columns
	if len(cols) != 3 || !slices.Equal(cols[2].Categories, []string{"red", "green", "blue"}) || fed.Features() != 5 {
		t.Fatalf("model columns %+v, %d features", cols, fed.Features())
	}

	// The pooled data, as one host would hold it.
	pooled := rawTable(t, all)
	var x1, x2 []float32
	kept, dropped, filled := 0, 0, 0
	for i := range pooled.Rows() {
		if pooled.Column("color").Text[i] == "" {
			dropped++
			continue
		}
		kept++
		for _, col := range []struct {
			v   float32
			dst *[]float32
		}{{pooled.Column("x1").Values[i], &x1}, {pooled.Column("x2").Values[i], &x2}} {
			if col.v != col.v {
				filled++
			} else {
				*col.dst = append(*col.dst, col.v)
			}
		}
	}
	var sum float64
	for _, v := range x1 {
		sum += float64(v)
	}
	mean := sum / float64(len(x1))
	slices.Sort(x2)
	median := (float64(x2[(len(x2)-1)/2]) + float64(x2[len(x2)/2])) / 2
	qlo, qhi := exactQuantile(x2, 0.01), exactQuantile(x2, 0.99)
	t.Logf("federated fills: x1 %v (pooled mean %v), x2 %v (pooled median %v); clip [%v, %v] (pooled [%v, %v])",
		cols[0].Fill, mean, cols[1].Fill, median, *cols[1].Lo, *cols[1].Hi, qlo, qhi)
	if math.Abs(float64(cols[0].Fill)-mean) > 1e-4*math.Max(1, math.Abs(mean)) {
		t.Errorf("x1 fill %v, pooled mean %v", cols[0].Fill, mean)
	}
	if math.Abs(float64(cols[1].Fill)-median) > binWidth {
		t.Errorf("x2 fill %v, pooled median %v (bin %v)", cols[1].Fill, median, binWidth)
	}
	if math.Abs(float64(*cols[1].Lo)-qlo) > 2*binWidth || math.Abs(float64(*cols[1].Hi)-qhi) > 2*binWidth {
		t.Errorf("x2 clip [%v, %v], pooled quantiles [%v, %v]", *cols[1].Lo, *cols[1].Hi, qlo, qhi)
	}

	// The job's record: the federation's data quality, summed securely.
	var js api.Job
	if err := c.Admin.Call(ctx, api.VerbJobsStatus, api.QueryOptions{}, api.IDRequest{ID: job}, &js); err != nil {
		t.Fatal(err)
	}
	_, pooledRep, err := data.CleanTable(pooled, nil, cols)
	if err != nil {
		t.Fatal(err)
	}
	q := js.Data
	if q == nil || q.Agents != agents || q.Rows != len(all) || q.Kept != kept || q.Dropped != dropped || q.Filled != filled ||
		q.Clipped != pooledRep.Clipped || q.Clipped == 0 || q.Unknown != 0 {
		t.Fatalf("job data quality %+v; pooled: %d rows, %d kept, %d dropped, %d filled, %d clipped", q, len(all), kept, dropped, filled, pooledRep.Clipped)
	}
	prep := 0
	for _, rd := range c.Rounds(job) {
		if rd.Kind == api.RoundPrep {
			prep++
			if rd.State != api.RoundCommitted {
				t.Fatalf("preparation round %+v", rd)
			}
			t.Logf("preparation round %d (phase %v): %.3f s, %d bytes in, %d out", rd.ID, rd.Metrics["phase"], rd.Metrics["seconds"], rd.BytesIn, rd.BytesOut)
		}
	}
	if prep != 3 {
		t.Fatalf("%d preparation rounds, want 3 (profile, histogram, apply)", prep)
	}

	// The same model trained centrally on the pooled data, cleaned with
	// the same rules from the pooled statistics.
	lo, hi := float32(qlo), float32(qhi)
	central := []tensor.InputColumn{
		{Name: "x1", Missing: tensor.ColumnMean, Fill: float32(mean)},
		{Name: "x2", Missing: tensor.ColumnMedian, Fill: float32(median), Lo: &lo, Hi: &hi},
		{Name: "color", Missing: tensor.ColumnDrop, Categories: []string{"red", "green", "blue"}},
	}
	train, _, err := data.CleanTable(pooled, nil, central)
	if err != nil {
		t.Fatal(err)
	}
	st := data.NewStandardizer(data.ComputeStats(train))
	cspec, err := tensor.Spec{Name: "tab", Input: []int{5}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 2}}, Columns: central}.Standardized(st.Mean, st.InvStd)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := tensor.NewModel(cspec, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tensor.Train(ctx, cm, train, tensor.TrainConfig{Epochs: rounds, BatchSize: 10, Seed: 1, Optimizer: tensor.NewSGD(tensor.SGDConfig{LR: 0.1})}); err != nil {
		t.Fatal(err)
	}
	test := rawTable(t, messyRows(rand.New(rand.NewPCG(99, 1)), 4000, false))
	accuracy := func(m *tensor.Model) float64 {
		ds, _, err := data.CleanTable(test, nil, m.Spec.Columns)
		if err != nil {
			t.Fatal(err)
		}
		met, err := tensor.Evaluate(m, ds)
		if err != nil {
			t.Fatal(err)
		}
		return met.Accuracy()
	}
	fedAcc, centralAcc := accuracy(fed), accuracy(cm)
	t.Logf("test accuracy: federated %.4f, central %.4f; quality %+v", fedAcc, centralAcc, *q)
	if fedAcc < 0.9 || math.Abs(fedAcc-centralAcc) > 0.01 {
		t.Fatalf("federated accuracy %.4f, central %.4f: more than 1 point apart (or below 0.9)", fedAcc, centralAcc)
	}
}
