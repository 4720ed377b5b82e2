package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/safetensors"
)

// TestModelsImportExportRoundTrip: a safetensors file (as PyTorch writes
// one: tensors in another order than their names) goes through models
// import and comes back bit-exact from models export -format
// safetensors; a job file naming it with init_weights starts from a fresh
// import of it; a fedge model file imports too.
func TestModelsImportExportRoundTrip(t *testing.T) {
	tc := startCluster(t)
	dir := t.TempDir()
	layout := []tensor.ExternalTensor{
		{Name: "fc2.weight", Shape: []int{3, 8}}, {Name: "fc2.bias", Shape: []int{3}},
		{Name: "fc1.weight", Shape: []int{8, 12}}, {Name: "fc1.bias", Shape: []int{8}}, {Name: "scale", Shape: nil},
	}
	n := 3*8 + 3 + 8*12 + 8 + 1
	params := make([]float32, n)
	for i := range params {
		params[i] = math.Float32frombits(uint32(i)*2654435761 ^ 0x3e000000&0x7f7fffff)
	}
	params[5] = float32(math.Copysign(0, -1)) // -0 must stay -0
	in := filepath.Join(dir, "init.safetensors")
	if err := safetensors.WriteFile(in, layout, params, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	out := tc.ok(t, "models", "import", "-q", "-f", in, "-name", "mlp")
	v, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil || v == 0 {
		t.Fatalf("models import -q printed %q", out)
	}
	var m api.Model
	tc.okJSON(t, &m, "models", "show", "v"+strconv.FormatUint(v, 10))
	if !m.External || m.Name != "mlp" || m.Parent != 0 || m.ImportedBy == "" {
		t.Fatalf("models show of the import: %+v", m)
	}
	exp := filepath.Join(dir, "out.safetensors")
	tc.ok(t, "models", "export", "-format", "safetensors", "v"+strconv.FormatUint(v, 10), "-o", exp)
	f, err := os.Open(exp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, got, err := safetensors.Read(f, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(hdr.Layout) != len(layout) {
		t.Fatalf("exported layout %v", hdr.Layout)
	}
	for i := range layout {
		if hdr.Layout[i].Name != layout[i].Name || len(hdr.Layout[i].Shape) != len(layout[i].Shape) {
			t.Errorf("tensor %d: %+v, imported %+v", i, hdr.Layout[i], layout[i])
		}
	}
	for i := range params {
		if math.Float32bits(got[i]) != math.Float32bits(params[i]) {
			t.Fatalf("value %d: %#x, imported %#x", i, math.Float32bits(got[i]), math.Float32bits(params[i]))
		}
	}
	if hdr.Metadata["fedge_hash"] != m.Hash || hdr.Metadata["fedge_version"] != strconv.FormatUint(v, 10) {
		t.Errorf("metadata %v", hdr.Metadata)
	}

	// A fedge model file imports as it is, and exports the same bytes.
	fm := filepath.Join(dir, "v.fedgemdl")
	tc.ok(t, "models", "export", "v"+strconv.FormatUint(v, 10), "-o", fm)
	out = tc.ok(t, "models", "import", "-f", fm)
	contains(t, "models import of a fedge model file", out, "Imported", `"mlp"`, "external model, 5 tensors", strconv.Itoa(n)+" parameters")
	fm2 := filepath.Join(dir, "v2.fedgemdl")
	tc.ok(t, "models", "export", "v"+strconv.FormatUint(v+1, 10), "-o", fm2)
	a, _ := os.ReadFile(fm)
	b, _ := os.ReadFile(fm2)
	if !bytes.Equal(a, b) || len(a) == 0 {
		t.Errorf("re-imported fedge model file differs (%d vs %d bytes)", len(a), len(b))
	}

	// init_weights in a job file: imported first, the job starts from it.
	job := filepath.Join(dir, "job.json")
	if err := os.WriteFile(job, []byte(`{"name": "ext", "init_weights": "init.safetensors", "rounds": 2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var j api.Job
	tc.okJSON(t, &j, "jobs", "start", "-f", job)
	if j.Spec.InitModel != v+2 || j.Model != v+2 {
		t.Fatalf("job from init_weights starts from %d (model %d), want the new import v%d", j.Spec.InitModel, j.Model, v+2)
	}
	// Both init_weights and init_model: a usage error, nothing imported.
	if err := os.WriteFile(job, []byte(`{"name": "ext", "init_weights": "init.safetensors", "init_model": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := tc.admin(t, "jobs", "start", "-f", job); code != exitUsage || !strings.Contains(errs, "keep one") {
		t.Errorf("init_weights with init_model: exit %d, %s", code, errs)
	}
	// Not a model file at all: a usage error.
	bad := filepath.Join(dir, "bad.safetensors")
	if err := os.WriteFile(bad, []byte("not a model"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := tc.admin(t, "models", "import", "-f", bad); code != exitUsage || !strings.Contains(errs, "neither a fedge model file") {
		t.Errorf("importing garbage: exit %d, %s", code, errs)
	}
}

// TestExportEngineModelAsSafetensors: an engine model exports with the
// names and layouts of its PyTorch state_dict and its spec in the
// metadata, and imports back as the same engine model, bit for bit; the
// ONNX export of the same model imports back to the same predictions.
func TestExportEngineModelAsSafetensors(t *testing.T) {
	spec, err := tensor.NamedSpec("logreg")
	if err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewModel(spec, 7)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	if err := writeSafetensors(p, m, api.Model{Version: 4, Hash: "h"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, got, err := safetensors.Read(f, 1<<24)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != m.NumParams() || hdr.Metadata[safetensors.MetaSpec] == "" || hdr.Layout[0].Name != "1.weight" ||
		len(hdr.Layout[0].Shape) != 2 || hdr.Layout[0].Shape[0] != 10 || hdr.Layout[0].Shape[1] != 784 {
		t.Fatalf("layout %v, %d values, metadata %v", hdr.Layout, len(got), hdr.Metadata)
	}
	back, err := readModelFile(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if back.Spec.IsExternal() || back.Hash() != m.Hash() {
		t.Fatalf("safetensors round trip: external %v, hash %x vs %x", back.Spec.IsExternal(), back.Hash(), m.Hash())
	}
	o := filepath.Join(dir, "m.onnx")
	if err := writeONNX(o, m); err != nil {
		t.Fatal(err)
	}
	fromONNX, err := readModelFile(o, "")
	if err != nil {
		t.Fatal(err)
	}
	if fromONNX.Hash() != m.Hash() {
		t.Fatalf("ONNX round trip changed the parameters: %x vs %x", fromONNX.Hash(), m.Hash())
	}
}
