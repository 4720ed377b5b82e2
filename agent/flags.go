package agent

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Flags binds one command-line flag per configuration field to cfg, so that
// flags override a configuration file. Each flag remembers the text it was
// set from, which lets the caller load a file after parsing and then apply
// the flags given on the command line again:
//
//	cfg := agent.DefaultConfig()
//	agent.Flags(fs, &cfg)
//	path := fs.String("config", "", "agent configuration file (JSON)")
//	_ = fs.Parse(args)
//	if *path != "" {
//		if cfg, err = agent.LoadConfig(*path); err != nil { ... }
//		fs.Visit(func(f *flag.Flag) { _ = f.Value.Set(f.Value.String()) })
//	}
//	err = cfg.Validate()
//
// The usage text of every flag names the JSON field it overrides.
func Flags(fs *flag.FlagSet, cfg *Config) {
	str := func(name, field, usage string, p func() *string) {
		fs.Var(&flagValue{set: func(s string) error { *p() = s; return nil }}, name, usage+" (JSON "+field+")")
	}
	num := func(name, field, usage string, set func(string) error) {
		fs.Var(&flagValue{set: set}, name, usage+" (JSON "+field+")")
	}
	c := cfg
	num("coordinators", "coordinators", "comma-separated host:port QUIC addresses of the coordinators", func(s string) error {
		c.Coordinators = splitList(s)
		return nil
	})
	str("join-token", "join_token", "one-time join token, needed on the first start only", func() *string { return &c.JoinToken })
	str("data-dir", "data_dir", "state directory holding agent.db (identity, certificate, models)", func() *string { return &c.DataDir })
	str("dataset-kind", "dataset.kind", "local dataset kind: mnist, idx, csv, images or text", func() *string { return &c.Dataset.Kind })
	str("dataset-path", "dataset.path", "MNIST folder (mnist), CSV file (csv), folder of class folders (images) or CSV/JSON Lines file (text)", func() *string { return &c.Dataset.Path })
	str("label-column", "dataset.label_column", "CSV header of the class column", func() *string { return &c.Dataset.LabelColumn })
	str("text-column", "dataset.text_column", "column (CSV header or JSON key) of the documents of a text dataset (default text)", func() *string { return &c.Dataset.TextColumn })
	str("dataset-format", "dataset.format", "file format of a text dataset: csv or jsonl (default: from the path's extension)", func() *string { return &c.Dataset.Format })
	num("classes", "dataset.classes", "comma-separated CSV class names or image class folders, fixing their numbering", func(s string) error {
		c.Dataset.Classes = splitList(s)
		return nil
	})
	num("features", "dataset.features", "comma-separated CSV feature columns in model input order", func(s string) error {
		c.Dataset.Features = splitList(s)
		return nil
	})
	str("train-images", "dataset.train_images", "IDX image file (idx)", func() *string { return &c.Dataset.TrainImages })
	str("train-labels", "dataset.train_labels", "IDX label file (idx)", func() *string { return &c.Dataset.TrainLabels })
	str("partition", "dataset.partition", "demo shard partition: iid, pathological or dirichlet", func() *string { return &c.Dataset.Partition })
	num("shard", "dataset.shard", "this agent's demo shard, 0-based", intSetter(&c.Dataset.Shard))
	num("shards", "dataset.shards", "number of demo shards (0 keeps the whole dataset)", intSetter(&c.Dataset.Shards))
	num("alpha", "dataset.alpha", "Dirichlet concentration of the dirichlet partition", floatSetter(&c.Dataset.Alpha))
	num("dataset-seed", "dataset.seed", "seed of the demo partition and of the held-out split", func(s string) error {
		v, err := strconv.ParseUint(s, 10, 64)
		c.Dataset.Seed = v
		return err
	})
	num("held-out", "dataset.held_out", "fraction of local examples kept for evaluation, in [0, 0.9]", floatSetter(&c.Dataset.HeldOut))
	num("image", "dataset.image", "shape images are converted to, WIDTHxHEIGHTxCHANNELS with channels 1 or 3 (images; default 28x28x1)", func(s string) error {
		parts := strings.Split(s, "x")
		var v [3]int
		for i := range v {
			var err error
			if len(parts) != 3 {
				err = strconv.ErrSyntax
			} else {
				v[i], err = strconv.Atoi(parts[i])
			}
			if err != nil {
				return fmt.Errorf("%q is not WIDTHxHEIGHTxCHANNELS such as 32x32x3", s)
			}
		}
		c.Dataset.Image = ImageConfig{Width: v[0], Height: v[1], Channels: v[2]}
		return nil
	})
	num("labels", "labels", "comma-separated key=value host labels for round selection (e.g. region=eu,tier=canary)", func(s string) error {
		m := map[string]string{}
		for _, kv := range splitList(s) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("label %q is not key=value", kv)
			}
			m[k] = v
		}
		c.Labels = m
		return nil
	})
	num("threads", "threads", "CPU cores the agent may use (sets GOMAXPROCS; 0 = all)", intSetter(&c.Threads))
	str("training-window", "training_window", "daily local-time window for training, HH:MM-HH:MM (empty = always)", func() *string { return &c.TrainingWindow })
	str("inference-listen", "inference_listen", "local HTTP address of the inference server (empty disables it; default "+DefaultInferenceListen+")", func() *string { return &c.InferenceListen })
	str("log-format", "log_format", "log format: text or json", func() *string { return &c.LogFormat })
	str("log-level", "log_level", "log level: debug, info, warn or error", func() *string { return &c.LogLevel })
	trainerFlags(fs, c)
	jobsFlags(fs, c)
	num("shutdown-timeout", "shutdown_timeout", "how long shutdown waits for the current step (e.g. 10s)", func(s string) error {
		d, err := time.ParseDuration(s)
		c.ShutdownTimeout = Duration(d)
		return err
	})
	num("session-timeout", "session_timeout", "how long the agent and its coordinator go unheard before the session is given up (default 5s)", func(s string) error {
		d, err := time.ParseDuration(s)
		c.SessionTimeout = Duration(d)
		return err
	})
}

// flagValue is a flag.Value that remembers the text it was set from, so
// the flag can be applied again over a freshly loaded file.
type flagValue struct {
	raw string
	set func(string) error
}

func (f *flagValue) String() string { return f.raw }

func (f *flagValue) Set(s string) error {
	if err := f.set(s); err != nil {
		return err
	}
	f.raw = s
	return nil
}

func intSetter(p *int) func(string) error {
	return func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		*p = v
		return nil
	}
}

func floatSetter(p *float64) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		*p = v
		return nil
	}
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
