package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor/data"
)

// ErrInvalidJob is returned (wrapped, with the reason) for a job spec that
// cannot run.
var ErrInvalidJob = errors.New("invalid job")

// JobSpec is a training job as an ML engineer writes it (job.json). Zero
// values mean the documented defaults; Normalize fills them in.
type JobSpec struct {
	Name string `json:"name"`
	// Model names a tensor model ("logreg", "2nn", "cnn", "gcn"); Spec, if
	// set, is a full tensor spec (JSON) and wins over Model.
	Model string          `json:"model"`
	Spec  json.RawMessage `json:"spec,omitempty"`
	// InitModel starts from a committed version instead of a fresh model.
	InitModel uint64 `json:"init_model,omitempty"`
	Seed      uint64 `json:"seed,omitempty"`
	// Data describes what agents must hold (checked by agents on invite).
	Data DataSchema `json:"data"`
	// Rounds to run; default 10.
	Rounds int `json:"rounds"`
	// Clients per round: Fraction of eligible connected agents, at least
	// MinClients (default 2), plus OverSelect extra fraction for dropouts.
	// A job with DP and a Fraction invites that fraction and never more
	// (the sampling rate its accountant is charged): while the fraction of
	// the connected agents is below MinClients, its rounds wait.
	Fraction   float64 `json:"fraction"`
	MinClients int     `json:"min_clients"`
	OverSelect float64 `json:"over_select"`
	// Selector restricts eligibility to agents whose labels match.
	Selector map[string]string `json:"selector,omitempty"`
	Plan     LocalPlan         `json:"plan"`
	Strategy StrategySpec      `json:"strategy"`
	SecAgg   SecAggSpec        `json:"secagg"`
	DP       DPSpec            `json:"dp"`
	Deadline Deadlines         `json:"deadlines"`
	// Push is how each new version travels to agents that hold the one
	// before: "lossless" (default; the XOR delta of the float32 bits,
	// about half a model file for the 2nn) or "int8" / "float16" (a
	// quantized delta, deflated: about a fifth / a third). With a
	// quantized push the committed model is the parent plus the decoded
	// delta, so every agent still holds exactly the committed version.
	Push string `json:"push,omitempty"`
	// EvalEvery, if positive, runs a federated evaluation of the job's
	// newest model on the agents' held-out splits after every EvalEvery-th
	// committed training round (0: never). Evaluation rounds always run
	// under SecAgg+, whether or not the job's updates do: the coordinator
	// learns only the summed correct, total and loss of the eligible
	// agents, so they need at least EvalMinAgents of them (min_clients
	// then defaults to EvalMinAgents and may not be lower). A due
	// evaluation that fails is retried, up to 3 rounds; then training
	// goes on without it.
	EvalEvery int `json:"eval_every,omitempty"`
	// Force starts the job even when none of the connected agents reports
	// data its model can train on (jobs start checks the model's input
	// features and classes, and Data.Kind if given, against each agent's
	// reported schema and otherwise refuses, naming the mismatch). It
	// plays no part after the start and is not stored with the job.
	Force bool `json:"force,omitempty"`
}

// DataSchema is what an agent's local data must look like.
type DataSchema struct {
	Kind     string `json:"kind"` // "mnist", "csv", "graph"
	Features int    `json:"features,omitempty"`
	Classes  int    `json:"classes,omitempty"`
	// Standardize runs a statistics round before the first model: the
	// eligible agents' per-feature counts, sums and sums of squares are
	// summed under secure aggregation, and the model gets a standardize
	// layer built from them, so agents train, and serve predictions, on
	// standardized features. Not with init_model, whose spec is fixed,
	// nor with an external model, whose trainer prepares its own inputs.
	Standardize bool `json:"standardize,omitempty"`
	// Columns, for CSV data, are the model's input columns in order, each
	// with its cleaning rule: a missing-value policy (reject, drop, mean,
	// median, constant), optional clipping at quantiles, and for a
	// categorical column its categories (or candidates the federation
	// counts) and one-hot encoding. Before the first model, preparation
	// rounds sum the agents' column profiles and histograms under secure
	// aggregation, resolve the fills and bounds, and put the resolved
	// columns in the model's spec (which then takes their one-hot width as
	// input); the last round sums what cleaning did (Job.Data). Not with
	// init_model or an external model.
	Columns []data.ColumnRule `json:"columns,omitempty"`
}

// LocalPlan is what each selected agent does with its local data.
type LocalPlan struct {
	Epochs    int     `json:"epochs"`     // default 1
	BatchSize int     `json:"batch_size"` // default 10
	LR        float64 `json:"lr"`         // default 0.1
	Momentum  float64 `json:"momentum,omitempty"`
	Mu        float64 `json:"mu,omitempty"` // FedProx proximal weight
}

