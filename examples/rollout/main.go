package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/inproc"
	mnistdata "github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/tensor/data"
)

// config is what the flags set.
type config struct {
	agents, canaries, shards int
	rounds                   int
	lr, badServerLR          float64
	gate                     string
	dir                      string
	verbose                  bool
}

func main() {
	var cfg config
	flag.IntVar(&cfg.agents, "agents", 8, "agents in the fleet")
	flag.IntVar(&cfg.canaries, "canaries", 4, "agents labelled tier=canary (at least 3: the secure sum's minimum)")
	flag.IntVar(&cfg.shards, "shards", 30, "MNIST is cut into this many IID shards; agent i holds shard i")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of the first training job")
	flag.Float64Var(&cfg.lr, "lr", 0.1, "learning rate of the good jobs")
	flag.Float64Var(&cfg.badServerLR, "bad-server-lr", 50, "server learning rate of the destructive job: the round's mean update is applied this many times over")
	flag.StringVar(&cfg.gate, "gate", "accuracy>=baseline-0.5", "rollout gate")
	flag.StringVar(&cfg.dir, "dir", "", "folder for the cluster's files (default: a temporary folder, removed at the end)")
	flag.BoolVar(&cfg.verbose, "v", false, "copy the coordinators' logs to stderr")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, &cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rollout:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg *config, out io.Writer) error {
	start := time.Now()
	if cfg.canaries < coordinator.EvalMinAgents || cfg.agents < cfg.canaries || cfg.shards < cfg.agents {
		return fmt.Errorf("need %d <= canaries <= agents <= shards", coordinator.EvalMinAgents)
	}
	mnist, err := mnistdata.Dir(ctx)
	if err != nil {
		return err
	}
	train, test, err := data.LoadMNIST(mnist)
	if err != nil {
		return err
	}
	dir := cfg.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fedge-rollout-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	logs := &logBuffer{}
	if cfg.verbose {
		logs.copy = os.Stderr
	}
	// The cluster: 3 coordinators, and the fleet, agent i holding IID shard
	// i of MNIST's training set and keeping 10% of it out of training, for
	// evaluating candidates; the first cfg.canaries are labelled
	// tier=canary.
	c, err := inproc.Start(ctx, inproc.Options{
		Name: "rollout-example", Dir: dir, Agents: cfg.agents, Canaries: cfg.canaries,
		Partition: agent.PartitionIID, Shards: cfg.shards, MNIST: mnist,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Agent:  func(_ int, a *agent.Config) { a.InferenceListen = "" }, // this example does not serve predictions
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintln(out, err)
		}
		fmt.Fprintf(out, "stopped %d agents and 3 coordinators (%.0fs in all)\n", cfg.agents, time.Since(start).Seconds())
	}()
	fmt.Fprintf(out, "cluster up: 3 coordinators (Raft over QUIC on loopback, bbolt in %s)\n", dir)
	parts := data.PartitionIID(train.Len(), cfg.shards, 1)
	var canaryHeld []int
	for i := range cfg.canaries {
		canaryHeld = append(canaryHeld, int(math.Round(0.1*float64(len(parts[i])))))
	}
	fmt.Fprintf(out, "%d agents enrolled with one-time tokens and connected; %d labelled tier=canary; each holds %d MNIST images (10%% held out)\n\n",
		cfg.agents, cfg.canaries, len(parts[0]))

	job := func(name string, init uint64, rounds int, serverLR float64) api.JobSpec {
		return api.JobSpec{
			Name: name, Model: "2nn", InitModel: init, Seed: 1, Rounds: rounds, Fraction: 1, MinClients: 3,
			Plan:     api.LocalPlan{Epochs: 1, BatchSize: 10, LR: cfg.lr},
			Strategy: api.StrategySpec{Name: "fedavg", ServerLR: serverLR},
			SecAgg:   api.SecAggSpec{Enabled: true, Clip: 1, Bits: 16},
			Deadline: api.Deadlines{Train: api.Duration(20 * time.Second), Stage: api.Duration(10 * time.Second), Download: api.Duration(10 * time.Second)},
		}
	}
	base, err := trainJob(ctx, c.Admin, job("base", 0, cfg.rounds, 1), test, out)
	if err != nil {
		return err
	}
	// The cluster's first model (the job's initial weights) is the stable
	// one; the trained base replaces it through an ordinary rollout.
	fmt.Fprintf(out, "\nrolling out the trained model v%d over the initial weights:\n", base)
	if _, err := rollOut(ctx, c.Admin, base, cfg.gate, out); err != nil {
		return err
	}
	if err := waitServing(ctx, c, base, out); err != nil {
		return err
	}

	// (a) A destructive job: one ordinary round of local training from the
	// base, but the server applies the mean update fifty-fold. Its model is
	// committed like any other, a candidate like any other.
	fmt.Fprintln(out)
	bad, err := trainJob(ctx, c.Admin, job("destructive", base, 1, cfg.badServerLR), test, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n(a) rolling out the garbage model v%d; nobody intervenes:\n", bad)
	roBad, err := rollOut(ctx, c.Admin, bad, cfg.gate, out)
	if err != nil {
		return err
	}
	if err := waitServing(ctx, c, roBad.Baseline, out); err != nil {
		return err
	}

	// (b) The good model: two more ordinary rounds from the same start.
	fmt.Fprintln(out)
	good, err := trainJob(ctx, c.Admin, job("improve", base, 2, 1), test, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n(b) rolling out the improved model v%d:\n", good)
	roGood, err := rollOut(ctx, c.Admin, good, cfg.gate, out)
	if err != nil {
		return err
	}
	if err := waitServing(ctx, c, good, out); err != nil {
		return err
	}

	// What the coordinators hold.
	fmt.Fprintln(out, "\nthe rolled-back rollout's record, as every coordinator holds it:")
	printJSON(out, "  ", roBad)
	rounds, err := c.Admin.Rounds().List(ctx, api.RoundsRequest{}, api.QueryOptions{})
	if err != nil {
		return err
	}
	for _, r := range rounds {
		if r.Rollout == roBad.ID && r.Kind == api.RoundEval {
			fmt.Fprintln(out, "its evaluation round's record (participants are listed; their figures are not):")
			printJSON(out, "  ", r)
		}
	}
	ev := lastEvidence(roBad)
	if ev != nil {
		sum := 0
		for _, h := range canaryHeld {
			sum += h
		}
		terms := make([]string, len(canaryHeld))
		for i, h := range canaryHeld {
			terms[i] = strconv.Itoa(h)
		}
		fmt.Fprintf(out, "evidence total %.0f = %s, the held-out images of the %d canaries together: the coordinator received only masked vectors and their sum\n",
			ev.CandidateTotal, strings.Join(terms, " + "), len(canaryHeld))
		if int(ev.CandidateTotal) != sum {
			fmt.Fprintf(out, "  (expected %d: the agents' held-out split differs from data.HoldOut's documented size)\n", sum)
		}
	}
	var ids []string
	for _, a := range c.Fleet {
		ids = append(ids, a.Daemon().ID())
	}
	fmt.Fprintln(out, "\nprivacy audit of every coordinator's replicated state and of their logs:")
	var violations int
	var first string
	for i, n := range c.Nodes {
		var res *auditResult
		var err error
		n.FSM().Read(func(s *coordinator.State) { res, err = auditState(s, ids) }) // under the FSM's read lock
		if err != nil {
			return err
		}
		var report strings.Builder
		res.print(&report)
		violations += len(res.violations)
		switch {
		case i == 0:
			first = report.String()
			fmt.Fprintf(out, " node %s:\n%s", n.ID(), first)
		case report.String() == first:
			fmt.Fprintf(out, " node %s: an identical replica (same SHA-256), same findings\n", n.ID())
		default:
			fmt.Fprintf(out, " node %s:\n%s", n.ID(), report.String())
		}
	}
	violations += len(auditLogs(logs.Lines(), ids, out))

	var failures []error
	if roBad.State != api.RolloutRolledBack {
		failures = append(failures, fmt.Errorf("the garbage model v%d was %s, not rolled back", bad, roBad.State))
	}
	if roGood.State != api.RolloutPromoted {
		failures = append(failures, fmt.Errorf("the improved model v%d was %s, not promoted", good, roGood.State))
	}
	if violations > 0 {
		failures = append(failures, fmt.Errorf("%d per-agent figures found in the coordinators' state or logs", violations))
	}
	if len(failures) == 0 {
		fmt.Fprintf(out, "\nOK: v%d rolled back by the gate, v%d promoted by the gate, no per-agent figure in the coordinators' state or logs\n", bad, good)
	}
	return errors.Join(failures...)
}

// lastEvidence returns the evidence of a rollout's last gate decision.
func lastEvidence(ro *api.Rollout) *api.Evidence {
	for i := len(ro.Decisions) - 1; i >= 0; i-- {
		if ro.Decisions[i].Evidence != nil {
			return ro.Decisions[i].Evidence
		}
	}
	return nil
}
