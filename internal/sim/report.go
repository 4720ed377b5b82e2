package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"image/color"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// csvHeader names WriteCSV's columns: the job, then RoundLine's fields.
// clip_norm came last, later than the others: ReadCSV also reads files
// written without it (ClipNorm 0).
var csvHeader = []string{"job", "round", "model", "participants", "test_accuracy", "test_loss", "train_loss", "epsilon",
	"bytes_in", "bytes_out", "seconds", "coordinator_seconds", "clip_norm"}

// WriteCSV writes every job's rounds to path, a header and a row per
// round.
func WriteCSV(path string, jobs []JobResult) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim.WriteCSV: %w", err)
	}
	w := csv.NewWriter(f)
	_ = w.Write(csvHeader)
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	for _, j := range jobs {
		for _, r := range j.Rounds {
			_ = w.Write([]string{j.ID, strconv.Itoa(r.Round), strconv.FormatUint(r.Model, 10), strconv.Itoa(r.Participants),
				g(r.TestAccuracy), g(r.TestLoss), g(r.TrainLoss), g(r.Epsilon),
				strconv.FormatInt(r.BytesIn, 10), strconv.FormatInt(r.BytesOut, 10), g(r.Seconds), g(r.CoordSeconds), g(r.ClipNorm)})
		}
	}
	w.Flush()
	err = w.Error()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sim.WriteCSV: %w", err)
	}
	return nil
}

// WritePlot draws, for every job, test accuracy, the coordinator's bytes
// and the round times per round into a PNG of three panels.
func WritePlot(path, title string, jobs []JobResult) error {
	type panel struct {
		y     string
		value func(RoundLine) float64
	}
	panels := []panel{
		{"test accuracy", func(r RoundLine) float64 { return r.TestAccuracy }},
		{"coordinator MB in+out", func(r RoundLine) float64 { return float64(r.BytesIn+r.BytesOut) / 1e6 }},
		{"round seconds", func(r RoundLine) float64 { return r.Seconds }},
	}
	img := vgimg.New(7*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadY: vg.Points(6), PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	for i, pn := range panels {
		p := plot.New()
		if i == 0 {
			p.Title.Text = title
		}
		p.X.Label.Text = "round"
		p.Y.Label.Text = pn.y
		p.Add(plotter.NewGrid())
		for k, j := range jobs {
			pts := make(plotter.XYs, len(j.Rounds))
			for n, r := range j.Rounds {
				pts[n].X, pts[n].Y = float64(r.Round), pn.value(r)
			}
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return fmt.Errorf("sim.WritePlot: %w", err)
			}
			l.Color, s.Color = plotutil.Color(k), plotutil.Color(k)
			p.Add(l, s)
			if i == 0 && len(jobs) > 1 {
				p.Legend.Add(jobLabel(j), l, s)
			}
		}
		if i == 0 {
			p.Y.Min, p.Y.Max = 0, 1
			p.Legend.Top, p.Legend.Left = false, false
		}
		p.Draw(tiles.At(dc, 0, i))
	}
	return savePNG(path, img)
}

// jobLabel names a job in a legend by its name and, with DP, its noise.
func jobLabel(j JobResult) string {
	if j.Spec.DP.Enabled {
		return fmt.Sprintf("%s (z=%g)", j.Spec.Name, j.Spec.DP.NoiseMultiplier)
	}
	return j.Spec.Name
}

// Series is one line of WriteEpsilonPlot: the jobs of one fleet.
type Series struct {
	Name string
	Jobs []JobResult
	// EveryRound draws every committed round of the jobs (the test
	// accuracy of the model a round committed against the job's ε after
	// it) instead of each job's last round only.
	EveryRound bool
}