// StrategySpec names the server optimizer and its parameters.
type StrategySpec struct {
	Name     string  `json:"name"`                // fedavg (default), fedavgm, fedprox, fedadam, fedyogi, fedadagrad, median, trimmedmean, krum
	ServerLR float64 `json:"server_lr,omitempty"` // default 1 (fedavg/fedavgm), 0.01 (adaptive)
	Momentum float64 `json:"momentum,omitempty"`  // fedavgm, default 0.9
	Beta1    float64 `json:"beta1,omitempty"`     // default 0.9
	Beta2    float64 `json:"beta2,omitempty"`     // default 0.99
	Tau      float64 `json:"tau,omitempty"`       // adaptivity, default 1e-3
	Trim     float64 `json:"trim,omitempty"`      // trimmed mean: fraction cut at each end, default 0.1
	Byzant   int     `json:"byzantine,omitempty"` // krum: assumed Byzantine clients f, default 1
}

// SecAggSpec configures secure aggregation of the updates.
type SecAggSpec struct {
	Enabled bool `json:"enabled"`
	// K is the neighbour-graph degree (0: ~2·ceil(log2 n); n-1: classic
	// SecAgg); T the reconstruction threshold (0: default of the library).
	K int `json:"k,omitempty"`
	T int `json:"t,omitempty"`
	// Clip bounds each coordinate of an update before fixed-point encoding.
	Clip float64 `json:"clip,omitempty"` // default 1
	Bits int     `json:"bits,omitempty"` // default 16
	// MinGroup is the smallest group of agents one coordinator may
	// aggregate in a sharded round (default 100; never below 3, the
	// smallest SecAgg+ round). A group's coordinator learns that group's
	// sum, never less, so MinGroup bounds what one coordinator learns.
	MinGroup int `json:"min_group,omitempty"`
	// Sharded says whether rounds split their agents into groups, each
	// aggregated by one coordinator, the leader adding the group sums:
	// "auto" (default) when the joined cohort has at least 2×MinGroup
	// agents and more than one coordinator is reachable, "off", or "on"
	// (whenever two groups of MinGroup fit; for small test clusters).
	Sharded string `json:"sharded,omitempty"`
}

// Sharding modes of SecAggSpec.Sharded.
const (
	ShardedAuto = "auto"
	ShardedOff  = "off"
	ShardedOn   = "on"
)

// DefaultMinGroup is SecAggSpec.MinGroup's default.
const DefaultMinGroup = 100

// DPSpec configures differential privacy.
type DPSpec struct {
	Enabled         bool    `json:"enabled"`
	Clip            float64 `json:"clip,omitempty"`             // L2 clip of each update, default 1
	NoiseMultiplier float64 `json:"noise_multiplier,omitempty"` // sigma; noise std of the sum = sigma·clip
	Delta           float64 `json:"delta,omitempty"`            // default 1e-5
	// Adaptive moves the clip each round towards the TargetQuantile
	// (default 0.5) of the agents' update norms, starting from Clip, by
	// the private quantile method of Andrew et al. 2021; BitNoise is the
	// noise σ_b on the count of unclipped updates (default: the expected
	// agents per round / 20, at least noise_multiplier). Needs secure
	// aggregation and a positive noise_multiplier.
	Adaptive       bool    `json:"adaptive,omitempty"`
	TargetQuantile float64 `json:"target_quantile,omitempty"`
	BitNoise       float64 `json:"bit_noise,omitempty"`
}

// Deadlines bound each stage of a round.
type Deadlines struct {
	Train    Duration `json:"train,omitempty"`    // default 120s
	Stage    Duration `json:"stage,omitempty"`    // each SecAgg stage, default 30s
	Download Duration `json:"download,omitempty"` // default 60s
}

// Duration is a time.Duration written as a Go duration string in JSON
// ("30s"); it also reads a number of seconds. It is the type of the
// agent's configuration file too (protocol.Duration).
type Duration = protocol.Duration

var strategies = map[string]bool{
	"fedavg": true, "fedavgm": true, "fedprox": true, "fedadam": true, "fedyogi": true,
	"fedadagrad": true, "median": true, "trimmedmean": true, "krum": true,
}

// robustOnly are strategies that need every update in the clear.
var robustOnly = map[string]bool{"median": true, "trimmedmean": true, "krum": true}

// RobustStrategy reports whether the strategy needs every update in the
// clear (median, trimmed mean, Krum): such jobs cannot use secure
// aggregation.
func RobustStrategy(name string) bool { return robustOnly[name] }

