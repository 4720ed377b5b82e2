package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor"
)

func modelsCommands() []command {
	return []command{
		{"list", "list committed model versions", runModelsList},
		{"show", "show one model version", runModelsShow},
		{"export", "download a model version's file", runModelsExport},
		{"pin", "keep a model version from being pruned", runModelsPin},
		{"import", "import initial weights (safetensors or a fedge model file) as a new version", runModelsImport},
		{"explain", "show (or -run) a version's federated global explanation", runModelsExplain},
	}
}

// parseVersion reads a model version written as "3" or "v3".
func parseVersion(s string) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "v"), 10, 64)
	if err != nil || v == 0 {
		return 0, usagef("model version %q: want a positive number such as 3 or v3", s)
	}
	return v, nil
}

// parseVersionArg parses a command line whose one positional argument is
// a model version; ok false means exit with code.
func parseVersionArg(c *cli, args []string) (v uint64, code int, ok bool) {
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return 0, code, false
	}
	v, err := parseVersion(pos[0])
	if err != nil {
		return 0, c.usageFail(err), false
	}
	return v, 0, true
}

var modelsListSpec = cmdSpec{
	path: "models list",
	help: `List the committed model versions the cluster keeps: parent version, the job
and round that made each, size, whether it is pinned, and its aggregate
training metrics. The stable version (what agents outside a rollout serve)
is marked with *.`,
	example: "fedge models list",
}

func runModelsList(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, modelsListSpec, true)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	ctx := context.Background()
	var models []api.Model
	if err := c.call(ctx, func(ctx context.Context) (err error) { models, err = cl.Models().List(ctx, c.query()); return err }); err != nil {
		return c.fail(err)
	}
	if c.admin.json {
		if err := writeJSON(stdout, models); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	if len(models) == 0 {
		fmt.Fprintln(stdout, "No models committed yet.")
		return exitOK
	}
	var st api.ClusterStatus
	if err := c.call(ctx, func(ctx context.Context) (err error) { st, err = cl.Cluster().Status(ctx, c.query()); return err }); err != nil {
		return c.fail(err)
	}
	t := newTable(stdout, "VERSION", "STABLE", "PARENT", "JOB", "ROUND", "SIZE", "PINNED", "CREATED", "METRICS")
	for _, m := range models {
		stable := ""
		if m.Version == st.Stable {
			stable = "*"
		}
		t.row(version(m.Version), stable, version(m.Parent), modelOrigin(m), dash(roundID(m.Round)), bytesString(int64(m.Size)),
			yes(m.Pinned), when(m.CreatedAt), metricString(m.Metrics))
	}
	if err := t.flush(); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// modelOrigin is the JOB column: the job, or for a version a quantized
// rollout made, "int8 of vN".
func modelOrigin(m api.Model) string {
	if m.Quantize != "" && m.Job == "" {
		return m.Quantize + " of " + version(m.QuantizedFrom)
	}
	return dash(m.Job)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func roundID(id uint64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatUint(id, 10)
}

var modelsShowSpec = cmdSpec{
	path:    "models show",
	args:    "VERSION",
	help:    `Show one model version: its parent, the job and round that committed it, the SHA-256 of its parameters, its size and its aggregate metrics.`,
	example: "fedge models show v3",
}

func runModelsShow(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, modelsShowSpec, true)
	v, code, ok := parseVersionArg(c, args)
	if !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.Model, error) {
		return cl.Models().Show(ctx, v, q)
	}, func(w io.Writer, m api.Model) error {
		name := dash(m.Name)
		if m.External {
			name += " (external: trained by the agents' external trainers)"
		}
		if m.ImportedBy != "" {
			name += ", imported by " + m.ImportedBy
		}
		if m.Quantize != "" {
			name += fmt.Sprintf(", served %s (quantized from %s by the agents)", m.Quantize, version(m.QuantizedFrom))
		}
		return kv(w,
			"Version", version(m.Version),
			"Model", name,
			"Parent", version(m.Parent),
			"Job", dash(m.Job),
			"Round", dash(roundID(m.Round)),
			"Hash", m.Hash,
			"Size", bytesString(int64(m.Size)),
			"Strategy state", bytesString(int64(m.StateSize)),
			"Push from parent", pushString(m),
			"Pinned", yes(m.Pinned),
			"Created", when(m.CreatedAt),
			"Metrics", metricString(m.Metrics),
		)
	})
}

