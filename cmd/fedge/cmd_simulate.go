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
	"runtime/pprof"
	"strings"
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
	var files fileList
	c.fs.Var(&files, "f", "job file (JSON, as for `fedge jobs start`); repeat it to run several jobs one after the other on the same fleet")
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
	replot := c.fs.String("replot", "", "comma-separated rounds.csv files of earlier runs: draw their final test accuracy against ε into -out/accuracy-epsilon.png (a line per file, named by its folder) and run nothing")
	target := c.fs.Float64("target", 0, "with -replot, a dashed line at this test accuracy (0: none)")
	everyRound := c.fs.Bool("every-round", false, "with -replot, draw every round of each file's DP jobs (its test accuracy against the job's ε after it) instead of each job's last round")
	verbose := c.fs.Bool("v", false, "log the cluster's and the agents' warnings to stderr")
	cpuProfile := c.fs.String("cpuprofile", "", "write a CPU profile of the whole run (simulator, and the -local cluster) to this file, for `go tool pprof`")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	o.ConnectOnly = *connectOnly
	if *replot != "" {
		return c.replot(*replot, *out, *target, *everyRound)
	}
	switch {
	case o.Agents < 1:
		return c.usageFail(usagef("-agents %d: want at least 1", o.Agents))
	case len(files) == 0 && !o.ConnectOnly:
		return c.usageFail(usagef("-f job.json is required (or -connect-only)"))
	case len(files) > 0 && o.ConnectOnly:
		return c.usageFail(usagef("-connect-only starts no job: drop -f"))
	case o.Partition != sim.PartitionIID && o.Partition != sim.PartitionPathological && o.Partition != sim.PartitionDirichlet:
		return c.usageFail(usagef("-partition %q: want iid, pathological or dirichlet", o.Partition))
	case !(o.TestFraction > 0 && o.TestFraction < 1):
		return c.usageFail(usagef("-test-fraction %v: want a share in (0, 1)", o.TestFraction))
	case *local && c.set["coordinators"]:
		return c.usageFail(usagef("-local runs its own cluster: drop -coordinators"))
	}
	for _, file := range files {
		spec, weights, err := loadJobFile(file)
		if err != nil {
			return c.inputFail(err)
		}
		if weights != "" {
			return c.inputFail(fmt.Errorf("%s: init_weights is not supported by simulate; import the model and name it with init_model", file))
		}
		o.Jobs = append(o.Jobs, spec)
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
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return c.fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return c.fail(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	res, err := sim.Run(ctx, o)
	if res != nil && len(res.Jobs) > 0 {
		if werr := writeSimulation(stdout, *out, o, res); werr != nil {
			return c.fail(werr)
		}
	}
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}

// replot draws the accuracy-ε lines of earlier runs' rounds.csv files.
func (c *cli) replot(list, dir string, target float64, everyRound bool) int {
	var series []sim.Series
	for _, path := range strings.Split(list, ",") {
		if path = strings.TrimSpace(path); path == "" {
			continue
		}
		jobs, err := sim.ReadCSV(path)
		if err != nil {
			return c.inputFail(err)
		}
		series = append(series, sim.Series{Name: filepath.Base(filepath.Dir(path)), Jobs: jobs, EveryRound: everyRound})
	}
	if len(series) == 0 {
		return c.usageFail(usagef("-replot names no file"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return c.fail(err)
	}
	path := filepath.Join(dir, "accuracy-epsilon.png")
	if err := sim.WriteEpsilonPlot(path, "DP-FedAvg: test accuracy against ε", series, target); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "wrote %s\n", path)
	return exitOK
}

// fileList is a repeatable flag.
type fileList []string

func (f *fileList) String() string { return fmt.Sprint([]string(*f)) }

func (f *fileList) Set(s string) error {
	*f = append(*f, s)
	return nil
}

// writeSimulation prints a line per job and writes rounds.csv and
// rounds.png into dir, and accuracy-epsilon.png when jobs used DP.
func writeSimulation(w io.Writer, dir string, o sim.Options, res *sim.Result) error {
	fmt.Fprintf(w, "\n%-28s %6s %9s %8s\n", "job", "rounds", "test_acc", "epsilon")
	dpJobs := 0
	for _, j := range res.Jobs {
		last := j.Last()
		fmt.Fprintf(w, "%-28s %6d %9.4f %8.3f\n", j.ID, len(j.Rounds), last.TestAccuracy, last.Epsilon)
		if last.Epsilon > 0 {
			dpJobs++
		}
	}
	csvPath, pngPath := filepath.Join(dir, "rounds.csv"), filepath.Join(dir, "rounds.png")
	title := fmt.Sprintf("fedge simulate: %d agents, %s partition, seed %d", o.Agents, o.Partition, o.Seed)
	if err := sim.WriteCSV(csvPath, res.Jobs); err != nil {
		return err
	}
	if err := sim.WritePlot(pngPath, title, res.Jobs); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s and %s\n", csvPath, pngPath)
	if dpJobs > 0 {
		epsPath := filepath.Join(dir, "accuracy-epsilon.png")
		series := []sim.Series{{Name: fmt.Sprintf("%d agents", o.Agents), Jobs: res.Jobs}}
		if err := sim.WriteEpsilonPlot(epsPath, title, series, 0); err != nil {
			return err
		}
		fmt.Fprintf(w, "wrote %s\n", epsPath)
	}
	return nil
}
