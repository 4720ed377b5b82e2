package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/logging"
	"github.com/fedge/fedge/protocol"
)

// Dataset kinds a DatasetConfig may name.
const (
	// DatasetMNIST is the MNIST training set read from a folder holding the
	// four IDX files (raw or gzipped), optionally cut into a demo shard.
	DatasetMNIST = "mnist"
	// DatasetIDX is a pair of IDX files (images and labels) of any size.
	DatasetIDX = "idx"
	// DatasetCSV is a CSV table with a header row and a label column.
	DatasetCSV = "csv"
	// DatasetImages is a folder per class of PNG and JPEG images
	// (path/<class>/<file>.png|.jpg|.jpeg), converted to Image's shape.
	DatasetImages = "images"
	// DatasetText is labelled documents, CSV or JSON Lines, for text
	// models: the agent tokenizes them as each model's spec says.
	DatasetText = "text"
)

// Partitions of the MNIST demo dataset (DatasetConfig.Partition).
const (
	PartitionIID          = "iid"          // a random equal share
	PartitionPathological = "pathological" // FedAvg's non-IID split: 2 label-sorted shards per agent
	PartitionDirichlet    = "dirichlet"    // label skew drawn from Dir(alpha)
)

// Defaults of a Config.
const (
	DefaultInferenceListen = "127.0.0.1:8080"
	DefaultHeldOut         = 0.1
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultSessionTimeout is how long the agent and its coordinator
	// go without hearing from each other before they give the session up.
	DefaultSessionTimeout = 5 * time.Second
	// Defaults of the inference server's limits (InferenceLimits).
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxRequests       = 64
	// Defaults and bounds of predict micro-batching (InferenceLimits).
	DefaultBatchWait = time.Millisecond
	DefaultMaxBatch  = 64
	MaxBatchWait     = 100 * time.Millisecond
	MaxMaxBatch      = 1024
)

// ErrConfig reports a configuration that cannot work; the message names the
// field.
var ErrConfig = errors.New("agent: invalid configuration")

// Config is an agent's configuration, read from a JSON file (LoadConfig)
// and overridden by flags (Flags). Start from DefaultConfig: its zero-value
// fields are not all the defaults (see InferenceListen and HeldOut).
type Config struct {
	// Coordinators are the host:port UDP (QUIC) addresses of the
	// coordinators; the agent tries them in turn and follows redirects to
	// the leader.
	Coordinators []string `json:"coordinators"`
	// JoinToken is the one-time enrollment token (fedge1.<id>.<secret>.<pin>),
	// needed only on the first start; once the data dir holds a certificate
	// it is ignored.
	JoinToken string `json:"join_token,omitempty"`
	// DataDir holds the agent's state (agent.db): identity, certificate,
	// models, round progress. It must be empty or hold an agent.db.
	DataDir string `json:"data_dir"`
	// Dataset is the local data the agent trains and evaluates on. It may
	// be left out (no kind) when Trainer is set: the external trainer
	// reads its own data.
	Dataset DatasetConfig `json:"dataset"`
	// Trainer is the external trainer for models fedge's engine does not
	// run (docs/TRAINER.md), and where rolled-out external models go.
	Trainer TrainerConfig `json:"trainer,omitempty"`
	// Labels describe the host for round selection and rollout cohorts
	// (e.g. region=eu, tier=canary); sent at enrollment.
	Labels map[string]string `json:"labels,omitempty"`
	// Threads caps the CPU cores the agent uses: Run sets
	// runtime.GOMAXPROCS(Threads) for the whole process, which bounds
	// training and inference alike. Zero leaves GOMAXPROCS alone.
	Threads int `json:"threads,omitempty"`
	// TrainingWindow restricts training to a daily local-time window
	// "HH:MM-HH:MM" (it may wrap past midnight, e.g. "22:00-06:00");
	// outside it the agent declines round invitations. Empty means always.
	TrainingWindow string `json:"training_window,omitempty"`
	// InferenceListen is the local HTTP address of the inference server;
	// DefaultConfig sets 127.0.0.1:8080, "" disables the server.
	InferenceListen string `json:"inference_listen"`
	// LogFormat is "text" or "json"; LogLevel "debug", "info", "warn" or
	// "error". Config.Logger builds the logger they describe.
	LogFormat string `json:"log_format,omitempty"`
	LogLevel  string `json:"log_level,omitempty"`
	// ShutdownTimeout bounds how long Run waits, once its context ends, for
	// the current round step and in-flight HTTP requests. JSON takes a Go
	// duration string ("10s"). Zero means DefaultShutdownTimeout.
	ShutdownTimeout Duration `json:"shutdown_timeout,omitempty"`
	// SessionTimeout is how long the agent and its coordinator go without
	// hearing from each other before they give the session up: the QUIC
	// idle timeout (keep-alives go out every third of it, so a quiet but
	// healthy session stays up), and the bound on a heartbeat's answer and
	// on a dial. A killed or frozen coordinator is left, and a killed
	// agent is seen gone by the coordinator, within about this time. JSON
	// takes a Go duration string. Zero means DefaultSessionTimeout (5 s).
	SessionTimeout Duration `json:"session_timeout,omitempty"`
	// InferenceLimits bound the inference server's clients.
	InferenceLimits InferenceLimits `json:"inference_limits"`
	// Metrics is the Prometheus registry the agent's series join, served
	// at /metrics on the inference port. Nil means a registry of the
	// agent's own, with the Go, process and fedge_build_info series.
	Metrics *prometheus.Registry `json:"-"`
	// OnUpdate, if set, sees each training round's update vector before
	// and after fixed-point encoding (x is nil without secure
	// aggregation), on the round's goroutine, before it is masked: for
	// harnesses that check an aggregate against the updates that made it.
	// It must not keep or change the slices.
	OnUpdate func(vec []float32, x []uint32) `json:"-"`

	// Jobs limits the jobs the agent takes part in, the model lines it
	// serves, and how their trainings share the CPU (config_jobs.go).
	Jobs JobsConfig `json:"jobs,omitempty"`
}