var modelsExportSpec = cmdSpec{
	path: "models export",
	args: "VERSION",
	help: `Download a model version into -o: with -format fedge (the default) its file
in fedge's versioned, checksummed tensor model format; with -format
safetensors its weights as a safetensors file (an external model keeps its
tensor names and shapes; an engine model's weights carry the names and
layouts of the PyTorch state_dict of the same architecture, "1.weight"
[out, in] and so on, as docs/FORMATS.md lists, so load_state_dict takes
them, with the spec in the metadata); with -format onnx an engine model as
a standard ONNX graph (opset 13, input "input", output "probabilities"
after a Softmax) that any ONNX runtime executes. The parameters are checked
against the hash the cluster committed before the file is put in place.`,
	example: "fedge models export v3 -o model-v3.fedgemdl\nfedge models export -format safetensors v3 -o model-v3.safetensors\nfedge models export -format onnx v3 -o model-v3.onnx",
}

func runModelsExport(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, modelsExportSpec, true)
	out := c.fs.String("o", "", "file to write")
	format := c.fs.String("format", formatFedge, "file format: fedge, safetensors or onnx")
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	if *out == "" {
		return c.usageFail(usagef("-o FILE is required"))
	}
	if *format != formatFedge && *format != formatSafetensors && *format != formatONNX {
		return c.usageFail(usagef("-format %q: want fedge, safetensors or onnx", *format))
	}
	v, err := parseVersion(pos[0])
	if err != nil {
		return c.usageFail(err)
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	ctx := context.Background()
	var rec api.Model
	if err := c.call(ctx, func(ctx context.Context) (err error) { rec, err = cl.Models().Show(ctx, v, c.query()); return err }); err != nil {
		return c.fail(err)
	}
	n, err := exportModel(ctx, c, cl, rec, *out, *format)
	if err != nil {
		return c.fail(err)
	}
	res := exportResult{Version: v, File: *out, Format: *format, Bytes: n, Hash: rec.Hash}
	return render(c, res, func(w io.Writer, r exportResult) error {
		_, err := fmt.Fprintf(w, "Exported %s to %s (%s, parameters hash %s verified).\n", version(r.Version), r.File, bytesString(r.Bytes), r.Hash)
		return err
	})
}

// exportResult is what models export reports.
type exportResult struct {
	Version uint64 `json:"version"`
	File    string `json:"file"`
	Format  string `json:"format"`
	Bytes   int64  `json:"bytes"`
	Hash    string `json:"hash"`
}

// exportModel downloads rec's file next to path, checks its parameters
// against rec.Hash and puts it in place in format (formatFedge: the file
// itself, renamed; formatSafetensors: its weights). It returns the size
// of the file written.
func exportModel(ctx context.Context, c *cli, cl *api.Client, rec api.Model, path, format string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	dctx, cancel := context.WithTimeout(ctx, c.admin.timeout)
	err = cl.ExportModel(dctx, rec.Version, tmp)
	cancel()
	if err != nil {
		return 0, &callError{err}
	}
	size, err := tmp.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	m, err := tensor.ReadModel(tmp, size)
	if err != nil {
		return 0, fmt.Errorf("downloaded model %s: %w", version(rec.Version), err)
	}
	if h := m.Hash(); hex.EncodeToString(h[:]) != rec.Hash {
		return 0, fmt.Errorf("downloaded model %s: parameters hash %x, cluster committed %s", version(rec.Version), h, rec.Hash)
	}
	if format == formatSafetensors || format == formatONNX {
		write := func() error { return writeSafetensors(path, m, rec) }
		if format == formatONNX {
			write = func() error { return writeONNX(path, m) }
		}
		if err := write(); err != nil {
			return 0, err
		}
		st, err := os.Stat(path)
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	if err := tmp.Sync(); err != nil {
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, err
	}
	return size, nil
}

var modelsPinSpec = cmdSpec{
	path: "models pin",
	args: "VERSION",
	help: `Pin a model version so retention never prunes it (the cluster keeps the
last versions and the pinned ones); -unpin releases it.`,
	example: "fedge models pin v3\nfedge models pin -unpin v3",
}

func runModelsPin(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, modelsPinSpec, true)
	unpin := c.fs.Bool("unpin", false, "release the pin instead")
	v, code, ok := parseVersionArg(c, args)
	if !ok {
		return code
	}
	req := api.VersionRequest{Version: v, Pinned: !*unpin}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (struct{}, error) {
		return noAnswer(cl.Models().Pin(ctx, req.Version, req.Pinned))
	}, func(w io.Writer, _ struct{}) error {
		what := "Pinned"
		if *unpin {
			what = "Unpinned"
		}
		_, err := fmt.Fprintf(w, "%s %s.\n", what, version(v))
		return err
	})
}

// pushString describes how agents that hold the parent receive a version:
// the stored quantized delta, or a lossless delta made on demand.
func pushString(m api.Model) string {
	if m.PushSize > 0 {
		return fmt.Sprintf("quantized delta, %s (%.0f%% of the model)", bytesString(int64(m.PushSize)), 100*float64(m.PushSize)/float64(max(m.Size, 1)))
	}
	return "lossless delta, made per download"
}
