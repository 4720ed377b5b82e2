package demo

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writePlot draws test accuracy per round into a PNG.
func writePlot(path string, rounds []RoundLine, target float64) error {
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
	p.Legend.Top, p.Legend.Left = false, false
	p.Y.Min, p.Y.Max = 0, 1
	return p.Save(7*vg.Inch, 4*vg.Inch, path)
}
