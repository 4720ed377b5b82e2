package agent

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
)

// writeCSV writes a small CSV dataset and returns its path.
func writeCSV(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "data.csv")
	var b strings.Builder
	b.WriteString("a,b,label\n")
	for i := range 40 {
		b.WriteString(strings.Join([]string{itoa(i % 7), itoa(i % 5), itoa(i % 2)}, ","))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	csv := writeCSV(t, dir)
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "agent.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := `"coordinators": ["127.0.0.1:7000"], "data_dir": "` + filepath.Join(dir, "state") + `"`
	ds := `"dataset": {"kind": "csv", "path": "` + csv + `", "label_column": "label"}`
	tests := []struct {
		name    string
		body    string
		wantErr string // substring; "" means valid
	}{
		{"valid", `{` + base + `, ` + ds + `}`, ""},
		{"unknown field", `{` + base + `, ` + ds + `, "coordinatorz": []}`, `unknown field "coordinatorz"`},
		{"unknown nested field", `{` + base + `, "dataset": {"kind": "csv", "path": "` + csv + `", "label_column": "label", "heldout": 0.2}}`, `unknown field "heldout"`},
		{"missing data path", `{` + base + `, "dataset": {"kind": "csv", "path": "/nonexistent/x.csv", "label_column": "label"}}`, "dataset.path"},
		{"missing dataset kind", `{` + base + `}`, "dataset.kind is required"},
		{"missing data dir", `{"coordinators": ["127.0.0.1:7000"], ` + ds + `}`, "data_dir is required"},
		{"no coordinators", `{"data_dir": "x", ` + ds + `}`, "coordinators"},
		{"bad address", `{"coordinators": ["nohostport"], "data_dir": "x", ` + ds + `}`, "not host:port"},
		{"bad window", `{` + base + `, ` + ds + `, "training_window": "22:00"}`, "training_window"},
		{"bad token", `{` + base + `, ` + ds + `, "join_token": "nope"}`, "join_token"},
		{"bad label", `{` + base + `, ` + ds + `, "labels": {"Region": "eu"}}`, "labels"},
		{"jobs", `{` + base + `, ` + ds + `, "jobs": {"allow": ["fraud-*"], "models": ["fraud"], "threads": 2, "concurrent": 2}}`, ""},
		{"bad jobs pattern", `{` + base + `, ` + ds + `, "jobs": {"allow": ["fraud-["]}}`, "jobs: pattern"},
		{"negative jobs threads", `{` + base + `, ` + ds + `, "jobs": {"threads": -1}}`, "jobs: threads"},
		{"bad log level", `{` + base + `, ` + ds + `, "log_level": "loud"}`, "log_level"},
		{"held out range", `{` + base + `, "dataset": {"kind": "csv", "path": "` + csv + `", "label_column": "label", "held_out": 1.5}}`, "held_out"},
		{"trailing data", `{` + base + `, ` + ds + `} {}`, "trailing data"},
		{"duration", `{` + base + `, ` + ds + `, "shutdown_timeout": "3s"}`, ""},
		{"bad duration", `{` + base + `, ` + ds + `, "shutdown_timeout": "3 parsecs"}`, "duration"},
		{"batching", `{` + base + `, ` + ds + `, "inference_limits": {"batch_wait": "2ms", "max_batch": 128}}`, ""},
		{"batch wait too long", `{` + base + `, ` + ds + `, "inference_limits": {"batch_wait": "1s"}}`, "batch_wait"},
		{"max batch too big", `{` + base + `, ` + ds + `, "inference_limits": {"max_batch": 5000}}`, "max_batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(write(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				if cfg.InferenceListen != DefaultInferenceListen || cfg.Dataset.HeldOut != DefaultHeldOut {
					t.Fatalf("defaults lost: %+v", cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	dir := t.TempDir()
	csv := writeCSV(t, dir)
	file := filepath.Join(dir, "agent.json")
	body := `{"coordinators": ["10.0.0.1:7000"], "data_dir": "` + dir + `/s", "threads": 2, "dataset": {"kind": "csv", "path": "` + csv + `", "label_column": "label"}, "labels": {"region": "us"}}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	Flags(fs, &cfg)
	path := fs.String("config", "", "")
	args := []string{"-config", file, "-threads", "3", "-labels", "region=eu,tier=canary", "-inference-listen", "", "-coordinators", "a:1, b:2", "-shutdown-timeout", "2s"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadConfig(*path)
	if err != nil {
		t.Fatal(err)
	}
	cfg = loaded
	fs.Visit(func(f *flag.Flag) { _ = f.Value.Set(f.Value.String()) })
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Threads != 3 || cfg.Labels["region"] != "eu" || cfg.Labels["tier"] != "canary" || cfg.InferenceListen != "" ||
		len(cfg.Coordinators) != 2 || cfg.Coordinators[1] != "b:2" || cfg.Dataset.Path != csv || time.Duration(cfg.ShutdownTimeout) != 2*time.Second {
		t.Fatalf("merged config = %+v", cfg)
	}
	// Every field is documented in -h.
	var usage strings.Builder
	fs.SetOutput(&usage)
	fs.PrintDefaults()
	for _, field := range []string{"coordinators", "join_token", "data_dir", "dataset.kind", "dataset.path", "dataset.label_column",
		"dataset.train_images", "dataset.train_labels", "dataset.partition", "dataset.shard", "dataset.shards", "dataset.seed",
		"dataset.held_out", "labels", "threads", "training_window", "inference_listen", "log_format", "log_level", "shutdown_timeout",
		"jobs.allow", "jobs.models", "jobs.threads", "jobs.concurrent"} {
		if !strings.Contains(usage.String(), "(JSON "+field+")") {
			t.Errorf("-h does not document %s", field)
		}
	}
	if err := fs.Parse([]string{"-threads", "many"}); err == nil {
		t.Fatal("bad -threads accepted")
	}
}

func TestTrainingWindow(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2025, 3, 1, h, m, 0, 0, time.Local) }
	tests := []struct {
		win  string
		t    time.Time
		want bool
	}{
		{"", at(12, 0), true},
		{"22:00-06:00", at(23, 30), true},
		{"22:00-06:00", at(5, 59), true},
		{"22:00-06:00", at(6, 0), false},
		{"22:00-06:00", at(12, 0), false},
		{"09:30-17:00", at(9, 30), true},
		{"09:30-17:00", at(9, 29), false},
		{"09:30-17:00", at(17, 0), false},
	}
	for _, tt := range tests {
		w, err := parseWindow(tt.win)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.contains(tt.t); got != tt.want {
			t.Errorf("%q contains %s = %v, want %v", tt.win, tt.t.Format("15:04"), got, tt.want)
		}
	}
	for _, bad := range []string{"10:00-10:00", "25:00-01:00", "10-12", "x"} {
		if _, err := parseWindow(bad); err == nil {
			t.Errorf("parseWindow(%q) accepted", bad)
		}
	}
}

func TestLineComments(t *testing.T) {
	cfg, err := parseConfig([]byte("// a comment\n{\n  // another\n  \"data_dir\": \"/x//y\", \"coordinators\": [\"a:1\"]\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/x//y" {
		t.Fatalf("data_dir %q: a // inside a string was taken for a comment", cfg.DataDir)
	}
	// A JSON error still names the file's own line.
	_, err = parseConfig([]byte("// c\n// c\n{\"data_dir\": 3}\n"))
	if err == nil || !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v", err)
	}
}

// TestDeploySample: deploy/agent.json, the commented sample the README
// installs, parses with no unknown field, and its data_dir is the folder
// the systemd unit lets the agent write.
func TestDeploySample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(b)
	if err != nil {
		t.Fatalf("deploy/agent.json: %v", err)
	}
	unit, err := os.ReadFile(filepath.Join("..", "deploy", "fedge-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "StateDirectory=fedge-agent\n") || cfg.DataDir != "/var/lib/fedge-agent" {
		t.Fatalf("data_dir %q is not the unit's StateDirectory /var/lib/fedge-agent", cfg.DataDir)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/fedge agent -config /etc/fedge/agent.json\n") {
		t.Fatal("the unit does not start the agent with /etc/fedge/agent.json")
	}
}

// TestConfigDurations: a configuration file's durations read as Go
// duration strings, as they always did, or as numbers of seconds, as job
// specs' do: one JSON Duration type serves both (protocol.Duration).
func TestConfigDurations(t *testing.T) {
	var _ protocol.Duration = Duration(0) // the same type, not a copy
	tests := []struct {
		body string
		want time.Duration
	}{
		{`{"shutdown_timeout": "2s"}`, 2 * time.Second},
		{`{"shutdown_timeout": 1.5}`, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		cfg, err := parseConfig([]byte(tt.body))
		if err != nil || time.Duration(cfg.ShutdownTimeout) != tt.want {
			t.Fatalf("%s: %v, %v; want %v", tt.body, time.Duration(cfg.ShutdownTimeout), err, tt.want)
		}
	}
	if _, err := parseConfig([]byte(`{"shutdown_timeout": "soon"}`)); err == nil {
		t.Fatal("a duration that is no duration was accepted")
	}
}
