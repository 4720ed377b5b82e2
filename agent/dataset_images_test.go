package agent

import (
	"bytes"
	"errors"
	"flag"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// pngOf encodes a w×h gray image whose pixel (x, y) is f(x, y).
func pngOf(t testing.TB, w, h int, f func(x, y int) uint8) []byte {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetGray(x, y, color.Gray{Y: f(x, y)})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeImageFolder writes n 8×8 PNGs into each class folder under root:
// class c's images are bright in column c.
func writeImageFolder(t testing.TB, root string, classes []string, n int) {
	t.Helper()
	for c, name := range classes {
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for k := range n {
			b := pngOf(t, 8, 8, func(x, _ int) uint8 {
				if x == 2*c {
					return 255
				}
				return uint8(k)
			})
			if err := os.WriteFile(filepath.Join(root, name, string(rune('a'+k))+".png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestLoadDataImages(t *testing.T) {
	root := t.TempDir()
	writeImageFolder(t, root, []string{"left", "middle"}, 10)
	cfg := DatasetConfig{Kind: DatasetImages, Path: root, Image: ImageConfig{Width: 4, Height: 4}, HeldOut: 0.2}
	d, err := loadData(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !d.images || !slices.Equal(d.classes, []string{"left", "middle"}) {
		t.Fatalf("images %v, classes %q", d.images, d.classes)
	}
	if d.train.Len() != 16 || d.heldOut.Len() != 4 || !slices.Equal(d.train.Shape, []int{1, 4, 4}) || d.train.Classes != 2 {
		t.Fatalf("train %d held out %d shape %v classes %d", d.train.Len(), d.heldOut.Len(), d.train.Shape, d.train.Classes)
	}
	// Classes fixed by the configuration: this host lacks "right", and
	// numbers "middle" as the configuration says.
	cfg.Classes = []string{"right", "middle", "left"}
	d, err = loadData(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.classes, cfg.Classes) || d.train.Classes != 3 || slices.Contains(d.train.Y, 0) {
		t.Fatalf("classes %q, %d classes, labels %v", d.classes, d.train.Classes, d.train.Y)
	}
	// A file that does not decode stops the load, naming the file.
	bad := filepath.Join(root, "left", "zz.png")
	if err := os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nbroken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadData(&cfg); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("err = %v, want one naming %s", err, bad)
	}
}

func TestImagesConfig(t *testing.T) {
	root := t.TempDir()
	base := DefaultConfig()
	base.Coordinators = []string{"127.0.0.1:7000"}
	base.DataDir = t.TempDir()
	tests := []struct {
		name string
		ds   DatasetConfig
		want string // "" for valid
	}{
		{"defaults", DatasetConfig{Kind: DatasetImages, Path: root}, ""},
		{"rgb", DatasetConfig{Kind: DatasetImages, Path: root, Image: ImageConfig{Width: 32, Height: 32, Channels: 3}}, ""},
		{"no path", DatasetConfig{Kind: DatasetImages}, "dataset.path is required"},
		{"missing path", DatasetConfig{Kind: DatasetImages, Path: filepath.Join(root, "nope")}, "dataset.path"},
		{"channels", DatasetConfig{Kind: DatasetImages, Path: root, Image: ImageConfig{Channels: 4}}, "dataset.image"},
		{"repeated class", DatasetConfig{Kind: DatasetImages, Path: root, Classes: []string{"a", "a"}}, "dataset.classes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.Dataset = tt.ds
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrConfig naming %s", err, tt.want)
			}
		})
	}
	// The -image flag.
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	Flags(fs, &cfg)
	if err := fs.Parse([]string{"-dataset-kind", "images", "-image", "32x24x3"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Dataset.Kind != DatasetImages || cfg.Dataset.Image != (ImageConfig{Width: 32, Height: 24, Channels: 3}) {
		t.Fatalf("dataset %+v", cfg.Dataset)
	}
	for _, bad := range []string{"32x24", "32x24x3x1", "ax1x1", "32x24x3 "} {
		if err := fs.Parse([]string{"-image", bad}); err == nil {
			t.Errorf("-image %q accepted", bad)
		}
	}
}

// TestImageRoundShape runs training rounds on an agent whose images are
// [1 4 3]: a model taking [1 3 4] (as many features, another layout) is
// refused before training, naming both shapes; a model taking [1 4 3]
// trains.
func TestImageRoundShape(t *testing.T) {
	model := func(input []int) (*tensor.Model, []byte) {
		spec := tensor.Spec{Name: "img", Input: input, Layers: []tensor.LayerSpec{{Type: tensor.LayerFlatten}, {Type: tensor.LayerDense, Units: 3}}}
		m, err := tensor.NewModel(spec, 1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return m, b
	}
	wrong, wrongBlob := model([]int{1, 3, 4})
	right, rightBlob := model([]int{1, 4, 3})
	ds := synthData(30, 12, 3, 4)
	ds.Shape = []int{1, 4, 3}
	a := roundAgent(t, ds, 0.2)
	a.data.images = true
	err := a.data.fitsModel(1, wrong.Spec)
	if !errors.Is(err, tensor.ErrShape) || !strings.Contains(err.Error(), "[1 3 4]") || !strings.Contains(err.Error(), "[1 4 3]") {
		t.Fatalf("fitsModel = %v, want ErrShape naming [1 3 4] and [1 4 3]", err)
	}
	h := newHub(map[uint64][]byte{1: wrongBlob, 2: rightBlob})
	tw := &twin{agent: a.ID(), hub: h}
	round := func(id uint64, version uint64, hash protocol.Hash) {
		t.Helper()
		join, err := a.serve(tw, invite(id, protocol.RoundTrain, 20*time.Second))
		if err != nil || !join.(*protocol.RoundJoin).Accept {
			t.Fatalf("round %d not joined: %+v %v", id, join, err)
		}
		if _, err := a.serve(tw, &protocol.RoundPlan{RoundID: id, ModelVersion: version, ModelHash: hash, Epochs: 1, BatchSize: 4, LR: 0.05}); err != nil {
			t.Fatal(err)
		}
		waitIdle(t, a)
	}
	round(1, 1, wrong.Hash())
	if a.m.roundsFailed.Load() != 1 || a.m.roundsCompleted.Load() != 0 {
		t.Fatalf("model [1 3 4] on [1 4 3] images: failed %d, completed %d; want the round refused", a.m.roundsFailed.Load(), a.m.roundsCompleted.Load())
	}
	round(2, 2, right.Hash())
	if a.m.roundsCompleted.Load() != 1 {
		t.Fatalf("model [1 4 3] on [1 4 3] images: completed %d, failed %d", a.m.roundsCompleted.Load(), a.m.roundsFailed.Load())
	}
}
