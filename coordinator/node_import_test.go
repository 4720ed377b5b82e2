package coordinator_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// externalModel is a small external model (PyTorch nn.Linear naming)
// with distinct, awkward parameter values (a NaN payload would not
// survive a float conversion; these must survive bit for bit).
func externalModel(t *testing.T, name string, in, out int) *tensor.Model {
	t.Helper()
	spec, err := tensor.ExternalSpec(name, []tensor.ExternalTensor{{Name: "linear.weight", Shape: []int{out, in}}, {Name: "linear.bias", Shape: []int{out}}})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]float32, out*in+out)
	for i := range p {
		p[i] = math.Float32frombits(0x3f800000 ^ uint32(i*2654435761)>>9)
	}
	m, err := tensor.NewExternalModel(spec, p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// followerClient returns an admin client that knows only a follower, so
// every write must be redirected to the leader.
func followerClient(t *testing.T, c *testcluster.Cluster) *api.Client {
	t.Helper()
	li, _ := c.Leader()
	f := (li + 1) % len(c.Peers)
	a, err := api.Load(filepath.Join(c.Dir, "admin"), []string{c.Peers[f].Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestModelsImport imports an external model through a follower (the
// upload is redirected to the leader), and reads it back bit for bit from
// the registry: a version without parent, job or round, not made stable.
func TestModelsImport(t *testing.T) {
	c := newCluster(t, 3)
	a := followerClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := externalModel(t, "logreg-torch", 12, 3)
	got, err := a.Models().Import(ctx, "init-logreg", m)
	if err != nil {
		t.Fatal(err)
	}
	h := m.Hash()
	if got.Version == 0 || got.Parent != 0 || got.Job != "" || got.Round != 0 || !got.External || got.Name != "init-logreg" ||
		!strings.HasPrefix(got.ImportedBy, "operator:") || got.Hash != hex.EncodeToString(h[:]) {
		t.Fatalf("imported model %+v", got)
	}
	back, err := a.FetchModel(ctx, got.Version)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Spec.IsExternal() || back.Spec.Name != "init-logreg" || len(back.Params) != len(m.Params) {
		t.Fatalf("fetched spec %+v with %d params", back.Spec, len(back.Params))
	}
	for i := range m.Params {
		if math.Float32bits(back.Params[i]) != math.Float32bits(m.Params[i]) {
			t.Fatalf("param %d: %x, imported %x", i, math.Float32bits(back.Params[i]), math.Float32bits(m.Params[i]))
		}
	}
	st, err := a.Cluster().Status(ctx, api.QueryOptions{Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Stable != 0 {
		t.Errorf("an import made version %d stable; agents would serve it without a rollout", st.Stable)
	}
	// Every replica holds it (it went through the Raft log).
	for _, nd := range c.Nodes {
		testutil.WaitFor(t, 15*time.Second, "the import on every node", func() bool {
			var hash string
			nd.FSM().Read(func(s *coordinator.State) {
				if r, ok := s.Models[got.Version]; ok && r.BlobHash != "" && nd.FSM().Blobs().Has(r.BlobHash) {
					hash = r.Hash
				}
			})
			return hash == got.Hash
		})
	}
	// The verb carries a file: a plain admin request is refused.
	var out api.Model
	err = a.Call(ctx, api.VerbModelsImport, api.QueryOptions{}, api.ImportRequest{}, &out)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest {
		t.Errorf("models.import as a plain request: %v", err)
	}
	// Garbage is not a model file.
	if _, err := a.Models().ImportFile(ctx, "", []byte("definitely not a model file")); !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest {
		t.Errorf("importing garbage: %v", err)
	}
	// Under its own name the file streams through the leader as it is:
	// the same version hash, the same parameters; a byte past a model
	// file's end is refused.
	file, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Models().ImportFile(ctx, "", append(slices.Clone(file), 0)); !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest {
		t.Errorf("importing a file with a trailing byte: %v", err)
	}
	same, err := a.Models().ImportFile(ctx, "", file)
	if err != nil {
		t.Fatal(err)
	}
	if same.Hash != got.Hash || same.Name != "logreg-torch" || same.Size != len(file) {
		t.Fatalf("streamed import %+v, file of %d bytes", same, len(file))
	}
	back, err = a.FetchModel(ctx, same.Version)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Params, m.Params) {
		t.Fatal("the streamed import's parameters differ from the file's")
	}
}

// TestModelsImportBound: a file over max_import_bytes is refused before
// it is received, and the registry stays empty.
func TestModelsImportBound(t *testing.T) {
	c := newTunedCluster(t, 1, func(cfg *coordinator.Config) { cfg.MaxImportBytes = 64 << 10 })
	a := c.Admin
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.Models().Import(ctx, "", externalModel(t, "big", 200, 100)) // 80 KB of parameters
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeTooLarge || !strings.Contains(pe.Message, "max_import_bytes") {
		t.Fatalf("oversized import: %v", err)
	}
	if _, err := a.Models().Import(ctx, "", externalModel(t, "small", 12, 3)); err != nil {
		t.Fatalf("an import under the bound after a refused one: %v", err)
	}
}

// TestExternalJobRules: an external model needs imported weights, and
// cannot take a standardization layer.
func TestExternalJobRules(t *testing.T) {
	c := newCluster(t, 1)
	a := c.Admin
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ext := externalModel(t, "ext", 4, 2)
	spec, _ := json.Marshal(ext.Spec)
	_, err := a.Jobs().Start(ctx, api.JobSpec{Name: "ext", Spec: spec})
	if err == nil || !strings.Contains(err.Error(), "init_model") || !strings.Contains(err.Error(), "fedge models import") {
		t.Errorf("job of an external spec without weights: %v", err)
	}
	_, err = a.Jobs().Start(ctx, api.JobSpec{Name: "ext", Spec: spec, Data: api.DataSchema{Standardize: true}})
	if err == nil || !strings.Contains(err.Error(), "external") {
		t.Errorf("standardized job of an external spec: %v", err)
	}
	v, err := a.Models().Import(ctx, "", ext)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Jobs().Start(ctx, api.JobSpec{Name: "ext", InitModel: v.Version, Data: api.DataSchema{Standardize: true}})
	if err == nil || !strings.Contains(err.Error(), "own trainer") {
		t.Errorf("standardized job from an imported external model: %v", err)
	}
	j, err := a.Jobs().Start(ctx, api.JobSpec{Name: "ext", InitModel: v.Version})
	if err != nil || j.Model != v.Version {
		t.Fatalf("job from the imported model: %+v, %v", j, err)
	}
}