// InferenceLimits bound what clients of the inference server may hold: a
// client that sends its request slowly, or keeps connections idle, or too
// many requests at once, must not exhaust the agent. JSON durations are Go
// duration strings ("5s"); zero fields mean the defaults.
type InferenceLimits struct {
	// ReadHeaderTimeout bounds reading a request's headers. Zero means
	// DefaultReadHeaderTimeout (5 s).
	ReadHeaderTimeout Duration `json:"read_header_timeout,omitempty"`
	// ReadTimeout bounds reading a whole request, body included (a
	// predict body is at most MaxPredictBody). Zero means
	// DefaultReadTimeout (30 s).
	ReadTimeout Duration `json:"read_timeout,omitempty"`
	// WriteTimeout bounds writing a response. Zero means
	// DefaultWriteTimeout (30 s).
	WriteTimeout Duration `json:"write_timeout,omitempty"`
	// IdleTimeout closes a keep-alive connection idle this long. Zero
	// means DefaultIdleTimeout (60 s).
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
	// MaxRequests caps the requests served at once; excess ones are
	// answered 503 with Retry-After at once. Zero means
	// DefaultMaxRequests (64).
	MaxRequests int `json:"max_requests,omitempty"`
	// BatchWait bounds how long a small predict request waits for others
	// to share one engine call (micro-batching); a request waits only
	// while other predict requests are arriving, so one alone never
	// does. Zero means DefaultBatchWait (1 ms); at most MaxBatchWait
	// (100 ms).
	BatchWait Duration `json:"batch_wait,omitempty"`
	// MaxBatch is the most rows one micro-batch gathers; requests of
	// MaxBatch rows or more are predicted on their own. Zero means
	// DefaultMaxBatch (64); 1 turns micro-batching off; at most
	// MaxMaxBatch (1024).
	MaxBatch int `json:"max_batch,omitempty"`
}

