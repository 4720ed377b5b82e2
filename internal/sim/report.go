package sim

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// csvHeader names RoundLine's fields in WriteCSV's columns.
var csvHeader = []string{"round", "model", "participants", "test_accuracy", "test_loss", "train_loss", "epsilon",
	"bytes_in", "bytes_out", "seconds", "coordinator_seconds"}

// WriteCSV writes the rounds to path, a header and a row per round.
func WriteCSV(path string, rounds []RoundLine) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim.WriteCSV: %w", err)
	}
	w := csv.NewWriter(f)
	_ = w.Write(csvHeader)
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	for _, r := range rounds {
		_ = w.Write([]string{strconv.Itoa(r.Round), strconv.FormatUint(r.Model, 10), strconv.Itoa(r.Participants),
			g(r.TestAccuracy), g(r.TestLoss), g(r.TrainLoss), g(r.Epsilon),
			strconv.FormatInt(r.BytesIn, 10), strconv.FormatInt(r.BytesOut, 10), g(r.Seconds), g(r.CoordSeconds)})
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

// WritePlot draws test accuracy, the coordinator's bytes and the round
// times per round into a PNG of three panels.
func WritePlot(path, title string, rounds []RoundLine) error {
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
		pts := make(plotter.XYs, len(rounds))
		for j, r := range rounds {
			pts[j].X, pts[j].Y = float64(r.Round), pn.value(r)
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("sim.WritePlot: %w", err)
		}
		l.Color = color.RGBA{B: 180, A: 255}
		s.Color = l.Color
		p.Add(plotter.NewGrid(), l, s)
		if i == 0 {
			p.Y.Min, p.Y.Max = 0, 1
		}
		p.Draw(tiles.At(dc, 0, i))
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim.WritePlot: %w", err)
	}
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sim.WritePlot: %w", err)
	}
	return nil
}
