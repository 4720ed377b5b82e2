package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
)

var modelsExplainSpec = cmdSpec{
	path: "models explain",
	args: "VERSION",
	help: `Print a model version's global explanation: the mean absolute attribution of
each input feature to the predicted class (integrated gradients from a zero
baseline) over the held-out data of the agents of an explanation round,
securely aggregated, so no host's data or attributions are revealed. -run
runs that round first (the agents must be connected; it waits up to 10
minutes or -timeout if longer) and stores the result with the version.
The table lists the -top features; -png writes a bar chart (tabular
models) or a heat map (image models, |attribution| summed over channels).`,
	example: "fedge models explain -run -steps 32 -max-examples 256 v7\nfedge models explain -png v7.png v7",
}

func runModelsExplain(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, modelsExplainSpec, true)
	run := c.fs.Bool("run", false, "run an explanation round first")
	steps := c.fs.Int("steps", 0, fmt.Sprintf("integration steps with -run (default %d, at most %d)", api.DefaultExplainSteps, api.MaxExplainSteps))
	maxEx := c.fs.Int("max-examples", 0, fmt.Sprintf("held-out examples each agent explains with -run (default %d)", api.DefaultExplainExamples))
	top := c.fs.Int("top", 20, "features listed in the table (0: all)")
	pngPath := c.fs.String("png", "", "write a bar chart or heat map PNG to this file")
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	v, err := parseVersion(pos[0])
	if err != nil {
		return c.usageFail(err)
	}
	if *run {
		c.admin.timeout = max(c.admin.timeout, 10*time.Minute)
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.ModelExplanation, error) {
		if *run {
			return cl.Models().Explain(ctx, api.ExplainRequest{Version: v, Steps: *steps, MaxExamples: *maxEx})
		}
		return cl.Models().Explanation(ctx, v, q)
	}, func(w io.Writer, x api.ModelExplanation) error {
		if err := printExplanation(w, x, *top); err != nil {
			return err
		}
		if *pngPath == "" {
			return nil
		}
		if err := writeExplanationPNG(*pngPath, x); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "Wrote %s.\n", *pngPath)
		return err
	})
}

// featureName names feature i of an input of shape: "i" for a vector,
// "(row, col)" for a one-channel image, "c:(row, col)" otherwise.
func featureName(shape []int, i int) string {
	if len(shape) != 3 {
		return fmt.Sprint(i)
	}
	hw := shape[1] * shape[2]
	ch, p := i/hw, i%hw
	if shape[0] == 1 {
		return fmt.Sprintf("(%d, %d)", p/shape[2], p%shape[2])
	}
	return fmt.Sprintf("%d:(%d, %d)", ch, p/shape[2], p%shape[2])
}

// printExplanation writes the explanation's header and its top features,
// most important first, with a bar scaled to the largest.
func printExplanation(w io.Writer, x api.ModelExplanation, top int) error {
	fmt.Fprintf(w, "Model %s: mean |attribution| to the predicted class over %d held-out examples of %d agents\n",
		version(x.Version), x.Examples, x.Agents)
	fmt.Fprintf(w, "(integrated gradients, zero baseline, %d steps, at most %d examples per agent; round %d, %s)\n\n",
		x.Steps, x.MaxExamples, x.Round, x.At.UTC().Format(time.RFC3339))
	idx := make([]int, len(x.Importance))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case x.Importance[a] > x.Importance[b]:
			return -1
		case x.Importance[a] < x.Importance[b]:
			return 1
		}
		return 0
	})
	if top > 0 && top < len(idx) {
		idx = idx[:top]
	}
	peak := 0.0
	if len(idx) > 0 {
		peak = x.Importance[idx[0]]
	}
	t := newTable(w, "RANK", "FEATURE", "IMPORTANCE", "")
	for r, i := range idx {
		bar := 0
		if peak > 0 {
			bar = int(30*x.Importance[i]/peak + 0.5)
		}
		t.row(r+1, featureName(x.Shape, i), fmt.Sprintf("%.4g", x.Importance[i]), strings.Repeat("#", bar))
	}
	return t.flush()
}

// writeExplanationPNG draws a heat map for an image input and a bar chart
// (every feature, in order) otherwise.
func writeExplanationPNG(path string, x api.ModelExplanation) error {
	if len(x.Shape) == 3 {
		vals := make([]float32, len(x.Importance))
		for i, v := range x.Importance {
			vals[i] = float32(v)
		}
		b, err := agent.Heatmap(vals, x.Shape, 8)
		if err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o644)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("model %s: mean |attribution| per feature (%d examples, %d agents)", version(x.Version), x.Examples, x.Agents)
	p.X.Label.Text = "feature"
	p.Y.Label.Text = "mean |attribution|"
	bars, err := plotter.NewBarChart(plotter.Values(x.Importance), vg.Points(max(2, min(20, 600/float64(max(1, len(x.Importance)))))))
	if err != nil {
		return err
	}
	p.Add(bars)
	return p.Save(vg.Length(max(6, min(24, float64(len(x.Importance))/8)))*vg.Inch, 4*vg.Inch, path)
}
