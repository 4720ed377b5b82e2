package tensor

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenModel is a tiny model with parameters 0.5·i − 1, whose encoding is
// kept in testdata/ to pin the file format.
func goldenModel(t testing.TB) *Model {
	t.Helper()
	m, err := NewModel(Spec{Name: "golden", Input: []int{3}, Layers: []LayerSpec{{Type: LayerDense, Units: 2}, {Type: LayerReLU}, {Type: LayerDense, Units: 2}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Params {
		m.Params[i] = 0.5*float32(i) - 1
	}
	return m
}

func TestModelFileGolden(t *testing.T) {
	b, err := goldenModel(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden.fedgemdl")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update)", err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", b, want)
	}
	// Spot-check the layout against the documented offsets.
	specLen := int(binary.LittleEndian.Uint32(b[12:]))
	if string(b[:8]) != "FEDGEMDL" || binary.LittleEndian.Uint16(b[8:]) != 1 ||
		binary.LittleEndian.Uint64(b[16+specLen:]) != 14 || len(b) != 16+specLen+8+4*14+4 {
		t.Errorf("layout does not match the documentation")
	}
	if got := binary.LittleEndian.Uint32(b[len(b)-4:]); got != crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli)) {
		t.Errorf("trailer is not the CRC-32C of the body")
	}
}

func TestModelRoundTrip(t *testing.T) {
	for _, name := range []string{SpecLogReg, Spec2NN, SpecCNN, SpecGCN} {
		t.Run(name, func(t *testing.T) {
			spec, _ := NamedSpec(name)
			m, err := NewModel(spec, 5)
			if err != nil {
				t.Fatal(err)
			}
			b, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			back, err := UnmarshalModel(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Spec, m.Spec) || !reflect.DeepEqual(back.Params, m.Params) {
				t.Fatal("UnmarshalModel(MarshalBinary) differs")
			}
			if back.Hash() != m.Hash() {
				t.Error("hash changed through the round trip")
			}
			var buf bytes.Buffer
			n, err := m.WriteTo(&buf)
			if err != nil || n != int64(len(b)) || !bytes.Equal(buf.Bytes(), b) {
				t.Fatalf("WriteTo wrote %d bytes (%v), differing from MarshalBinary's %d", n, err, len(b))
			}
			// ReadModel reads exactly one model and leaves what follows.
			buf.WriteString("next")
			r, err := ReadModel(&buf, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Params, m.Params) || buf.String() != "next" {
				t.Errorf("ReadModel: params equal %v, rest %q", reflect.DeepEqual(r.Params, m.Params), buf.String())
			}
		})
	}
}

func TestHash(t *testing.T) {
	m := goldenModel(t)
	b, _ := m.MarshalBinary()
	specLen := int(binary.LittleEndian.Uint32(b[12:]))
	params := b[16+specLen+8 : len(b)-4]
	if m.Hash() != sha256.Sum256(params) {
		t.Fatal("Hash is not the SHA-256 of the encoded parameters")
	}
	h := m.Hash()
	m.Params[3] += 1e-6
	if m.Hash() == h {
		t.Error("Hash ignores a parameter change")
	}
	big := make([]float32, 5000) // more than one internal chunk
	big[4999] = 1
	enc := make([]byte, 4*len(big))
	binary.LittleEndian.PutUint32(enc[4*4999:], 0x3f800000)
	if HashParams(big) != sha256.Sum256(enc) {
		t.Error("HashParams differs across chunk boundaries")
	}
}

// craft builds a model file around spec JSON and a parameter count, with a
// valid checksum.
func craft(spec string, count uint64, params int) []byte {
	var b []byte
	b = append(b, "FEDGEMDL"...)
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	b = binary.LittleEndian.AppendUint64(b, count)
	b = append(b, make([]byte, 4*params)...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func TestUnmarshalModelRejects(t *testing.T) {
	good, _ := goldenModel(t).MarshalBinary()
	withSum := func(b []byte) []byte {
		b = append([]byte(nil), b[:len(b)-4]...)
		return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	}
	patch := func(off int, v ...byte) []byte {
		b := append([]byte(nil), good...)
		copy(b[off:], v)
		return withSum(b)
	}
	dense := `{"input":[3],"layers":[{"type":"dense","units":2}]}`
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"short", good[:20], ErrFormat},
		{"magic", patch(0, 'X'), ErrFormat},
		{"version", patch(8, 2), ErrFormat},
		{"flags", patch(10, 1), ErrFormat},
		{"checksum", append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1), ErrChecksum},
		{"flipped param", func() []byte { b := append([]byte(nil), good...); b[len(b)-10] ^= 0x40; return b }(), ErrChecksum},
		{"trailing byte", withSum(append(append([]byte(nil), good[:len(good)-4]...), 0, 0, 0, 0, 0)), ErrFormat},
		{"huge spec length", patch(12, 0xff, 0xff, 0xff, 0x7f), ErrTooLarge},
		{"spec longer than file", patch(12, 0, 0, 1, 0), ErrFormat},
		{"bad json", craft(`{"input":[3],`, 8, 8), ErrFormat},
		{"unknown field", craft(`{"input":[3],"layers":[{"type":"dense","units":2}],"extra":1}`, 8, 8), ErrFormat},
		{"trailing json", craft(dense+`{}`, 8, 8), ErrFormat},
		{"invalid spec", craft(`{"input":[3],"layers":[{"type":"conv2d","filters":2}]}`, 0, 0), ErrInvalidSpec},
		{"count mismatch", craft(dense, 9, 9), ErrFormat},
		{"huge count", craft(dense, 1<<62, 8), ErrFormat},
		{"params short", craft(dense, 8, 7), ErrFormat},
		{"huge model", craft(`{"input":[16777216],"layers":[{"type":"dense","units":63}]}`, 16777216*63+63, 0), ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := UnmarshalModel(tt.b); !errors.Is(err, tt.want) {
				t.Errorf("UnmarshalModel = %v, want %v", err, tt.want)
			}
			_, err := ReadModel(bytes.NewReader(tt.b), 0)
			if err == nil {
				t.Errorf("ReadModel accepted it")
			}
		})
	}
	if _, err := UnmarshalModel(craft(dense, 8, 8)); err != nil {
		t.Errorf("crafted valid file rejected: %v", err)
	}
}

