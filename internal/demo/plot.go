package demo

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writePlot draws test accuracy per round, and the federated held-out
// accuracy of the evaluations if any, into a PNG.
func writePlot(path string, rounds []RoundLine, evals []EvalLine, target float64) error {
	p := plot.New()
	p.Title.Text = "fedge: federated 2nn on non-IID MNIST with secure aggregation"
	p.X.Label.Text = "round"
	p.Y.Label.Text = "test accuracy"
	pts := make(plotter.XYs, len(rounds))
	for i, r := range rounds {
		pts[i].X, pts[i].Y = float64(r.Round), r.Accuracy
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return fmt.Errorf("demo.writePlot: %w", err)
	}
	p.Add(line, plotter.NewGrid())
	if len(rounds) > 0 {
		goal, err := plotter.NewLine(plotter.XYs{{X: 1, Y: target}, {X: float64(rounds[len(rounds)-1].Round), Y: target}})
		if err == nil {
			goal.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
			p.Add(goal)
			p.Legend.Add(fmt.Sprintf("target %.0f%%", 100*target), goal)
		}
	}
	p.Legend.Add("test accuracy", line)
	if len(evals) > 0 {
		held := make(plotter.XYs, len(evals))
		for i, e := range evals {
			held[i].X, held[i].Y = float64(e.AfterRound), e.Accuracy
		}
		hl, pts, err := plotter.NewLinePoints(held)
		if err != nil {
			return fmt.Errorf("demo.writePlot: %w", err)
		}
		hl.Color = color.RGBA{R: 200, A: 255}
		pts.Color = hl.Color
		p.Add(hl, pts)
		p.Legend.Add("held-out accuracy (federated, SecAgg+)", hl, pts)
	}
	p.Legend.Top, p.Legend.Left = false, false
	p.Y.Min, p.Y.Max = 0, 1
	return p.Save(7*vg.Inch, 4*vg.Inch, path)
}