// withDefaults fills in the zero fields.
func (l InferenceLimits) withDefaults() InferenceLimits {
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.ReadTimeout, DefaultReadTimeout)
	def(&l.WriteTimeout, DefaultWriteTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxRequests == 0 {
		l.MaxRequests = DefaultMaxRequests
	}
	def(&l.BatchWait, DefaultBatchWait)
	if l.MaxBatch == 0 {
		l.MaxBatch = DefaultMaxBatch
	}
	return l
}

// DatasetConfig names the local data. Paths may be relative to the working
// directory.
type DatasetConfig struct {
	// Kind is "mnist", "idx", "csv", "images" or "text".
	Kind string `json:"kind"`
	// Path is the folder of the MNIST IDX files (mnist), the CSV file
	// (csv) or the folder of class folders (images).
	Path string `json:"path,omitempty"`
	// LabelColumn is the CSV header of the class column (csv).
	LabelColumn string `json:"label_column,omitempty"`
	// Classes fixes the CSV class names, or the image class folder names,
	// so every agent numbers them alike (csv, images; strongly
	// recommended, since one host may lack a class). Without it an image
	// dataset's classes are its folder names, sorted.
	Classes []string `json:"classes,omitempty"`
	// Image is the shape every image is converted to (images).
	Image ImageConfig `json:"image,omitzero"`
	// Features lists the CSV feature columns in model input order (csv;
	// default every column but the label).
	Features []string `json:"features,omitempty"`
	// TrainImages and TrainLabels are the IDX files (idx).
	TrainImages string `json:"train_images,omitempty"`
	TrainLabels string `json:"train_labels,omitempty"`
	// Partition, Shard, Shards, Alpha and Seed cut a demo shard out of the
	// dataset, as if Shards agents shared it: this agent keeps part Shard
	// (0-based) of a Partition ("iid", "pathological", "dirichlet" with
	// concentration Alpha) drawn with Seed. Shards 0 keeps everything.
	Partition string  `json:"partition,omitempty"`
	Shard     int     `json:"shard,omitempty"`
	Shards    int     `json:"shards,omitempty"`
	Alpha     float64 `json:"alpha,omitempty"`
	Seed      uint64  `json:"seed,omitempty"`
	// Indices, if set, keeps exactly these examples (instead of a partition).
	Indices []int `json:"indices,omitempty"`
	// Format is the file format of a text dataset (text): "csv" or
	// "jsonl" (JSON Lines). If empty, from Path's extension: .jsonl or
	// .ndjson is jsonl, .csv (or .tsv, tab-separated) is csv.
	Format string `json:"format,omitempty"`
	// TextColumn is the column (CSV header or JSON key) holding each
	// document (text). If empty, "text"; LabelColumn then defaults to
	// "label".
	TextColumn string `json:"text_column,omitempty"`
	// HeldOut is the fraction of the local examples kept out of training
	// for local evaluation of candidate models (rollout canaries), in
	// [0, 0.9]. DefaultConfig sets 0.1.
	HeldOut float64 `json:"held_out"`
}

