package agent

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// CheckData loads the configured dataset as the agent would at start-up
// and writes what it holds to w: the schema the agent reports, row and
// class counts, missing cells per column, and, given a job's column rules
// (rules may be nil), what they would do to this host's training rows — a
// local preview, with this host's mean, median and quantiles where the job
// will use the federation's. It returns the error (wrapping ErrConfig, or
// naming the file, line and column: a *data.LineError) of data the agent
// cannot read or the rules cannot use. It sends nothing anywhere.
func CheckData(w io.Writer, cfg *DatasetConfig, rules []data.ColumnRule) error {
	if err := data.ValidateRules(rules); err != nil {
		return fmt.Errorf("agent.CheckData: %w: %v", ErrConfig, err)
	}
	d, err := loadData(cfg)
	if err != nil {
		return fmt.Errorf("agent.CheckData: %w", err)
	}
	nTrain, nHeld := d.sizes()
	features, classes := d.schema()
	fmt.Fprintf(w, "dataset: %s %s\n", cfg.Kind, cfg.Path)
	if d.text != nil {
		fmt.Fprintf(w, "schema (reported to the coordinators): text documents (each text model's tokenizer sets the width), %d classes\n", classes)
	} else {
		fmt.Fprintf(w, "schema (reported to the coordinators): %d features, %d classes\n", features, classes)
	}
	fmt.Fprintf(w, "rows: %d (%d training, %d held out)\n", nTrain+nHeld, nTrain, nHeld)
	if d.raw == nil {
		counts := make([]int, d.train.Classes)
		for _, ds := range []*tensor.Dataset{d.train, d.heldOut} {
			for _, y := range ds.Y {
				if int(y) < len(counts) {
					counts[y]++
				}
			}
		}
		fmt.Fprintf(w, "classes: %s\n", classCounts(d.classes, counts, 0))
		if len(rules) > 0 {
			return fmt.Errorf("agent.CheckData: %w: the job's data.columns apply to csv data, not %s", ErrConfig, cfg.Kind)
		}
		return nil
	}
	t := d.raw.table
	counts := make([]int, len(t.Classes))
	noLabel := 0
	for _, y := range t.Labels {
		if y < 0 {
			noLabel++
		} else {
			counts[y]++
		}
	}
	fmt.Fprintf(w, "classes: %s\n", classCounts(t.Classes, counts, noLabel))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "column\ttype\tmissing")
	for _, c := range t.Columns {
		kind := "number"
		if !c.Numeric() {
			distinct := map[string]bool{}
			for _, s := range c.Text {
				if s != "" {
					distinct[s] = true
				}
			}
			kind = fmt.Sprintf("text (%d distinct)", len(distinct))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", c.Name, kind, c.Missing)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rules) == 0 {
		if d.raw.baseErr != nil {
			fmt.Fprintf(w, "without a job's data.columns this table cannot train: %v\n", d.raw.baseErr)
		}
		return nil
	}
	cols, rep, err := previewRules(d.raw, rules)
	if err != nil {
		return fmt.Errorf("agent.CheckData: %s: %w", cfg.Path, err)
	}
	fmt.Fprintln(w, "the job's rules on this host's training rows (a local preview: the job uses the federation's statistics):")
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "column\tmissing\tresult")
	for j, c := range cols {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Missing, describeColumn(&rules[j], &c))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "rows kept %d of %d (%d dropped); cells filled %d, clipped %d; unknown categories %d; model input width %d\n",
		rep.Kept, rep.Rows, rep.Dropped, rep.Filled, rep.Clipped, rep.Unknown, tensor.ColumnsWidth(cols))
	return nil
}

// previewRules resolves rules on this host's training rows alone, as a
// federation of one would, and cleans them.
func previewRules(r *rawCSV, rules []data.ColumnRule) ([]tensor.InputColumn, data.CleanReport, error) {
	v, err := data.PrepVector(r.table, r.trainRows, &data.PrepPlan{Phase: data.PrepProfile, Rules: rules})
	if err != nil {
		return nil, data.CleanReport{}, err
	}
	prof, err := data.ParseProfile(rules, v)
	if err != nil {
		return nil, data.CleanReport{}, err
	}
	var ranges [][2]float64
	for j := range rules {
		if rules[j].NeedsHistogram() {
			ranges = append(ranges, prof.HistogramRange(rules, j))
		}
	}
	var hist []float64
	if len(ranges) > 0 {
		if hist, err = data.PrepVector(r.table, r.trainRows, &data.PrepPlan{Phase: data.PrepHistogram, Rules: rules, Ranges: ranges}); err != nil {
			return nil, data.CleanReport{}, err
		}
	}
	cols, err := data.Resolve(rules, prof, ranges, hist)
	if err != nil {
		return nil, data.CleanReport{}, err
	}
	_, rep, err := data.CleanTable(r.table, r.trainRows, cols)
	return cols, rep, err
}

func describeColumn(r *data.ColumnRule, c *tensor.InputColumn) string {
	var parts []string
	if c.Fills() {
		parts = append(parts, fmt.Sprintf("fill %.6g", c.Fill))
	}
	if c.Lo != nil {
		parts = append(parts, fmt.Sprintf("clip at quantiles %v to [%.6g, %.6g]", r.Clip, *c.Lo, *c.Hi))
	}
	if len(c.Categories) > 0 {
		unknown := "all zeros"
		if c.Other {
			unknown = "an other slot"
		}
		parts = append(parts, fmt.Sprintf("one-hot %s (unknown: %s)", strings.Join(c.Categories, ", "), unknown))
	}
	if len(parts) == 0 {
		return "as is"
	}
	return strings.Join(parts, "; ")
}

func classCounts(names []string, counts []int, noLabel int) string {
	parts := make([]string, len(counts))
	for i, n := range counts {
		name := fmt.Sprint(i)
		if i < len(names) {
			name = names[i]
		}
		parts[i] = fmt.Sprintf("%s %d", name, n)
	}
	s := strings.Join(parts, ", ")
	if noLabel > 0 {
		s += fmt.Sprintf(" (%d rows without a label)", noLabel)
	}
	return s
}
