package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/safetensors"
)

// maxModelFile bounds a model file the CLI reads (the cluster bounds
// imports itself, by default to 256 MiB).
const maxModelFile = 4 << 30

var modelsImportSpec = cmdSpec{
	path: "models import",
	help: `Import initial weights into the model registry as a new version (no parent,
job or round): a safetensors file (F32 tensors, as PyTorch's
safetensors.torch.save_file writes them) becomes an external model, trained
by the agents' external trainers (docs/TRAINER.md); a fedge model file
(.fedgemdl, as models export writes it) is imported as it is. Start a job
from it with "init_model": VERSION in the job file (or name the file with
"init_weights" and jobs start imports it). The version is not served by
agents until a job trained from it commits, or a rollout starts it. The
leader refuses files over its max_import_bytes (default 256 MiB).`,
	example: `fedge models import -f init.safetensors -name mnist-cnn
V=$(fedge models import -q -f init.safetensors)`,
}

func runModelsImport(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, modelsImportSpec, true)
	file := c.fs.String("f", "", "model file: .safetensors, or a fedge model file (.fedgemdl)")
	name := c.fs.String("name", "", "model name in the registry (default: the file's base name for safetensors, the model's own for a fedge model file)")
	quiet := c.fs.Bool("q", false, "print only the version number (for scripts)")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *file == "" {
		return c.usageFail(usagef("-f FILE is required"))
	}
	m, err := readModelFile(*file, *name)
	if err != nil {
		return c.usageFail(err)
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.Model, error) {
		return cl.Models().Import(ctx, *name, m)
	}, func(w io.Writer, v api.Model) error {
		if *quiet {
			_, err := fmt.Fprintln(w, v.Version)
			return err
		}
		kind := "engine model"
		if v.External {
			kind = fmt.Sprintf("external model, %d tensors", len(m.Spec.External))
		}
		_, err := fmt.Fprintf(w, "Imported %s as %s: %q (%s, %d parameters, %s).\nStart a job from it with \"init_model\": %d in the job file.\n",
			*file, version(v.Version), v.Name, kind, m.NumParams(), bytesString(int64(v.Size)), v.Version)
		return err
	})
}

// readModelFile reads a model to import: a fedge model file (by its
// magic) or a safetensors file, which becomes an external model named
// name (default: the file's base name without extension).
func readModelFile(path, name string) (*tensor.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(len(tensor.ModelMagic))
	if string(head) == tensor.ModelMagic {
		m, err := tensor.ReadModel(br, st.Size())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return m, nil
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	m, err := safetensors.ReadModel(br, maxModelFile, name)
	if err != nil {
		return nil, fmt.Errorf("%s: neither a fedge model file nor a usable safetensors file: %w", path, err)
	}
	return m, nil
}

// Export formats of models export.
const (
	formatFedge       = "fedge"
	formatSafetensors = "safetensors"
)

// writeSafetensors writes m as a safetensors file at path (atomically),
// with the version's identity in the metadata. An external model keeps
// its tensors; an engine model's parameters are written per layer as
// 1-D tensors "layers.I.weight" and "layers.I.bias" in the engine's own
// order, with its spec (JSON) under "fedge_spec".
func writeSafetensors(path string, m *tensor.Model, rec api.Model) error {
	meta := map[string]string{"fedge_version": fmt.Sprint(rec.Version), "fedge_hash": rec.Hash, "fedge_model": m.Spec.Name}
	layout := m.Spec.External
	if !m.Spec.IsExternal() {
		var err error
		if layout, err = engineLayout(m); err != nil {
			return err
		}
		spec, err := json.Marshal(m.Spec)
		if err != nil {
			return err
		}
		meta["fedge_spec"] = string(spec)
	}
	return safetensors.WriteFile(path, layout, m.Params, meta)
}

// engineLayout names an engine model's parameter views, in Params order.
func engineLayout(m *tensor.Model) ([]tensor.ExternalTensor, error) {
	var out []tensor.ExternalTensor
	total := 0
	for i := range m.Spec.Layers {
		w, b := m.LayerParams(i)
		if len(w) > 0 {
			out = append(out, tensor.ExternalTensor{Name: fmt.Sprintf("layers.%d.weight", i), Shape: []int{len(w)}})
		}
		if len(b) > 0 {
			out = append(out, tensor.ExternalTensor{Name: fmt.Sprintf("layers.%d.bias", i), Shape: []int{len(b)}})
		}
		total += len(w) + len(b)
	}
	if total != m.NumParams() {
		return nil, fmt.Errorf("model %q: layers hold %d of %d parameters", m.Spec.Name, total, m.NumParams())
	}
	return out, nil
}