// ImageConfig is the shape the images of an image dataset are converted
// to. It is fixed when the agent loads its data (once, at start-up), so
// it must be the input [channels, height, width] of the jobs' models: a
// training or evaluation round whose model takes another image input
// fails with both shapes named (a model taking a flat vector needs only
// as many features). Zero values mean 28, 28 and 1 (MNIST's gray 28×28,
// the input of the named models).
type ImageConfig struct {
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Channels is 1 (gray: the luma of colour images) or 3 (RGB).
	Channels int `json:"channels,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("1m30s"); it also reads a number of seconds. It is the type the
// admin API's job specs use (protocol.Duration).
type Duration = protocol.Duration

// DefaultConfig returns the configuration a file or flags start from.
func DefaultConfig() Config {
	return Config{
		InferenceListen: DefaultInferenceListen,
		LogFormat:       "text",
		LogLevel:        "info",
		Dataset:         DatasetConfig{HeldOut: DefaultHeldOut},
	}
}

// LoadConfig reads a JSON configuration file over DefaultConfig. Lines
// whose first non-blank characters are // are comments. Unknown fields are
// an error (a misspelt key must not silently fall back to a default), and
// so is trailing content. It validates the result.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("agent.LoadConfig: %w", err)
	}
	cfg, err := parseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("agent.LoadConfig: %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("agent.LoadConfig: %s: %w", path, err)
	}
	return cfg, nil
}

// parseConfig decodes a configuration file's bytes over DefaultConfig
// without validating it.
func parseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := json.NewDecoder(bytes.NewReader(blankLineComments(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, fmt.Errorf("%w: trailing data after the JSON object", ErrConfig)
	}
	return cfg, nil
}

// blankLineComments returns b with every line that starts (after blanks)
// with // turned into spaces, so JSON error offsets still point at the
// file's own lines. A // inside a string is left alone: only whole lines
// are comments.
func blankLineComments(b []byte) []byte {
	out := bytes.Clone(b)
	for start := 0; start < len(out); {
		end := bytes.IndexByte(out[start:], '\n')
		if end < 0 {
			end = len(out)
		} else {
			end += start
		}
		line := out[start:end]
		if t := bytes.TrimLeft(line, " \t"); bytes.HasPrefix(t, []byte("//")) {
			for i := range line {
				line[i] = ' '
			}
		}
		start = end + 1
	}
	return out
}

// Validate reports the first field that cannot work, wrapping ErrConfig.
// It checks that the dataset's files exist but does not read them.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if len(c.Coordinators) == 0 {
		return bad("coordinators: at least one host:port is required")
	}
	for _, a := range c.Coordinators {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("coordinators: %q is not host:port", a)
		}
	}
	if c.JoinToken != "" {
		if _, _, err := identity.ParseJoinToken(c.JoinToken); err != nil {
			return bad("join_token: %v", err)
		}
	}
	if c.DataDir == "" {
		return bad("data_dir is required")
	}
	if err := identity.ValidateLabels(c.Labels); err != nil {
		return bad("labels: %v", err)
	}
	if c.Threads < 0 {
		return bad("threads must be >= 0, got %d", c.Threads)
	}
	if _, err := parseWindow(c.TrainingWindow); err != nil {
		return bad("training_window: %v", err)
	}
	if c.InferenceListen != "" {
		if _, _, err := net.SplitHostPort(c.InferenceListen); err != nil {
			return bad("inference_listen: %q is not host:port", c.InferenceListen)
		}
	}
	if _, err := logging.New(io.Discard, c.LogFormat, c.LogLevel); err != nil {
		switch {
		case errors.Is(err, logging.ErrLevel):
			return bad("log_level: %v", err)
		default:
			return bad("log_format: %v", err)
		}
	}
	if c.ShutdownTimeout < 0 {
		return bad("shutdown_timeout must not be negative")
	}
	if c.SessionTimeout < 0 {
		return bad("session_timeout must not be negative")
	}
	l := c.InferenceLimits
	if l.ReadHeaderTimeout < 0 || l.ReadTimeout < 0 || l.WriteTimeout < 0 || l.IdleTimeout < 0 || l.MaxRequests < 0 {
		return bad("inference_limits: timeouts and max_requests must not be negative")
	}
	if l.BatchWait < 0 || time.Duration(l.BatchWait) > MaxBatchWait || l.MaxBatch < 0 || l.MaxBatch > MaxMaxBatch {
		return bad("inference_limits: batch_wait must be within 0 to %v and max_batch within 0 to %d", MaxBatchWait, MaxMaxBatch)
	}
	if err := c.Jobs.validate(); err != nil {
		return bad("jobs: %v", err)
	}
	if err := c.Trainer.validate(bad); err != nil {
		return err
	}
	if c.Dataset.Kind == "" && c.Trainer.enabled() {
		return nil // the external trainer reads its own data
	}
	return c.Dataset.validate(bad)
}

func (d *DatasetConfig) validate(bad func(string, ...any) error) error {
	exists := func(field, p string) error {
		if p == "" {
			return bad("dataset.%s is required for kind %q", field, d.Kind)
		}
		if _, err := os.Stat(p); err != nil {
			return bad("dataset.%s: %v", field, err)
		}
		return nil
	}
	switch d.Kind {
	case DatasetMNIST:
		if err := exists("path", d.Path); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(d.Path, "train-images-idx3-ubyte.gz")); err != nil {
			if _, err2 := os.Stat(filepath.Join(d.Path, "train-images-idx3-ubyte")); err2 != nil {
				return bad("dataset.path: %s holds no MNIST train-images-idx3-ubyte[.gz]", d.Path)
			}
		}
	case DatasetIDX:
		if err := exists("train_images", d.TrainImages); err != nil {
			return err
		}
		if err := exists("train_labels", d.TrainLabels); err != nil {
			return err
		}
	case DatasetCSV:
		if err := exists("path", d.Path); err != nil {
			return err
		}
		if d.LabelColumn == "" {
			return bad("dataset.label_column is required for kind csv")
		}
	case DatasetImages:
		if err := exists("path", d.Path); err != nil {
			return err
		}
		if err := d.imageOptions().Validate(); err != nil {
			return bad("dataset.image or dataset.classes: %v", err)
		}
	case DatasetText:
		if err := exists("path", d.Path); err != nil {
			return err
		}
		if _, _, err := d.textFormat(); err != nil {
			return bad("dataset.format: %v", err)
		}
	case "":
		return bad("dataset.kind is required (mnist, idx, csv, images or text)")
	default:
		return bad("dataset.kind %q is not mnist, idx, csv, images or text", d.Kind)
	}
	if !(d.HeldOut >= 0 && d.HeldOut <= 0.9) {
		return bad("dataset.held_out must lie in [0, 0.9], got %v", d.HeldOut)
	}
	if len(d.Indices) > 0 && d.Shards > 0 {
		return bad("dataset: indices and shards exclude each other")
	}
	for _, i := range d.Indices {
		if i < 0 {
			return bad("dataset.indices: negative index %d", i)
		}
	}
	if d.Shards < 0 || (d.Shards > 0 && (d.Shard < 0 || d.Shard >= d.Shards)) {
		return bad("dataset: shard %d is not in [0, shards=%d)", d.Shard, d.Shards)
	}
	switch d.Partition {
	case "", PartitionIID, PartitionPathological:
	case PartitionDirichlet:
		if !(d.Alpha > 0) {
			return bad("dataset.alpha must be > 0 for the dirichlet partition")
		}
	default:
		return bad("dataset.partition %q is not iid, pathological or dirichlet", d.Partition)
	}
	if d.Partition != "" && d.Shards == 0 {
		return bad("dataset.partition needs shards > 0")
	}
	return nil
}

// Logger returns a logger writing to w in LogFormat at LogLevel.
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	log, err := logging.New(w, c.LogFormat, c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("agent.Config.Logger: %w: %v", ErrConfig, err)
	}
	return log, nil
}

func (c *Config) shutdownTimeout() time.Duration {
	if c.ShutdownTimeout == 0 {
		return DefaultShutdownTimeout
	}
	return time.Duration(c.ShutdownTimeout)
}

func (c *Config) sessionTimeout() time.Duration {
	if c.SessionTimeout == 0 {
		return DefaultSessionTimeout
	}
	return time.Duration(c.SessionTimeout)
}

// window is a daily local-time interval [start, end) in minutes since
// midnight; end < start wraps past midnight. The zero window (always)
// has start == end == -1.
type window struct{ start, end int }

func parseWindow(s string) (window, error) {
	if s == "" {
		return window{-1, -1}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return window{}, fmt.Errorf("%q is not HH:MM-HH:MM", s)
	}
	start, err := parseClock(a)
	if err != nil {
		return window{}, err
	}
	end, err := parseClock(b)
	if err != nil {
		return window{}, err
	}
	if start == end {
		return window{}, fmt.Errorf("%q is empty (start equals end); leave it empty to train at any time", s)
	}
	return window{start, end}, nil
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a HH:MM time", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// contains reports whether local time t falls inside the window.
func (w window) contains(t time.Time) bool {
	if w.start < 0 {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	if w.start < w.end {
		return m >= w.start && m < w.end
	}
	return m >= w.start || m < w.end
}
