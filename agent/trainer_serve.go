package agent

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/safetensors"
)

// publishExternal hands a rolled-out external model to the user's serving
// stack: it writes the weights atomically to the serve path as safetensors
// (a temporary file in the same folder, synced, renamed over it) and runs
// the reload hook. A failing hook fails the rollout on this agent, which
// retries it later.
func (a *Agent) publishExternal(ctx context.Context, version uint64, m *tensor.Model) error {
	path := a.cfg.Trainer.servePath(a.cfg.DataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("agent.publishExternal: %w", err)
	}
	h := m.Hash()
	meta := map[string]string{"fedge_model": m.Spec.Name, "fedge_version": strconv.FormatUint(version, 10), "fedge_hash": hex.EncodeToString(h[:])}
	if err := safetensors.WriteFile(path, m.Spec.External, m.Params, meta); err != nil {
		return fmt.Errorf("agent.publishExternal: %w", err)
	}
	a.log.Info("external model written for serving", "version", version, "path", path)
	hook := a.cfg.Trainer.ReloadHook
	if len(hook) == 0 {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, DefaultReloadTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, hook[0], hook[1:]...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8",
		"FEDGE_MODEL_PATH=" + path,
		"FEDGE_MODEL_VERSION=" + strconv.FormatUint(version, 10),
		"FEDGE_MODEL_HASH=" + hex.EncodeToString(h[:]),
	}
	tail := &tailWriter{max: stderrTailBytes}
	cmd.Stderr = tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("agent.publishExternal: reload hook: %v%s", err, suffix(tail.lastLine()))
	}
	return nil
}
