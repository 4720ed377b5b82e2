package coordinator

import (
	"fmt"
	"sort"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor"
)

// dataWant is what a job needs of an agent's local data: Features and
// Classes from its engine model (zero for an external model or one started
// from init_model), Kind from the job's data section (empty if unnamed).
type dataWant struct {
	model             string
	features, classes int
	kind              string
}

// fits reports whether an agent's report says it can train for w. The
// engine trains a model whose input width is the data's and that has at
// least as many outputs as the data has classes (agent.trainRound).
func (w dataWant) fits(st *api.AgentStatus) bool {
	if w.kind != "" && !kindMatches(w.kind, st.DataKind) {
		return false
	}
	if w.features > 0 && (st.Features != w.features || st.Classes > w.classes) {
		return false
	}
	return true
}

// kindMatches reports whether data of an agent's kind is what a job's
// data.kind names: the same kind, or IDX files for "mnist" (MNIST ships
// as IDX files).
func kindMatches(job, agent string) bool {
	return job == agent || (job == "mnist" && agent == "idx")
}

// checkJobFits refuses a job that none of the connected agents it may
// select can train, by their status reports. It accepts when no eligible
// agent is connected (agents may come later), when any eligible agent's
// data fits, or when one has not reported (an agent before protocol
// version 3: it decides itself when invited).
func (n *Node) checkJobFits(spec *api.JobSpec) error {
	w := dataWant{kind: spec.Data.Kind}
	if spec.InitModel == 0 {
		ts, err := jobTensorSpec(spec)
		if err != nil {
			return err
		}
		if !ts.IsExternal() && len(spec.Data.Columns) == 0 {
			// With data.columns the input width is decided by the job's
			// preparation rounds; agents lacking a column decline them.
			w.features, w.classes = ts.Features(), ts.Classes()
		}
		if ts.Text != nil {
			// A text model reads documents, which agents of text data
			// tokenize to its input whatever their length.
			w.features = 0
			if w.kind == "" {
				w.kind = "text"
			}
		}
		w.model = spec.Model
		if len(spec.Spec) > 0 || w.model == "" {
			w.model = "of the job's spec"
		}
	}
	if w.features == 0 && w.kind == "" {
		return nil
	}
	elig := n.eng.eligible(spec.Selector, nil)
	if len(elig) == 0 {
		return nil
	}
	reports := n.agentReports()
	held := map[string]int{} // description of the data -> agents holding it
	for _, l := range elig {
		r, ok := reports[l.AgentID()]
		if !ok {
			return nil
		}
		st := apiAgentStatus(r.status, r.at)
		if w.fits(st) {
			return nil
		}
		held[describeData(st, w.kind != "")]++
	}
	return fmt.Errorf("%w: %s; %s (start it with -force, or \"force\": true in the job file, to run it anyway)", ErrInvalidJob, w.describe(), describeHeld(held, len(elig)))
}

// describe says what the job needs ("model gcn takes 1433 features and 7
// classes").
func (w dataWant) describe() string {
	var parts []string
	if w.kind != "" {
		parts = append(parts, fmt.Sprintf("the job needs %s data", w.kind))
	}
	if w.features > 0 {
		parts = append(parts, fmt.Sprintf("model %s takes %d features and %d classes", w.model, w.features, w.classes))
	}
	return strings.Join(parts, ", ")
}

// describeData says what one agent holds ("784 features and 10 classes",
// with its kind first if withKind).
func describeData(st *api.AgentStatus, withKind bool) string {
	if st.Features == 0 {
		return "no local data"
	}
	d := fmt.Sprintf("%d features and %d classes", st.Features, st.Classes)
	if withKind {
		d = st.DataKind + " data of " + d
	}
	return d
}

// describeHeld says what the n eligible connected agents hold ("the 3
// connected agents hold 784 features and 10 classes").
func describeHeld(held map[string]int, n int) string {
	if len(held) == 1 {
		for d := range held {
			if n == 1 {
				return "the connected agent holds " + d
			}
			return fmt.Sprintf("the %d connected agents hold %s", n, d)
		}
	}
	ds := make([]string, 0, len(held))
	for d := range held {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	for i, d := range ds {
		agents := "agents"
		if held[d] == 1 {
			agents = "agent"
		}
		ds[i] = fmt.Sprintf("%s (%d %s)", d, held[d], agents)
	}
	return fmt.Sprintf("the %d connected agents hold %s", n, strings.Join(ds, "; "))
}

// checkColumns refuses a job whose data.columns cannot become its model's
// input: the model must be an engine model with a 1-D input (a tabular
// model: its first layer dense), and the data CSV. The input width the
// columns give (with every candidate category, the most it can be)
// replaces the spec's own.
func checkColumns(spec *api.JobSpec, ts tensor.Spec) error {
	if len(spec.Data.Columns) == 0 {
		return nil
	}
	if ts.IsExternal() {
		return fmt.Errorf("%w: data.columns need a model fedge's engine runs; an external trainer prepares its own inputs", ErrInvalidJob)
	}
	if spec.Data.Kind != "" && spec.Data.Kind != "csv" {
		return fmt.Errorf("%w: data.columns apply to csv data, not %s", ErrInvalidJob, spec.Data.Kind)
	}
	if len(ts.Input) != 1 {
		return fmt.Errorf("%w: data.columns need a model with a 1-D input (a dense first layer), not input %v", ErrInvalidJob, ts.Input)
	}
	width := 0
	for _, c := range spec.Data.Columns {
		n := max(len(c.Categories)+len(c.Candidates), 1)
		if c.Unknown == "other" {
			n++
		}
		width += n
	}
	ts.Input = []int{width}
	if err := ts.Validate(); err != nil {
		return fmt.Errorf("%w: the spec with its %d input values from data.columns: %v", ErrInvalidJob, width, err)
	}
	return nil
}

// checkSharding refuses sharding settings a round cannot honour:
// secagg.sharded must be "auto", "off" or "on", and secagg.min_group, the
// smallest group one coordinator may aggregate (and so the smallest sum
// it learns), may not be negative, nor below the SecAgg+ threshold t a
// group must reach.
func checkSharding(spec *api.JobSpec) error {
	s := &spec.SecAgg
	switch s.Sharded {
	case "", api.ShardedAuto, api.ShardedOff:
	case api.ShardedOn:
		if !s.Enabled {
			return fmt.Errorf("%w: secagg.sharded \"on\" splits the secure aggregation among coordinators: set secagg.enabled", ErrInvalidJob)
		}
	default:
		return fmt.Errorf("%w: secagg.sharded %q: want \"auto\", \"off\" or \"on\"", ErrInvalidJob, s.Sharded)
	}
	if s.MinGroup < 0 {
		return fmt.Errorf("%w: secagg.min_group %d is negative (0 means the default, %d)", ErrInvalidJob, s.MinGroup, api.DefaultMinGroup)
	}
	if s.T > 0 && s.Sharded != api.ShardedOff && s.T > groupMin(spec) {
		return fmt.Errorf("%w: secagg.t %d exceeds secagg.min_group %d: a group that small could never unmask; raise min_group or set secagg.sharded \"off\"",
			ErrInvalidJob, s.T, groupMin(spec))
	}
	return nil
}
