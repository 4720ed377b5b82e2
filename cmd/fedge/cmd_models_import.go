package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/onnx"
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
// magic), an ONNX graph (.onnx: the engine's operators only; tensor/onnx),
// or a safetensors file. A safetensors file that carries an engine spec
// (as models export writes one) becomes that engine model with its
// PyTorch-named weights; any other becomes an external model named name
// (default: the file's base name without extension).
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
	if strings.EqualFold(filepath.Ext(path), ".onnx") {
		m, err := onnx.Import(br, maxModelFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if name != "" {
			m.Spec.Name = name
		}
		return m, nil
	}
	hdr, err := safetensors.ReadHeader(br, maxModelFile)
	if err != nil {
		return nil, fmt.Errorf("%s: neither a fedge model file, an ONNX file (.onnx) nor a safetensors file: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	br.Reset(f)
	if _, engine := hdr.Metadata[safetensors.MetaSpec]; engine {
		m, err := safetensors.ReadEngineModel(br, maxModelFile, tensor.Spec{})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if name != "" {
			m.Spec.Name = name
		}
		return m, nil
	}
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	m, err := safetensors.ReadModel(br, maxModelFile, name)
	if err != nil {
		return nil, fmt.Errorf("%s: not a usable safetensors file: %w", path, err)
	}
	return m, nil
}

// Export formats of models export.
const (
	formatFedge       = "fedge"
	formatSafetensors = "safetensors"
	formatONNX        = "onnx"
)

// writeSafetensors writes m as a safetensors file at path (atomically),
// with the version's identity in the metadata. An external model keeps
// its tensors; an engine model's weights carry the names and layouts a
// PyTorch state_dict has for the same architecture (tensor/statedict,
// docs/FORMATS.md), with its spec under safetensors.MetaSpec so that
// models import reads it back as the same engine model.
func writeSafetensors(path string, m *tensor.Model, rec api.Model) error {
	meta := map[string]string{"fedge_version": fmt.Sprint(rec.Version), "fedge_hash": rec.Hash, "fedge_model": m.Spec.Name}
	if m.Spec.IsExternal() {
		return safetensors.WriteFile(path, m.Spec.External, m.Params, meta)
	}
	return writeAtomic(path, func(w io.Writer) error {
		_, err := safetensors.WriteEngineModel(w, m, meta)
		return err
	})
}

// writeONNX writes an engine model as a standard ONNX graph (tensor/onnx:
// opset 13, input "input", output "probabilities").
func writeONNX(path string, m *tensor.Model) error {
	b, err := onnx.Export(m)
	if err != nil {
		return err
	}
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// writeAtomic writes path through a temporary file in its folder and a
// rename, so a reader never sees half a file.
func writeAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
