package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/tensor"
)

// bigPair returns an external model of p parameters and the next version
// of it, a little moved.
func bigPair(t testing.TB, p int) (base, next *tensor.Model) {
	t.Helper()
	spec, err := tensor.ExternalSpec("big", []tensor.ExternalTensor{{Name: "w", Shape: []int{p}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	w, v := make([]float32, p), make([]float32, p)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
		v[i] = w[i] + float32(rng.NormFloat64()*1e-3)
	}
	if base, err = tensor.NewExternalModel(spec, w); err != nil {
		t.Fatal(err)
	}
	if next, err = tensor.NewExternalModel(spec, v); err != nil {
		t.Fatal(err)
	}
	return base, next
}

// completeDownload returns a finished download of blob for version, in
// the agent's download file, against base.
func completeDownload(t *testing.T, a *Agent, version uint64, blob []byte, base *tensor.Model) *download {
	t.Helper()
	f, err := a.st.files.partial(version)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteAt(blob, 0); err != nil {
		t.Fatal(err)
	}
	d := &download{version: version, base: base, f: f}
	d.p.Info = protocol.BlobInfo{Size: uint64(len(blob)), Hash: sha256.Sum256(blob)}
	return d
}

// modelFileNames lists the model files (named by their hash) the agent holds.
func modelFileNames(t *testing.T, a *Agent) []string {
	t.Helper()
	ents, err := os.ReadDir(a.st.files.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if len(e.Name()) == 2*sha256.Size {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestFinishDownloadAppliesInChunks: a lossless delta and a job's int8
// push, applied to the base from the download file, give the model and
// the model file that decoding the whole blob gives, bit for bit.
func TestFinishDownloadAppliesInChunks(t *testing.T) {
	const p = 3*encoding.DefaultApplyChunk + 1000 // chunks end inside int8 blocks of 3000
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	for _, o := range []encoding.Options{
		encoding.LosslessDelta(),
		{Codec: encoding.Int8, Compressor: encoding.Flate, BlockSize: 3000},
		{Codec: encoding.Float16, Compressor: encoding.Flate},
	} {
		base, next := bigPair(t, p)
		blob, err := encoding.Encode(next.Params, base.Params, o)
		if err != nil {
			t.Fatal(err)
		}
		wantFile, want, err := decodeDownload(blob, base.Clone())
		if err != nil {
			t.Fatal(err)
		}
		if o.Codec == encoding.Float32XOR && want.Hash() != next.Hash() {
			t.Fatal("the whole decode of a lossless delta is not the next version")
		}
		data, m, err := a.finishDownload(completeDownload(t, a, 5, blob, base))
		if err != nil {
			t.Fatalf("%v: %v", o, err)
		}
		for i := range want.Params {
			if math.Float32bits(m.Params[i]) != math.Float32bits(want.Params[i]) {
				t.Fatalf("%v: param %d is %#x, the whole decode %#x", o, i, math.Float32bits(m.Params[i]), math.Float32bits(want.Params[i]))
			}
		}
		sum := sha256.Sum256(wantFile)
		if data.file != hex.EncodeToString(sum[:]) {
			t.Fatalf("%v: model file %s, the whole decode's is %x", o, data.file, sum)
		}
		got, err := os.ReadFile(a.st.files.path(data.file))
		if err != nil || !bytes.Equal(got, wantFile) {
			t.Fatalf("%v: model file differs from the whole decode's (%v)", o, err)
		}
	}
}

// TestFinishDownloadRefusesCorruptDelta: a delta whose body was changed
// in transit (after the manifest: a node's bad encoding) is refused, no
// model file is written for it, and the served model stays.
func TestFinishDownloadRefusesCorruptDelta(t *testing.T) {
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	base, next := bigPair(t, 100_000)
	data, err := a.st.files.write(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.st.promote(&modelRecord{version: 1, hash: base.Hash(), modelData: data}); err != nil {
		t.Fatal(err)
	}
	blob, err := encoding.Encode(next.Params, base.Params, encoding.LosslessDelta())
	if err != nil {
		t.Fatal(err)
	}
	before := modelFileNames(t, a)
	for _, at := range []int{len(blob) / 2, len(blob) - 3} {
		bad := bytes.Clone(blob)
		bad[at] ^= 0x40
		held, err := a.st.files.load(data)
		if err != nil {
			t.Fatal(err)
		}
		_, m, err := a.finishDownload(completeDownload(t, a, 2, bad, held))
		if err == nil || m != nil {
			t.Fatalf("a delta changed at byte %d of %d was accepted", at, len(blob))
		}
		if !errors.Is(err, encoding.ErrCorrupt) && !errors.Is(err, encoding.ErrHashMismatch) {
			t.Fatalf("changed at %d: %v, want a corrupt blob or a hash mismatch", at, err)
		}
		if got := modelFileNames(t, a); !slices.Equal(got, before) {
			t.Fatalf("model files %v after a refused delta, want %v", got, before)
		}
		rec, err := a.st.model(keyCurrent)
		if err != nil || rec == nil || rec.version != 1 {
			t.Fatalf("served model after a refused delta: %+v %v", rec, err)
		}
		if m, err := a.st.files.load(rec.modelData); err != nil || m.Hash() != base.Hash() {
			t.Fatalf("the served model's file changed: %v", err)
		}
	}
}

// TestFinishDownloadMemory: applying a lossless delta to a 50 MB model
// (and writing the new model file) allocates less than a quarter of the
// model: the blob is read from its file a chunk at a time and the base
// becomes the result.
func TestFinishDownloadMemory(t *testing.T) {
	const p = 50 << 20 / 4
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	base, next := bigPair(t, p)
	blob, err := encoding.Encode(next.Params, base.Params, encoding.LosslessDelta())
	if err != nil {
		t.Fatal(err)
	}
	d := completeDownload(t, a, 9, blob, base)
	blob = nil
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, m, err := a.finishDownload(d)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if m.Hash() != next.Hash() {
		t.Fatal("the applied delta is not the next version")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4*p/4 {
		t.Fatalf("applying a delta to a %d-byte model allocated %d bytes, want under a quarter", 4*p, got)
	} else {
		t.Logf("applying a delta to a %d-byte model allocated %d bytes", 4*p, got)
	}
}
