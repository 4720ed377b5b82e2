package main

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writeOutputs writes every result's CSV, one plot of all curves
// (<stem>.png) and, for several results, the Markdown table (<stem>.md),
// which it also prints.
func writeOutputs(cfg *config, results []*result, stem string, out io.Writer) error {
	var files []string
	for _, r := range results {
		p := filepath.Join(cfg.out, r.run.file())
		if err := writeCSV(p, r); err != nil {
			return err
		}
		files = append(files, p)
	}
	png := filepath.Join(cfg.out, stem+".png")
	if err := writePlot(png, results, cfg.target); err != nil {
		return err
	}
	files = append(files, png)
	if cfg.table {
		md := markdownTable(cfg, results)
		fmt.Fprint(out, "\n"+md)
		p := filepath.Join(cfg.out, stem+".md")
		if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
			return err
		}
		files = append(files, p)
	}
	fmt.Fprintf(out, "wrote %s\n", strings.Join(files, ", "))
	return nil
}

// writeCSV writes one curve: a row per round.
func writeCSV(path string, r *result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"round", "test_accuracy", "served_accuracy", "train_loss", "survivors", "bytes_up", "bytes_down", "seconds"})
	for _, l := range r.lines {
		_ = w.Write([]string{
			strconv.Itoa(l.Round), fmt.Sprintf("%.4f", l.Accuracy), fmt.Sprintf("%.4f", l.Served),
			fmt.Sprintf("%.5f", l.TrainLoss), strconv.Itoa(l.Survivors),
			strconv.FormatInt(l.BytesUp, 10), strconv.FormatInt(l.BytesDown, 10), fmt.Sprintf("%.3f", l.Seconds),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writePlot draws served test accuracy per round for every result of the
// first seed.
func writePlot(path string, results []*result, target float64) error {
	p := plot.New()
	p.Title.Text = "FedAvg, 2NN on MNIST: 100 clients, C=0.1, E=1, B=10"
	p.X.Label.Text = "communication round"
	p.Y.Label.Text = "test accuracy"
	palette := []color.Color{
		color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 255, G: 127, B: 14, A: 255},
		color.RGBA{R: 44, G: 160, B: 44, A: 255}, color.RGBA{R: 214, G: 39, B: 40, A: 255},
		color.RGBA{R: 148, G: 103, B: 189, A: 255}, color.RGBA{R: 140, G: 86, B: 75, A: 255},
	}
	last, lo := 1, 1.0
	i := -1
	for _, r := range results {
		if r.run.seed != results[0].run.seed {
			continue
		}
		i++
		pts := make(plotter.XYs, len(r.lines))
		for j, l := range r.lines {
			pts[j].X, pts[j].Y = float64(l.Round), l.Served
			lo = min(lo, l.Served)
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("writePlot: %w", err)
		}
		line.Color = palette[i%len(palette)]
		p.Add(line)
		p.Legend.Add(r.run.name(), line)
		last = max(last, len(r.lines))
	}
	goal, err := plotter.NewLine(plotter.XYs{{X: 1, Y: target}, {X: float64(last), Y: target}})
	if err != nil {
		return fmt.Errorf("writePlot: %w", err)
	}
	goal.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(goal, plotter.NewGrid())
	p.Legend.Add(fmt.Sprintf("target %.0f%%", 100*target), goal)
	p.Legend.Top, p.Legend.Left = false, false
	// Lines are clipped to the data area: zoom on the last points below
	// the target, where the runs differ.
	p.Y.Min, p.Y.Max = max(0, lo-0.02, target-0.12), 1
	p.X.Min, p.X.Max = 1, float64(last)
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}

// markdownTable compares rounds to the target with the paper's figures:
// one row per combination, the median over seeds.
func markdownTable(cfg *config, results []*result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| partition | secure aggregation | download | rounds to %.0f%% | paper (2NN, E=1, B=10, C=0.1) | best accuracy | MB down per round | wall time, all seeds |\n", 100*cfg.target)
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	var order []string
	groups := map[string][]*result{}
	for _, r := range results {
		if _, ok := groups[r.run.name()]; !ok {
			order = append(order, r.run.name())
		}
		groups[r.run.name()] = append(groups[r.run.name()], r)
	}
	for _, name := range order {
		g := groups[name]
		run := g[0].run
		paper := paperIID
		if run.partition == "pathological" {
			paper = paperPathological
		}
		sec := "off"
		if run.secure {
			sec = "SecAgg+"
		}
		download := run.compress
		if run.compress == "topk" {
			download = fmt.Sprintf("top-%g%% delta, int8, deflate", 100*run.topk)
		}
		var reached []int
		var wall float64
		best := 0.0
		for _, r := range g {
			if r.reached > 0 {
				reached = append(reached, r.reached)
			}
			acc, _ := r.best()
			best = max(best, acc)
			wall += r.wall.Seconds()
		}
		cell := "not reached"
		switch {
		case len(reached) == len(g) && len(g) == 1:
			cell = fmt.Sprintf("**%d**", reached[0])
		case len(reached) == len(g):
			slices.Sort(reached)
			cell = fmt.Sprintf("**%d** (%d–%d, %d seeds)", median(reached), reached[0], reached[len(reached)-1], len(g))
		case len(reached) > 0:
			cell = fmt.Sprintf("%d of %d seeds reached it", len(reached), len(g))
		}
		if len(reached) < len(g) {
			cell += fmt.Sprintf(" (cap %d rounds)", cfg.rounds)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %.2f%% | %.2f | %.0f s |\n",
			run.partition, sec, download, cell, paper, 100*best, downloadMB(g), wall)
	}
	fmt.Fprintf(&b, "\nlr %g, %d clients, C=%g, E=%d, B=%d, seeds %d..%d; accuracy on the 10,000 MNIST test images of the model clients download; MB down: model downloads and SecAgg replies per round after the first.\n",
		cfg.lr, cfg.clients, cfg.fraction, cfg.epochs, cfg.batch, cfg.seed, cfg.seed+uint64(cfg.seeds)-1)
	return b.String()
}

// median returns the middle value of sorted (the lower middle for an even
// count).
func median(sorted []int) int { return sorted[(len(sorted)-1)/2] }

// downloadMB is the mean server → client megabytes per round after the
// first (which carries the initial model in full).
func downloadMB(g []*result) float64 {
	var sum float64
	var n int
	for _, r := range g {
		for _, l := range r.lines[min(1, len(r.lines)-1):] {
			sum += float64(l.BytesDown)
			n++
		}
	}
	return sum / float64(max(n, 1)) / 1e6
}
