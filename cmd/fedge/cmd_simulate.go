package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/internal/sim"
)

var simulateSpec = cmdSpec{
	path: "simulate",
	help: `Run many virtual agents in this process against a cluster, for load tests
and research. Each virtual agent enrolls with a join token of its own (minted
with the admin credential), holds its own key and certificate, its shard of
one dataset read once (-data: mnist, idx, csv, images; -dataset names an
agent-style dataset JSON for CSV columns, classes or image shape), trains on
a bounded worker pool and runs SecAgg+ over its own QUIC session (sessions
share a few UDP sockets). Virtual agents serve no inference and take part in
training rounds only.

With -local the cluster is an in-process one of -nodes coordinators, started
and stopped by the command; otherwise the agents dial -coordinators and the
admin flags name the operator credential. The job file is the one of
` + "`fedge jobs start`" + ` (its seed, if unset, is -seed). The command prints a
line per committed round (test accuracy of the committed model on the test
set: MNIST's, or -test-fraction of the data; the coordinator's bytes and
times) and writes rounds.csv and rounds.png into -out. For the same -seed,
with every agent in every round (fraction 1), the rounds' accuracy, loss,
participants and ε are the same on every run. -connect-only enrolls and
connects the fleet, holds it for -hold and starts no job.`,
	example: `fedge simulate -local -agents 100 -partition dirichlet -f job.json -out sim-out
fedge simulate -local -agents 10000 -connect-only -hold 30s
fedge simulate -coordinators 10.0.0.1:7400 -admin-dir ~/.fedge/admin -agents 1000 -f job.json`,
}

func runSimulate(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, simulateSpec, true)
	var o sim.Options
	file := c.fs.String("f", "", "job file (JSON, as for `fedge jobs start`)")
	local := c.fs.Bool("local", false, "run against an in-process cluster started for the run")
	c.fs.IntVar(&o.LocalNodes, "nodes", 3, "coordinators of the -local cluster")
	c.fs.IntVar(&o.Agents, "agents", 10, "virtual agents")
	kind := c.fs.String("data", agent.DatasetMNIST, "dataset kind: mnist, idx, csv or images")
	path := c.fs.String("data-path", "", "the dataset's folder or file (mnist: default the GoMNIST module's, or $FEDGE_MNIST_DIR)")
	dsFile := c.fs.String("dataset", "", "an agent-style dataset JSON (the \"dataset\" object of an agent's configuration); wins over -data and -data-path")
	c.fs.Float64Var(&o.TestFraction, "test-fraction", 0.1, "share of the examples held out as the test set (not for mnist, which has its own)")
	c.fs.StringVar(&o.Partition, "partition", sim.PartitionIID, "how the data is cut among agents: iid, pathological or dirichlet")
	c.fs.Float64Var(&o.Alpha, "alpha", 0.5, "Dirichlet concentration (-partition dirichlet)")
	c.fs.Uint64Var(&o.Seed, "seed", 1, "seed of the partition, training, rounding, DP noise and the initial model")
	c.fs.IntVar(&o.Workers, "workers", 0, "agents training or masking at once (default: the CPUs)")
	c.fs.IntVar(&o.PerSocket, "per-socket", 500, "virtual agents sharing one UDP socket")
	c.fs.IntVar(&o.Handshakes, "handshakes", 8, "QUIC handshakes and enrollments in flight (coordinators admit 16 unverified connections per source address)")
	connectOnly := c.fs.Bool("connect-only", false, "enroll and connect the fleet, start no job")
	c.fs.DurationVar(&o.Hold, "hold", 0, "with -connect-only, how long to keep the fleet connected")
	c.fs.DurationVar(&o.ConnectTimeout, "connect-timeout", 10*time.Minute, "how long to wait for every agent's session")
	c.fs.DurationVar(&o.RoundTimeout, "round-timeout", 10*time.Minute, "how long to wait for a round to commit")
	out := c.fs.String("out", "sim-out", "folder for rounds.csv and rounds.png")
	verbose := c.fs.Bool("v", false, "log the cluster's and the agents' warnings to stderr")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	o.ConnectOnly = *connectOnly
	switch {
	case o.Agents < 1:
		return c.usageFail(usagef("-agents %d: want at least 1", o.Agents))
	case *file == "" && !o.ConnectOnly:
		return c.usageFail(usagef("-f job.json is required (or -connect-only)"))
	case *file != "" && o.ConnectOnly:
		return c.usageFail(usagef("-connect-only starts no job: drop -f"))
	case o.Partition != sim.PartitionIID && o.Partition != sim.PartitionPathological && o.Partition != sim.PartitionDirichlet:
		return c.usageFail(usagef("-partition %q: want iid, pathological or dirichlet", o.Partition))
	case !(o.TestFraction > 0 && o.TestFraction < 1):
		return c.usageFail(usagef("-test-fraction %v: want a share in (0, 1)", o.TestFraction))
	case *local && c.set["coordinators"]:
		return c.usageFail(usagef("-local runs its own cluster: drop -coordinators"))
	}
	if *file != "" {
		spec, weights, err := loadJobFile(*file)
		if err != nil {
			return c.inputFail(err)
		}
		if weights != "" {
			return c.inputFail(fmt.Errorf("%s: init_weights is not supported by simulate; import the model and name it with init_model", *file))
		}
		o.Job = spec
	}
	o.Dataset = agent.DatasetConfig{Kind: *kind, Path: *path}
	if *dsFile != "" {
		b, err := os.ReadFile(*dsFile)
		if err != nil {
			return c.fail(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o.Dataset); err != nil {
			return c.inputFail(fmt.Errorf("%s: %w", *dsFile, err))
		}
	}
	switch o.Dataset.Kind {
	case agent.DatasetMNIST, agent.DatasetIDX, agent.DatasetCSV, agent.DatasetImages:
	default:
		return c.usageFail(usagef("-data %q: want mnist, idx, csv or images", o.Dataset.Kind))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Dataset.Kind == agent.DatasetMNIST && o.Dataset.Path == "" {
		dir, err := mnist.Dir(ctx)
		if err != nil {
			return c.fail(err)
		}
		o.Dataset.Path = dir
	}
	if !*local {
		cl, err := c.client()
		if err != nil {
			return c.fail(err)
		}
		defer cl.Close()
		o.Admin = cl
		o.Coordinators, _ = c.admin.addrs()
	}
	level := slog.LevelError
	if *verbose {
		level = slog.LevelWarn
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.Progress = stdout
	if !o.ConnectOnly {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return c.fail(err)
		}
	}
	res, err := sim.Run(ctx, o)
	if res != nil && len(res.Rounds) > 0 {
		csvPath, pngPath := filepath.Join(*out, "rounds.csv"), filepath.Join(*out, "rounds.png")
		title := fmt.Sprintf("fedge simulate: %d agents, %s, %s partition, seed %d", o.Agents, o.Job.Model, o.Partition, o.Seed)
		if werr := sim.WriteCSV(csvPath, res.Rounds); werr != nil {
			return c.fail(werr)
		}
		if werr := sim.WritePlot(pngPath, title, res.Rounds); werr != nil {
			return c.fail(werr)
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n", csvPath, pngPath)
	}
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}
