package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/fedge/fedge/agent"
)

var agentSpec = cmdSpec{
	path: "agent",
	help: `Run the agent daemon of an edge host until SIGINT or SIGTERM. The agent
enrolls with the cluster on its first start (with a join token from
fedge tokens create), keeps its identity, certificate and models in its data
dir, trains on its local dataset when a round invites it, and serves
inference from the current model on a local HTTP port. Its configuration
comes from -config (JSON; lines starting with // are comments; unknown
fields are an error; deploy/agent.json is a commented sample) and each flag given
overrides the file; every flag names the JSON field it overrides.`,
	example: `fedge agent -config /etc/fedge/agent.json
fedge agent -coordinators 127.0.0.1:7001 -join-token fedge1.... -data-dir ./a1 -dataset-kind mnist -dataset-path ./mnist -shards 20 -shard 0`,
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "check-data" {
		return runAgentCheckData(args[1:], stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runAgentContext(ctx, args, stdout, stderr)
}

// runAgentContext runs the agent until ctx ends.
func runAgentContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, agentSpec, false)
	cfg := agent.DefaultConfig()
	agent.Flags(c.fs, &cfg)
	path := c.fs.String("config", "", "agent configuration file (JSON)")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *path != "" {
		// LoadConfig validates the file on its own; the flags given are
		// then applied again over it.
		loaded, err := agent.LoadConfig(*path)
		if err != nil {
			return c.inputFail(err)
		}
		cfg = loaded
		var ferr error
		c.visit(func(f *flag.Flag) {
			if f.Name != "config" {
				if err := f.Value.Set(f.Value.String()); err != nil && ferr == nil {
					ferr = fmt.Errorf("-%s: %w", f.Name, err)
				}
			}
		})
		if ferr != nil {
			return c.usageFail(ferr)
		}
	}
	if err := cfg.Validate(); err != nil {
		return c.inputFail(err)
	}
	logger, err := cfg.Logger(stderr)
	if err != nil {
		return c.inputFail(err)
	}
	a, err := agent.New(cfg, logger)
	if err != nil {
		if errors.Is(err, agent.ErrConfig) {
			return c.inputFail(err)
		}
		return c.fail(err)
	}
	if addr := a.InferenceAddr(); addr != "" {
		fmt.Fprintf(stdout, "agent serving inference on http://%s (stop with Ctrl-C)\n", addr)
	}
	if err := a.Run(ctx); err != nil {
		return c.fail(err)
	}
	return exitOK
}