func TestReadModelLimit(t *testing.T) {
	b, _ := goldenModel(t).MarshalBinary()
	if _, err := ReadModel(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("limit = size: %v", err)
	}
	if _, err := ReadModel(bytes.NewReader(b), int64(len(b)-1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("limit = size-1: %v, want ErrTooLarge", err)
	}
	// A header announcing a 4 GiB model is refused after reading the
	// header and spec only, whatever the reader holds.
	huge := craft(`{"input":[16777216],"layers":[{"type":"dense","units":63}]}`, 16777216*63+63, 0)
	r := &countingReader{r: bytes.NewReader(huge)}
	if _, err := ReadModel(r, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge model: %v, want ErrTooLarge", err)
	}
	if r.n > 200 {
		t.Errorf("read %d bytes before refusing", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestUnmarshalTruncations(t *testing.T) {
	b, _ := goldenModel(t).MarshalBinary()
	for i := range len(b) {
		if _, err := UnmarshalModel(b[:i]); err == nil {
			t.Fatalf("accepted %d of %d bytes", i, len(b))
		}
		if _, err := ReadModel(bytes.NewReader(b[:i]), 0); !errors.Is(err, ErrFormat) {
			t.Fatalf("ReadModel of %d bytes: %v, want ErrFormat", i, err)
		}
	}
}

func FuzzUnmarshalModel(f *testing.F) {
	good, _ := goldenModel(f).MarshalBinary()
	f.Add(good)
	f.Add(craft(`{"input":[1,4,4],"layers":[{"type":"conv2d","filters":2,"kernel":3,"padding":1},{"type":"maxpool2d","kernel":2},{"type":"flatten"},{"type":"dense","units":2}]}`, 60, 60))
	f.Add(craft(`{"input":[3],"layers":[{"type":"dropout","rate":0.5},{"type":"gcnconv","units":2}]}`, 8, 8))
	f.Add(craft(`{"input":[2,2,1],"layers":[{"type":"standardize","shift":[0.5,-1,0,2],"scale":[1,0.25,3,1e-3]},{"type":"maxpool2d","kernel":1},{"type":"flatten"},{"type":"dense","units":2}]}`, 10, 10))
	f.Add(craft(`{"name":"ext","external":[{"name":"w","shape":[2,3]},{"name":"b","shape":[3]},{"name":"s","shape":[]}]}`, 10, 10))
	q := goldenModel(f)
	q.Spec.Quantize = QuantizeInt8
	q.RoundWeightsInt8()
	if b, err := q.MarshalBinary(); err == nil {
		f.Add(b) // the int8 form
	}
	if ext, err := os.ReadFile(filepath.Join("testdata", "golden-external.fedgemdl")); err == nil {
		f.Add(ext)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// Also with a correct checksum, so mutations reach the spec parser.
		if len(b) >= 4 {
			fixed := append([]byte(nil), b[:len(b)-4]...)
			checkDecode(t, binary.LittleEndian.AppendUint32(fixed, crc32.Checksum(fixed, crc32.MakeTable(crc32.Castagnoli))))
		}
	})
}

// checkDecode asserts that both decoders agree on b and that whatever they
// accept re-encodes and runs.
func checkDecode(t *testing.T, b []byte) {
	m, err := UnmarshalModel(b)
	r, rerr := ReadModel(bytes.NewReader(b), int64(len(b)))
	if (err == nil) != (rerr == nil) {
		t.Fatalf("UnmarshalModel %v but ReadModel %v", err, rerr)
	}
	if err != nil {
		return
	}
	if HashParams(m.Params) != HashParams(r.Params) { // bitwise: NaNs are valid parameters here
		t.Fatal("decoders disagree")
	}
	again, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if back, err := UnmarshalModel(again); err != nil {
		t.Fatalf("re-encoding does not decode: %v", err)
	} else if HashParams(back.Params) != HashParams(m.Params) {
		t.Fatal("re-encoding changed the parameters")
	}
	if m.Spec.IsExternal() {
		if _, err := m.Predict(nil, 0); !errors.Is(err, ErrExternalModel) {
			t.Fatalf("Predict on an external model: %v, want ErrExternalModel", err)
		}
		return
	}
	if !m.Spec.IsGraph() && m.Features() <= 4096 {
		if _, err := m.Predict(make([]float32, m.Features()), 1); err != nil {
			t.Fatalf("Predict on a decoded model: %v", err)
		}
	}
}

// Example of saving a model and loading it back.
func ExampleUnmarshalModel() {
	spec, _ := NamedSpec(SpecLogReg)
	m, _ := NewModel(spec, 1)
	b, _ := m.MarshalBinary()
	back, err := UnmarshalModel(b)
	fmt.Println(len(b), err, back.NumParams(), back.Hash() == m.Hash())
	// Output: 31521 <nil> 7850 true
}
