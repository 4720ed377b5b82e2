package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/logging"
)

// coordinatorFile is the coordinator's configuration file: the JSON fields
// of coordinator.Config plus how to log.
type coordinatorFile struct {
	coordinator.Config
	// LogFormat is "text" (default) or "json"; LogLevel "debug", "info"
	// (default), "warn" or "error".
	LogFormat string `json:"log_format,omitempty"`
	LogLevel  string `json:"log_level,omitempty"`
}

var coordinatorSpec = cmdSpec{
	path: "coordinator",
	help: `Run one coordinator node until SIGINT or SIGTERM, then stop it cleanly. The
node serves agents, operators and its Raft peers on one UDP (QUIC) port. Its
configuration comes from -config (a JSON file with the fields node_id,
data_dir, listen, advertise, peers [{"id","addr"}], log_format, log_level,
max_token_ttl, seal_key_file, seal_passphrase_file, max_import_bytes (the
largest model file fedge models import accepts; default 256 MiB),
max_concurrent_rounds (rounds of different jobs and rollouts the leader
runs at once, one per job or rollout; default 4, 1 runs one at a time),
metrics_listen, ui_listen, ui_tls_cert, ui_tls_key, ui_allow_insecure_http,
ui_url, raft {"heartbeat", "election", "leader_lease", "commit"} (Go
durations; default raft's LAN timings of 1s, 1s, 500ms, 50ms; on a host
whose CPU is shared with heavier work use 5s, 5s, 4s: see
coordinator.LoadedHostRaftTimings), and admission
{"max_unverified" (default 64), "max_unverified_per_source" (16),
"enroll_max_frame" (8192)}: the bounds on clients without a certificate;
unknown fields are an error), and each flag given overrides the file. The
data dir must hold the tls/ folder fedge init wrote for this node. A new
node bootstraps the cluster from peers; a restarted one ignores them.

With -metrics-listen host:port (off by default) the node serves over HTTP
/metrics (Prometheus), /healthz (200 while the process runs) and /readyz
(200 once the node is a voter of a cluster with a known leader, else 503
and the reason). Keep it on a loopback or management address.

With -ui-listen host:port (off by default) the node serves the web console
there: the cluster, agents, jobs with their charts, rounds, models and
rollouts, and the operator actions on them. Operators log in with a link
from fedge console login. A loopback address serves plain HTTP; any other
needs -ui-tls-cert and -ui-tls-key (HTTPS), or -ui-allow-insecure-http (a
proxy in front terminates TLS), else the node refuses to start.

The seal key that opens the CA comes from exactly one of: FEDGE_SEAL_KEY (hex),
FEDGE_SEAL_PASSPHRASE, seal_key_file, seal_passphrase_file; with none, from
tls/seal.key next to the CA (where fedge init writes it by default). A wrong
key stops the node at start. Join tokens live at most max_token_ttl (default
168h, 7 days); longer requests are refused.`,
	example: `fedge coordinator -config ./cluster/c1/coordinator.json
fedge coordinator -node-id c1 -data-dir ./cluster/c1 -listen 127.0.0.1:7001 -peers c1=127.0.0.1:7001`,
}

func runCoordinator(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runCoordinatorContext(ctx, args, stdout, stderr)
}

