package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/safetensors"
)

// TorchInit runs examples/trainer-torch's init.py (in dir, with the python3
// py) and reads the weights it wrote as the external model "mnist-cnn-bn".
func TorchInit(tb testing.TB, py, dir string) *tensor.Model {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "init.safetensors")
	if out, err := exec.Command(py, filepath.Join(dir, "init.py"), "-o", path).CombinedOutput(); err != nil {
		tb.Fatalf("init.py: %v\n%s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	m, err := safetensors.ReadModel(f, 1<<30, "mnist-cnn-bn")
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
