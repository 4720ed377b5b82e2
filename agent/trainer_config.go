package agent

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Defaults of a TrainerConfig.
const (
	// DefaultTrainerTimeout bounds one trainer run when TrainerConfig.Timeout
	// is zero; a round's own deadline may cut it shorter.
	DefaultTrainerTimeout = time.Hour
	// DefaultReloadTimeout bounds one run of the reload hook.
	DefaultReloadTimeout = time.Minute
)

// TrainerConfig names the external trainer: the program that trains (and
// evaluates) models fedge's engine does not run, following the contract of
// docs/TRAINER.md. The zero value means no external trainer: rounds of an
// external model then fail on this agent with a reason saying so.
type TrainerConfig struct {
	// Command is the trainer's argv, e.g. ["python3", "/opt/me/train.py"].
	// The program is looked up in PATH when it has no slash. Empty means
	// no external trainer.
	Command []string `json:"command,omitempty"`
	// Dir is the trainer's working directory. Empty means the run's own
	// fresh folder (which holds input/, output/ and tmp/).
	Dir string `json:"dir,omitempty"`
	// Env is added to the trainer's otherwise clean environment (PATH,
	// HOME and TMPDIR set to the run folder, LANG, and the FEDGE_*
	// variables of the contract).
	Env map[string]string `json:"env,omitempty"`
	// Timeout bounds one trainer run; the round's training deadline may
	// cut it shorter. JSON takes a Go duration ("20m"). Zero means
	// DefaultTrainerTimeout.
	Timeout Duration `json:"timeout,omitempty"`
	// MemoryMB caps the trainer's virtual address space (RLIMIT_AS, set by
	// /bin/sh's ulimit -v before the trainer starts), in MiB. It counts
	// mapped libraries too, so set it well above the resident size you
	// expect (PyTorch maps about 2 GiB at import). Zero means no limit.
	MemoryMB int `json:"memory_mb,omitempty"`
	// WorkDir holds the trainer's run folders, one per run, removed after
	// the run. Empty means DataDir/trainer.
	WorkDir string `json:"work_dir,omitempty"`
	// ServePath is where the agent writes each external model rolled out
	// to it, atomically (a temporary file renamed over it), as
	// safetensors. Empty means DataDir/serving/model.safetensors.
	ServePath string `json:"serve_path,omitempty"`
	// ReloadHook is the argv run after each write of ServePath (with
	// FEDGE_MODEL_PATH, FEDGE_MODEL_VERSION and FEDGE_MODEL_HASH set), so
	// the user's serving stack loads the new version. Empty means none.
	ReloadHook []string `json:"reload_hook,omitempty"`
}

// enabled reports whether an external trainer is configured.
func (t *TrainerConfig) enabled() bool { return len(t.Command) > 0 }

func (t *TrainerConfig) validate(bad func(string, ...any) error) error {
	if t.enabled() {
		if _, err := exec.LookPath(t.Command[0]); err != nil {
			return bad("trainer.command: %v", err)
		}
	}
	if t.Dir != "" {
		if err := isDir(t.Dir); err != nil {
			return bad("trainer.dir: %v", err)
		}
	}
	if t.Timeout < 0 {
		return bad("trainer.timeout must not be negative")
	}
	if t.MemoryMB < 0 {
		return bad("trainer.memory_mb must be >= 0, got %d", t.MemoryMB)
	}
	for k := range t.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("trainer.env: %q is not a variable name", k)
		}
	}
	if len(t.ReloadHook) > 0 {
		if _, err := exec.LookPath(t.ReloadHook[0]); err != nil {
			return bad("trainer.reload_hook: %v", err)
		}
	}
	return nil
}

func (t *TrainerConfig) timeout() time.Duration {
	if t.Timeout == 0 {
		return DefaultTrainerTimeout
	}
	return time.Duration(t.Timeout)
}

func (t *TrainerConfig) workDir(dataDir string) string {
	if t.WorkDir != "" {
		return t.WorkDir
	}
	return filepath.Join(dataDir, "trainer")
}

func (t *TrainerConfig) servePath(dataDir string) string {
	if t.ServePath != "" {
		return t.ServePath
	}
	return filepath.Join(dataDir, "serving", "model.safetensors")
}

// trainerFlags binds the trainer section's flags (see Flags).
func trainerFlags(fs *flag.FlagSet, c *Config) {
	list := func(name, field, usage string, p *[]string) {
		fs.Var(&flagValue{set: func(s string) error { *p = strings.Fields(s); return nil }}, name, usage+" (JSON "+field+")")
	}
	list("trainer", "trainer.command", "external trainer command, split at spaces (docs/TRAINER.md); trains models fedge's engine does not run", &c.Trainer.Command)
	fs.Var(&flagValue{set: func(s string) error { c.Trainer.Dir = s; return nil }}, "trainer-dir", "working directory of the external trainer (default: its run folder) (JSON trainer.dir)")
	fs.Var(&flagValue{set: func(s string) error {
		d, err := time.ParseDuration(s)
		c.Trainer.Timeout = Duration(d)
		return err
	}}, "trainer-timeout", fmt.Sprintf("bound of one external trainer run (default %v; the round deadline may cut it) (JSON trainer.timeout)", DefaultTrainerTimeout))
	fs.Var(&flagValue{set: intSetter(&c.Trainer.MemoryMB)}, "trainer-memory-mb", "external trainer's address-space limit in MiB (RLIMIT_AS; 0 = none) (JSON trainer.memory_mb)")
	fs.Var(&flagValue{set: func(s string) error { c.Trainer.ServePath = s; return nil }}, "serve-path", "file the agent writes rolled-out external models to, as safetensors (default DATA_DIR/serving/model.safetensors) (JSON trainer.serve_path)")
	list("reload-hook", "trainer.reload_hook", "command run after each write of the serve path, split at spaces", &c.Trainer.ReloadHook)
}

// isDir reports an error unless p is an existing directory.
func isDir(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", p)
	}
	return nil
}
