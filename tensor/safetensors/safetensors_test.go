package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/fedge/fedge/tensor"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var tinyLayout = []tensor.ExternalTensor{
	{Name: "fc.weight", Shape: []int{2, 3}},
	{Name: "fc.bias", Shape: []int{2}},
	{Name: "scale", Shape: []int{}},
}

func tinyParams() []float32 {
	p := make([]float32, 9)
	for i := range p {
		p[i] = float32(i) - 2.5
	}
	return p
}

// file builds a safetensors file from a header string and n float32 values.
func file(hdr string, n int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(b, hdr...)
	return append(b, make([]byte, 4*n)...)
}

func TestGolden(t *testing.T) {
	var buf bytes.Buffer
	n, err := Write(&buf, tinyLayout, tinyParams(), map[string]string{"format": "pt"})
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("Write = %d, %v (wrote %d)", n, err, buf.Len())
	}
	path := filepath.Join("testdata", "tiny.safetensors")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("encoding changed:\n got %q\nwant %q", buf.Bytes(), want)
	}
	hl := binary.LittleEndian.Uint64(want)
	if hl%8 != 0 || !strings.HasPrefix(string(want[8:]), `{"__metadata__":{"format":"pt"},"fc.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}`) {
		t.Errorf("header is not the documented form: %s", want[8:8+hl])
	}
	f, params, err := Read(bytes.NewReader(want), int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Layout, tinyLayout) || !reflect.DeepEqual(params, tinyParams()) || f.Metadata["format"] != "pt" {
		t.Fatalf("Read = %+v %v", f, params)
	}
}

// TestReadIntoOtherOrder reads a file written in another tensor order (as
// PyTorch's save_file writes, sorted by name) into the caller's layout.
func TestReadIntoOtherOrder(t *testing.T) {
	// bias (2 values) first, then scale, then weight.
	hdr := `{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[12,36]},"scale":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}`
	b := file(hdr, 0)
	for _, v := range []float32{10, 11, 12, 0, 1, 2, 3, 4, 5} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	dst := make([]float32, 9)
	if _, err := ReadInto(bytes.NewReader(b), int64(len(b)), tinyLayout, dst); err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 1, 2, 3, 4, 5, 10, 11, 12}; !reflect.DeepEqual(dst, want) {
		t.Fatalf("ReadInto = %v, want %v", dst, want)
	}
}