// runCoordinatorContext runs the node until ctx ends.
func runCoordinatorContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, coordinatorSpec, false)
	path := c.fs.String("config", "", "configuration file (JSON)")
	c.fs.String("node-id", "", "this node's Raft ID; must match its certificate (JSON node_id)")
	c.fs.String("data-dir", "", "folder holding tls/ and raft/ (JSON data_dir)")
	c.fs.String("listen", "", "UDP host:port to listen on (JSON listen)")
	c.fs.String("advertise", "", "host:port peers and agents dial; default -listen (JSON advertise)")
	c.fs.String("peers", "", "initial voters id=host:port,..., this node included (JSON peers)")
	c.fs.String("log-format", "", "log format: text or json (JSON log_format)")
	c.fs.String("log-level", "", "log level: debug, info, warn or error (JSON log_level)")
	c.fs.String("seal-key-file", "", "file holding the seal key in hex, outside the data dir (JSON seal_key_file)")
	c.fs.String("seal-passphrase-file", "", "file whose first line is the seal passphrase (JSON seal_passphrase_file)")
	c.fs.String("metrics-listen", "", "TCP host:port serving /metrics, /healthz and /readyz over HTTP; empty: off (JSON metrics_listen)")
	c.fs.String("ui-listen", "", "TCP host:port serving the web console; empty: off (JSON ui_listen)")
	c.fs.String("ui-tls-cert", "", "PEM certificate of the console's HTTPS (JSON ui_tls_cert)")
	c.fs.String("ui-tls-key", "", "PEM key of the console's HTTPS (JSON ui_tls_key)")
	c.fs.Bool("ui-allow-insecure-http", false, "serve the console over plain HTTP on a non-loopback address (JSON ui_allow_insecure_http)")
	c.fs.String("ui-url", "", "the console's base URL in login links; default from -ui-listen (JSON ui_url)")
	c.fs.Duration("max-token-ttl", 0, "longest join-token lifetime issued; 0 means 168h (JSON max_token_ttl)")
	c.fs.Int64("max-import-bytes", 0, "largest model file an operator may import; 0 means 256 MiB (JSON max_import_bytes)")
	c.fs.Int("max-concurrent-rounds", 0, "rounds of different jobs and rollouts the leader runs at once; 0 means 4 (JSON max_concurrent_rounds)")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	var file coordinatorFile
	if *path != "" {
		var err error
		if file, err = loadCoordinatorFile(*path); err != nil {
			return c.inputFail(err)
		}
	}
	if err := applyCoordinatorFlags(c, &file); err != nil {
		return c.usageFail(err)
	}
	logger, err := newLogger(stderr, file.LogFormat, file.LogLevel)
	if err != nil {
		return c.inputFail(err)
	}
	cfg := file.Config
	cfg.Logger = logger
	if v := os.Getenv(envSealKey); v != "" {
		k, err := identity.ParseSealKey(v)
		if err != nil {
			return c.inputFail(fmt.Errorf("%s: %w", envSealKey, err))
		}
		cfg.SealKey = k
	}
	if v := os.Getenv(envSealPassphrase); v != "" {
		cfg.SealPassphrase = []byte(v)
	}
	if err := cfg.Validate(); err != nil {
		return c.inputFail(err)
	}
	node, err := coordinator.NewNode(cfg)
	if err != nil {
		return c.fail(err)
	}
	logger.Info("coordinator running", "node", node.ID(), "addr", node.Addr())
	fmt.Fprintf(stdout, "coordinator %s listening on %s (stop with Ctrl-C)\n", node.ID(), node.Addr())
	if a := node.MetricsAddr(); a != "" {
		fmt.Fprintf(stdout, "metrics, health and readiness on http://%s/metrics, /healthz, /readyz\n", a)
	}
	if u := node.UIURL(); u != "" {
		fmt.Fprintf(stdout, "web console at %s (log in with: fedge console login -coordinators %s)\n", u, node.Addr())
	}
	<-ctx.Done()
	logger.Info("stopping coordinator", "node", node.ID())
	if err := node.Close(); err != nil {
		return c.fail(fmt.Errorf("closing node: %w", err))
	}
	fmt.Fprintf(stdout, "coordinator %s stopped\n", node.ID())
	return exitOK
}

// loadCoordinatorFile reads a configuration file, rejecting unknown fields
// and trailing content.
func loadCoordinatorFile(path string) (coordinatorFile, error) {
	var f coordinatorFile
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return f, fmt.Errorf("%s: trailing content after the JSON object", path)
	}
	return f, nil
}

// applyCoordinatorFlags copies the flags given on the command line over
// the file's values.
func applyCoordinatorFlags(c *cli, f *coordinatorFile) error {
	var err error
	c.visit(func(fl *flag.Flag) {
		v := fl.Value.String()
		switch fl.Name {
		case "node-id":
			f.NodeID = v
		case "data-dir":
			f.DataDir = v
		case "listen":
			f.Listen = v
		case "advertise":
			f.Advertise = v
		case "peers":
			var perr error
			if f.Peers, perr = coordinator.ParsePeers(v); perr != nil {
				err = perr
			}
		case "log-format":
			f.LogFormat = v
		case "log-level":
			f.LogLevel = v
		case "metrics-listen":
			f.MetricsListen = v
		case "ui-listen":
			f.UIListen = v
		case "ui-tls-cert":
			f.UITLSCert = v
		case "ui-tls-key":
			f.UITLSKey = v
		case "ui-allow-insecure-http":
			f.UIAllowInsecureHTTP = v == "true"
		case "ui-url":
			f.UIURL = v
		case "seal-key-file":
			f.SealKeyFile = v
		case "seal-passphrase-file":
			f.SealPassphraseFile = v
		case "max-token-ttl":
			d, perr := time.ParseDuration(v)
			if perr != nil || d < 0 {
				err = fmt.Errorf("-max-token-ttl %q: want a positive duration such as 72h", v)
			}
			f.MaxTokenTTL = api.Duration(d)
		case "max-import-bytes":
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || n < 0 {
				err = fmt.Errorf("-max-import-bytes %q: want a number of bytes >= 0", v)
			}
			f.MaxImportBytes = n
		case "max-concurrent-rounds":
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 0 {
				err = fmt.Errorf("-max-concurrent-rounds %q: want a number of rounds >= 0", v)
			}
			f.MaxConcurrentRounds = n
		}
	})
	return err
}

// errBadLogConfig reports an unknown log format or level.
var errBadLogConfig = errors.New("bad log configuration")

// newLogger builds a slog logger writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	log, err := logging.New(w, format, level)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadLogConfig, err)
	}
	return log, nil
}
