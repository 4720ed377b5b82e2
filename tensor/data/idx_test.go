package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
)

// idxFile builds an IDX file from a magic number, dimensions and body.
func idxFile(magic uint32, dims []uint32, body []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		_ = binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(body)
	return b.Bytes()
}

func gzipped(t testing.TB, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestReadIDXImagesValid(t *testing.T) {
	raw := idxFile(idxImagesMagic, []uint32{3, 2, 4}, seq(24))
	for name, in := range map[string][]byte{"raw": raw, "gzip": gzipped(t, raw)} {
		t.Run(name, func(t *testing.T) {
			img, err := ReadIDXImages(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			if img.Count != 3 || img.Rows != 2 || img.Cols != 4 || !bytes.Equal(img.Pixels, seq(24)) {
				t.Fatalf("got %d×%d×%d %v", img.Count, img.Rows, img.Cols, img.Pixels)
			}
		})
	}
	// A body larger than the first buffer exercises the growth path.
	big := seq(3<<20 + 5)
	img, err := ReadIDXImages(bytes.NewReader(idxFile(idxImagesMagic, []uint32{uint32(len(big)), 1, 1}, big)))
	if err != nil || !bytes.Equal(img.Pixels, big) {
		t.Fatalf("large body: err=%v, equal=%v", err, err == nil && bytes.Equal(img.Pixels, big))
	}
	empty, err := ReadIDXImages(bytes.NewReader(idxFile(idxImagesMagic, []uint32{0, 28, 28}, nil)))
	if err != nil || empty.Count != 0 || len(empty.Pixels) != 0 {
		t.Fatalf("empty file: %+v, %v", empty, err)
	}
}

func TestReadIDXLabelsValid(t *testing.T) {
	raw := idxFile(idxLabelsMagic, []uint32{5}, []byte{5, 0, 4, 1, 9})
	for name, in := range map[string][]byte{"raw": raw, "gzip": gzipped(t, raw)} {
		lab, err := ReadIDXLabels(bytes.NewReader(in))
		if err != nil || !bytes.Equal(lab, []byte{5, 0, 4, 1, 9}) {
			t.Fatalf("%s: %v, %v", name, lab, err)
		}
	}
}

func TestReadIDXBad(t *testing.T) {
	good := idxFile(idxImagesMagic, []uint32{2, 3, 3}, seq(18))
	gz := gzipped(t, good)
	corrupt := bytes.Clone(gz)
	corrupt[len(corrupt)-6] ^= 0xff // CRC-32 of the gzip trailer
	tests := []struct {
		name   string
		in     []byte
		labels bool
		limit  int64
		want   error
	}{
		{"empty", nil, false, 0, ErrTruncated},
		{"one byte", []byte{0}, false, 0, ErrTruncated},
		{"truncated magic", good[:3], false, 0, ErrTruncated},
		{"truncated dims", good[:10], false, 0, ErrTruncated},
		{"labels magic for images", idxFile(idxLabelsMagic, []uint32{2, 3, 3}, seq(18)), false, 0, ErrFormat},
		{"images magic for labels", idxFile(idxImagesMagic, []uint32{2}, seq(2)), true, 0, ErrFormat},
		{"int32 element type", idxFile(0x00000c03, []uint32{2, 3, 3}, seq(18)), false, 0, ErrFormat},
		{"zero rows", idxFile(idxImagesMagic, []uint32{2, 0, 3}, nil), false, 0, ErrFormat},
		{"zero cols", idxFile(idxImagesMagic, []uint32{2, 3, 0}, nil), false, 0, ErrFormat},
		{"truncated body", good[:len(good)-1], false, 0, ErrTruncated},
		{"trailing byte", append(bytes.Clone(good), 0), false, 0, ErrFormat},
		{"label count over body", idxFile(idxLabelsMagic, []uint32{10}, seq(9)), true, 0, ErrTruncated},
		{"label trailing", idxFile(idxLabelsMagic, []uint32{2}, seq(3)), true, 0, ErrFormat},
		{"over limit", good, false, 17, ErrLimit},
		{"labels over limit", idxFile(idxLabelsMagic, []uint32{10}, seq(10)), true, 9, ErrLimit},
		{"huge dims", idxFile(idxImagesMagic, []uint32{0xffffffff, 0xffffffff, 0xffffffff}, nil), false, 0, ErrLimit},
		{"huge image size", idxFile(idxImagesMagic, []uint32{1, 0xffffffff, 0xffffffff}, nil), false, 0, ErrLimit},
		{"gzip truncated", gz[:len(gz)-10], false, 0, ErrTruncated},
		{"gzip bad checksum", corrupt, false, 0, ErrFormat},
		{"gzip header only", gz[:4], false, 0, ErrTruncated},
		{"gzip garbage", append([]byte{0x1f, 0x8b}, bytes.Repeat([]byte{0xff}, 20)...), false, 0, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := IDXReader{MaxBytes: tt.limit}
			var err error
			if tt.labels {
				_, err = d.ReadLabels(bytes.NewReader(tt.in))
			} else {
				_, err = d.ReadImages(bytes.NewReader(tt.in))
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestReadIDXNoAllocationBeyondInput checks that a short file whose header
// claims 700 MB (under the limit) allocates about what it holds.
func TestReadIDXNoAllocationBeyondInput(t *testing.T) {
	in := idxFile(idxImagesMagic, []uint32{900_000, 28, 28}, seq(1000))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadIDXImages(bytes.NewReader(in))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte input", got, len(in))
	}
}

func TestLoadMNIST(t *testing.T) {
	dir := testutil.MNISTDir(t)
	start := time.Now()
	train, test, err := LoadMNIST(dir)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	// Timing is measured by BenchmarkLoadMNIST; shared CI machines and the
	// race detector make a wall-clock assertion here flaky.
	t.Logf("LoadMNIST took %v", elapsed)
	// The published class counts of MNIST.
	wantHist := map[string][10]int{
		"train": {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949},
		"test":  {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009},
	}
	if train.Len() != 60000 || test.Len() != 10000 {
		t.Errorf("%d training and %d test examples, want 60000 and 10000", train.Len(), test.Len())
	}
	for name, d := range map[string]*[10]int{"train": histogram(train.Y), "test": histogram(test.Y)} {
		if *d != wantHist[name] {
			t.Errorf("%s label histogram %v, want %v", name, *d, wantHist[name])
		}
	}
	if train.Y[0] != 5 || test.Y[0] != 7 {
		t.Errorf("first labels %d, %d; want 5, 7", train.Y[0], test.Y[0])
	}
	for _, ds := range [2]interface{ Validate() error }{train, test} {
		if err := ds.Validate(); err != nil {
			t.Error(err)
		}
	}
	if train.Classes != 10 || len(train.Shape) != 3 || train.Shape[0] != 1 || train.Shape[1] != 28 || train.Shape[2] != 28 {
		t.Errorf("classes %d shape %v", train.Classes, train.Shape)
	}
	var sum float64
	lo, hi := float32(1), float32(0)
	for _, v := range train.X {
		sum += float64(v)
		lo, hi = min(lo, v), max(hi, v)
	}
	// MNIST's well-known mean pixel intensity is 0.1307.
	if mean := sum / float64(len(train.X)); lo != 0 || hi != 1 || mean < 0.1305 || mean > 0.1309 {
		t.Errorf("pixels in [%v,%v], mean %v; want [0,1], 0.1307", lo, hi, mean)
	}
}

func histogram(y []int32) *[10]int {
	var h [10]int
	for _, l := range y {
		h[l]++
	}
	return &h
}

// writeMNIST writes a small MNIST-shaped set of four raw IDX files.
func writeMNIST(t *testing.T, dir string, nTrain, nTrainLabels, rows int, label byte) {
	t.Helper()
	files := map[string][]byte{
		MNISTTrainImages: idxFile(idxImagesMagic, []uint32{uint32(nTrain), uint32(rows), 28}, seq(nTrain*rows*28)),
		MNISTTrainLabels: idxFile(idxLabelsMagic, []uint32{uint32(nTrainLabels)}, bytes.Repeat([]byte{label}, nTrainLabels)),
		MNISTTestImages:  idxFile(idxImagesMagic, []uint32{2, uint32(rows), 28}, seq(2*rows*28)),
		MNISTTestLabels:  idxFile(idxLabelsMagic, []uint32{2}, []byte{1, 2}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadMNISTCrafted(t *testing.T) {
	tests := []struct {
		name                 string
		n, nLabels, rows     int
		label                byte
		want                 error
		wantTrain, wantTestN int
	}{
		{"raw files", 3, 3, 28, 9, nil, 3, 2},
		{"count mismatch", 3, 4, 28, 1, ErrMismatch, 0, 0},
		{"not 28x28", 3, 3, 27, 1, ErrFormat, 0, 0},
		{"label 10", 3, 3, 28, 10, ErrFormat, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeMNIST(t, dir, tt.n, tt.nLabels, tt.rows, tt.label)
			train, test, err := LoadMNIST(dir)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (train.Len() != tt.wantTrain || test.Len() != tt.wantTestN || train.Y[0] != int32(tt.label) ||
				train.X[1] != float32(7)/255) {
				t.Fatalf("train %d test %d y0 %d x1 %v", train.Len(), test.Len(), train.Y[0], train.X[1])
			}
		})
	}
	dir := t.TempDir()
	if _, _, err := LoadMNIST(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty dir: err = %v, want fs.ErrNotExist", err)
	}
}

// writeFiles writes name → content into dir and returns name → path.
func writeFiles(t *testing.T, dir string, files map[string]string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		paths[name] = p
	}
	return paths
}