// Normalize fills in defaults and checks the spec, returning ErrInvalidJob
// wrapped with the reason.
func (j *JobSpec) Normalize() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidJob, fmt.Sprintf(format, a...))
	}
	if j.Model == "" && len(j.Spec) == 0 && j.InitModel == 0 {
		return bad("set model (e.g. \"2nn\"), spec, or init_model")
	}
	if j.Data.Standardize && j.InitModel != 0 {
		return bad("data.standardize builds a new model's first layer; it cannot apply to init_model %d "+
			"(an imported or external model standardizes its inputs in its own trainer)", j.InitModel)
	}
	if len(j.Data.Columns) > 0 {
		if j.InitModel != 0 {
			return bad("data.columns build a new model's input; they cannot apply to init_model %d", j.InitModel)
		}
		if err := data.ValidateRules(j.Data.Columns); err != nil {
			return bad("data.%v", strings.TrimPrefix(err.Error(), "data.ValidateRules: "))
		}
	}
	if j.Rounds == 0 {
		j.Rounds = 10
	}
	if j.Rounds < 0 || j.Rounds > 1_000_000 {
		return bad("rounds %d out of range", j.Rounds)
	}
	if j.Fraction < 0 || j.Fraction > 1 {
		return bad("fraction %v outside [0,1]", j.Fraction)
	}
	if j.EvalEvery < 0 || j.EvalEvery > j.Rounds {
		return bad("eval_every %d outside [0, rounds = %d]", j.EvalEvery, j.Rounds)
	}
	if j.MinClients == 0 {
		j.MinClients = 2
		if j.EvalEvery > 0 {
			j.MinClients = EvalMinAgents
		}
	}
	if j.MinClients < 1 {
		return bad("min_clients %d < 1", j.MinClients)
	}
	if j.EvalEvery > 0 && j.MinClients < EvalMinAgents {
		return bad("eval_every sums held-out results under secure aggregation, which needs min_clients >= %d (got %d)", EvalMinAgents, j.MinClients)
	}
	if j.OverSelect < 0 || j.OverSelect > 1 {
		return bad("over_select %v outside [0,1]", j.OverSelect)
	}
	if j.Plan.Epochs == 0 {
		j.Plan.Epochs = 1
	}
	if j.Plan.BatchSize == 0 {
		j.Plan.BatchSize = 10
	}
	if j.Plan.LR == 0 {
		j.Plan.LR = 0.1
	}
	if j.Plan.Epochs < 0 || j.Plan.BatchSize < 0 || j.Plan.LR < 0 || j.Plan.Mu < 0 {
		return bad("plan values must be positive")
	}
	if j.Strategy.Name == "" {
		j.Strategy.Name = "fedavg"
		if j.Plan.Mu > 0 {
			j.Strategy.Name = "fedprox"
		}
	}
	if !strategies[j.Strategy.Name] {
		return bad("unknown strategy %q", j.Strategy.Name)
	}
	if j.SecAgg.Enabled && robustOnly[j.Strategy.Name] {
		return bad("strategy %q needs every update in the clear; it cannot run with secure aggregation", j.Strategy.Name)
	}
	if j.SecAgg.Clip == 0 {
		j.SecAgg.Clip = 1
	}
	if j.SecAgg.Bits == 0 {
		j.SecAgg.Bits = 16
	}
	if j.SecAgg.Clip < 0 || j.SecAgg.Bits < 1 || j.SecAgg.Bits > 31 {
		return bad("secagg clip/bits out of range")
	}
	if j.DP.Enabled && !j.SecAgg.Enabled {
		// Agents add their share of the noise inside the secure sum
		// (agent.EncodeUpdate); a plain round would add none and clip
		// nothing while the accountant charged ε.
		return bad("dp needs secure aggregation (secagg.enabled): agents add the DP noise inside the secure sum")
	}
	if j.DP.Enabled {
		if j.DP.Clip == 0 {
			j.DP.Clip = 1
		}
		if j.DP.Delta == 0 {
			j.DP.Delta = 1e-5
		}
		if j.DP.NoiseMultiplier < 0 || j.DP.Clip < 0 || j.DP.Delta <= 0 || j.DP.Delta >= 1 {
			return bad("dp values out of range")
		}
		if j.DP.Adaptive {
			if j.DP.TargetQuantile == 0 {
				j.DP.TargetQuantile = 0.5
			}
			switch {
			case !j.SecAgg.Enabled:
				return bad("dp.adaptive sends each agent's clip bit inside the secure sum: enable secagg")
			case !(j.DP.NoiseMultiplier > 0):
				return bad("dp.adaptive needs noise_multiplier > 0 (the clip bits must be noised)")
			case !(j.DP.TargetQuantile > 0 && j.DP.TargetQuantile < 1):
				return bad("dp.target_quantile %v outside (0,1)", j.DP.TargetQuantile)
			case j.DP.BitNoise < 0 || (j.DP.BitNoise > 0 && 2*j.DP.BitNoise <= j.DP.NoiseMultiplier):
				return bad("dp.bit_noise %v must exceed noise_multiplier/2 = %v", j.DP.BitNoise, j.DP.NoiseMultiplier/2)
			}
		}
	}
	switch j.Push {
	case "":
		j.Push = "lossless"
	case "lossless", "int8", "float16":
	default:
		return bad("push %q: want lossless, int8 or float16", j.Push)
	}
	if j.Deadline.Train == 0 {
		j.Deadline.Train = Duration(120 * time.Second)
	}
	if j.Deadline.Stage == 0 {
		j.Deadline.Stage = Duration(30 * time.Second)
	}
	if j.Deadline.Download == 0 {
		j.Deadline.Download = Duration(60 * time.Second)
	}
	return nil
}