func TestReadIntoLayoutMismatch(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Write(&buf, tinyLayout, tinyParams(), nil); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	tests := []struct {
		name   string
		layout []tensor.ExternalTensor
		want   string
	}{
		{"renamed", []tensor.ExternalTensor{{Name: "fc.W", Shape: []int{2, 3}}, {Name: "fc.bias", Shape: []int{2}}, {Name: "scale", Shape: []int{}}}, `unexpected tensor "fc.weight"`},
		{"reshaped", []tensor.ExternalTensor{{Name: "fc.weight", Shape: []int{3, 2}}, {Name: "fc.bias", Shape: []int{2}}, {Name: "scale", Shape: []int{}}}, `shape [2 3], want [3 2]`},
		{"missing", []tensor.ExternalTensor{{Name: "fc.weight", Shape: []int{2, 3}}, {Name: "fc.bias", Shape: []int{2}}, {Name: "scale", Shape: []int{}}, {Name: "extra", Shape: []int{1}}}, `tensor "extra" is missing`},
		{"extra", []tensor.ExternalTensor{{Name: "fc.weight", Shape: []int{2, 3}}, {Name: "fc.bias", Shape: []int{2}}}, `unexpected tensor "scale"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _ := tensor.Spec{External: tt.layout}.ParamCount()
			_, err := ReadInto(bytes.NewReader(good), int64(len(good)), tt.layout, make([]float32, n))
			if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrLayout naming %s", err, tt.want)
			}
		})
	}
}

func TestReadRejects(t *testing.T) {
	f32 := func(name string, shape string, a, b int) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":[` + itoa(a) + `,` + itoa(b) + `]}`
	}
	tests := []struct {
		name  string
		b     []byte
		limit int64
		want  error
	}{
		{"empty", nil, 1 << 20, ErrFormat},
		{"short length", []byte{1, 2, 3}, 1 << 20, ErrFormat},
		{"F16", file(`{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, 1), 1 << 20, ErrDType},
		{"BF16", file(`{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, 1), 1 << 20, ErrDType},
		{"I64 buffer", file(`{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, 2), 1 << 20, ErrDType},
		{"duplicate name", file(`{`+f32("w", "[1]", 0, 4)+`,`+f32("w", "[1]", 4, 8)+`}`, 2), 1 << 20, ErrFormat},
		{"gap", file(`{`+f32("a", "[1]", 0, 4)+`,`+f32("b", "[1]", 8, 12)+`}`, 3), 1 << 20, ErrFormat},
		{"overlap", file(`{`+f32("a", "[2]", 0, 8)+`,`+f32("b", "[1]", 4, 8)+`}`, 2), 1 << 20, ErrFormat},
		{"size mismatch", file(`{`+f32("a", "[2]", 0, 4)+`}`, 1), 1 << 20, ErrFormat},
		{"zero dim", file(`{`+f32("a", "[0]", 0, 0)+`}`, 0), 1 << 20, ErrFormat},
		{"negative dim", file(`{`+f32("a", "[-1]", 0, 4)+`}`, 1), 1 << 20, ErrFormat},
		{"huge shape", file(`{`+f32("a", "[4294967296,4294967296]", 0, 4)+`}`, 1), 1 << 20, ErrFormat},
		{"truncated data", file(`{`+f32("a", "[4]", 0, 16)+`}`, 3), 1 << 20, ErrFormat},
		{"trailing data", file(`{`+f32("a", "[1]", 0, 4)+`}`, 2), 1 << 20, ErrFormat},
		{"trailing header", file(`{`+f32("a", "[1]", 0, 4)+`}x`, 1), 1 << 20, ErrFormat},
		{"not an object", file(`[1,2]`, 0), 1 << 20, ErrFormat},
		{"bad metadata", file(`{"__metadata__":{"a":1}}`, 0), 1 << 20, ErrFormat},
		{"over limit", file(`{`+f32("a", "[1000]", 0, 4000)+`}`, 1000), 1000, ErrTooLarge},
		{"header over limit", file(`{`+f32("a", "[1]", 0, 4)+`}`, 1), 20, ErrTooLarge},
		{"header over max", binary.LittleEndian.AppendUint64(nil, MaxHeaderBytes+1), 1 << 40, ErrTooLarge},
		{"control char name", file(`{`+f32("a\u0001", "[1]", 0, 4)+`}`, 1), 1 << 20, ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Read(bytes.NewReader(tt.b), tt.limit)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestModelRoundTrip(t *testing.T) {
	spec, err := tensor.ExternalSpec("tiny", tinyLayout)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewExternalModel(spec, tinyParams())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WriteModel(&buf, m, nil); err != nil {
		t.Fatal(err)
	}
	back, err := ReadModel(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "tiny")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Spec, m.Spec) || back.Hash() != m.Hash() {
		t.Fatal("ReadModel(WriteModel) differs")
	}
	logreg, _ := tensor.NamedSpec(tensor.SpecLogReg)
	eng, _ := tensor.NewModel(logreg, 1)
	if _, err := WriteModel(&buf, eng, nil); !errors.Is(err, tensor.ErrInvalidSpec) {
		t.Errorf("WriteModel of an engine model: %v", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, tinyLayout, tinyParams(), nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if _, params, err := Read(bytes.NewReader(b), 1<<20); err != nil || !reflect.DeepEqual(params, tinyParams()) {
		t.Fatalf("after WriteFile: %v", err)
	}
	// A failed write leaves the old file and no temporary behind.
	if err := WriteFile(path, tinyLayout, tinyParams()[:3], nil); !errors.Is(err, ErrLayout) {
		t.Fatalf("short params: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after a failed write", len(ents))
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	_, _ = Write(&buf, tinyLayout, tinyParams(), map[string]string{"format": "pt"})
	f.Add(buf.Bytes())
	f.Add(file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2,1],"data_offsets":[4,12]}}`, 3))
	f.Add(file(`{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, params, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		// Whatever is accepted writes back to the same data and reads into
		// its own layout.
		var out bytes.Buffer
		if _, err := Write(&out, fl.Layout, params, fl.Metadata); err != nil {
			if len(fl.Layout) == 0 {
				return
			}
			t.Fatalf("accepted file does not write back: %v", err)
		}
		dst := make([]float32, len(params))
		if _, err := ReadInto(bytes.NewReader(b), int64(len(b)), fl.Layout, dst); err != nil {
			t.Fatalf("ReadInto its own layout: %v", err)
		}
		if !bytes.Equal(asBytes(dst), asBytes(params)) {
			t.Fatal("Read and ReadInto disagree")
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
