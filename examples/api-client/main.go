package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

type config struct {
	coordinators []string
	adminDir     string
	model        string
	rounds       int
	minClients   int
	timeout      time.Duration
}

func main() {
	var cfg config
	var coords string
	flag.StringVar(&coords, "coordinators", os.Getenv("FEDGE_COORDINATORS"), "coordinators host:port, comma-separated (default $FEDGE_COORDINATORS)")
	flag.StringVar(&cfg.adminDir, "admin-dir", os.Getenv("FEDGE_ADMIN_DIR"), "operator credential folder (default $FEDGE_ADMIN_DIR)")
	flag.StringVar(&cfg.model, "model", "2nn", "model to train (logreg, 2nn, cnn)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds to run")
	flag.IntVar(&cfg.minClients, "min-clients", 3, "agents per round at least")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	cfg.coordinators = strings.Split(coords, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "api-client:", err)
		os.Exit(1)
	}
}

// run starts a SecAgg+ job and prints one line per round until it ends.
func run(ctx context.Context, cfg config, w io.Writer) error {
	if cfg.adminDir == "" || len(cfg.coordinators) == 0 || cfg.coordinators[0] == "" {
		return errors.New("set -coordinators and -admin-dir")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := api.Load(cfg.adminDir, cfg.coordinators)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Cluster().Status(ctx, api.QueryOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "cluster %s, leader %s\n", st.Cluster, st.LeaderID)
	job, err := c.Jobs().Start(ctx, api.JobSpec{
		Name: "api-client", Model: cfg.model, Rounds: cfg.rounds, Fraction: 1, MinClients: cfg.minClients,
		Plan:   api.LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		SecAgg: api.SecAggSpec{Enabled: true},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "started job %s: %s, %d rounds, strategy %s\n", job.ID, job.Spec.Model, job.Spec.Rounds, job.Spec.Strategy.Name)
	seen := map[uint64]bool{}
	for {
		rounds, err := c.Rounds().List(ctx, api.RoundsRequest{Job: job.ID}, api.QueryOptions{})
		if err != nil {
			return err
		}
		for _, r := range rounds {
			if seen[r.ID] || r.State == api.RoundRunning {
				continue
			}
			seen[r.ID] = true
			fmt.Fprintf(w, "round %d %s: %d participants, train loss %.4f, model v%d\n", r.Number, r.State, r.ParticipantCount, r.Metrics["train_loss"], r.ModelOut)
		}
		j, err := c.Jobs().Status(ctx, job.ID, api.QueryOptions{})
		if err != nil {
			return err
		}
		if j.State != api.JobRunning && len(seen) >= len(rounds) {
			fmt.Fprintf(w, "job %s %s after %d rounds; latest model v%d\n", j.ID, j.State, j.RoundsDone, j.Model)
			if j.State != api.JobDone {
				return fmt.Errorf("job %s: %s", j.State, j.Error)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