// WriteEpsilonPlot draws each series' final test accuracy against the
// job's final ε (jobs without DP are left out), or every round's with
// Series.EveryRound, with a horizontal line at target if it is positive.
func WriteEpsilonPlot(path, title string, series []Series, target float64) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "ε (δ = 1e-5)"
	p.Y.Label.Text = "test accuracy"
	p.Add(plotter.NewGrid())
	maxEps := 0.0
	for k, s := range series {
		var pts plotter.XYs
		for _, j := range s.Jobs {
			lines := []RoundLine{j.Last()}
			if s.EveryRound {
				lines = j.Rounds
			}
			for _, l := range lines {
				if l.Epsilon > 0 {
					pts = append(pts, plotter.XY{X: l.Epsilon, Y: l.TestAccuracy})
					maxEps = max(maxEps, l.Epsilon)
				}
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("sim.WriteEpsilonPlot: %w", err)
		}
		l.Color, sc.Color = plotutil.Color(k), plotutil.Color(k)
		p.Add(l, sc)
		p.Legend.Add(s.Name, l, sc)
	}
	if target > 0 && maxEps > 0 {
		goal, err := plotter.NewLine(plotter.XYs{{X: 0, Y: target}, {X: maxEps, Y: target}})
		if err == nil {
			goal.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
			goal.Color = color.Gray{Y: 120}
			p.Add(goal)
			p.Legend.Add(fmt.Sprintf("goal %.0f%%", 100*target), goal)
		}
	}
	p.Legend.Top, p.Legend.Left = false, false
	img := vgimg.New(7*vg.Inch, 4*vg.Inch)
	p.Draw(draw.New(img))
	return savePNG(path, img)
}

func savePNG(path string, img *vgimg.Canvas) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// ErrNotRounds is returned by ReadCSV for a file WriteCSV did not write.
var ErrNotRounds = errors.New("sim: not a rounds.csv of fedge simulate")

// ReadCSV reads a file WriteCSV wrote back into its jobs: their IDs and
// rounds (the file holds no spec).
func ReadCSV(path string) ([]JobResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sim.ReadCSV: %w", err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("sim.ReadCSV: %s: %w (%v)", path, ErrNotRounds, err)
	}
	if len(rows) == 0 || len(rows[0]) < len(csvHeader)-1 || len(rows[0]) > len(csvHeader) || !slices.Equal(rows[0], csvHeader[:len(rows[0])]) {
		return nil, fmt.Errorf("sim.ReadCSV: %s: %w", path, ErrNotRounds)
	}
	withClip := len(rows[0]) == len(csvHeader)
	var jobs []JobResult
	for n, row := range rows[1:] {
		var r RoundLine
		var errs [12]error
		r.Round, errs[0] = strconv.Atoi(row[1])
		r.Model, errs[1] = strconv.ParseUint(row[2], 10, 64)
		r.Participants, errs[2] = strconv.Atoi(row[3])
		r.TestAccuracy, errs[3] = strconv.ParseFloat(row[4], 64)
		r.TestLoss, errs[4] = strconv.ParseFloat(row[5], 64)
		r.TrainLoss, errs[5] = strconv.ParseFloat(row[6], 64)
		r.Epsilon, errs[6] = strconv.ParseFloat(row[7], 64)
		r.BytesIn, errs[7] = strconv.ParseInt(row[8], 10, 64)
		r.BytesOut, errs[8] = strconv.ParseInt(row[9], 10, 64)
		r.Seconds, errs[9] = strconv.ParseFloat(row[10], 64)
		r.CoordSeconds, errs[10] = strconv.ParseFloat(row[11], 64)
		if withClip {
			r.ClipNorm, errs[11] = strconv.ParseFloat(row[12], 64)
		}
		for _, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("sim.ReadCSV: %s line %d: %w", path, n+2, err)
			}
		}
		if len(jobs) == 0 || jobs[len(jobs)-1].ID != row[0] {
			jobs = append(jobs, JobResult{ID: row[0]})
		}
		jobs[len(jobs)-1].Rounds = append(jobs[len(jobs)-1].Rounds, r)
	}
	return jobs, nil
}
