package coordinator

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/memlimit"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// importTimeout bounds one model import (upload, check, commit).
const importTimeout = 10 * time.Minute

// apiModelsImport receives a model file on b (a BlobInfo, then the
// chunks), checks it decodes as a model, and commits it as a new version
// without parent, job or round (cmdModelImport). The file is bounded by
// Config.MaxImportBytes, and the leader takes one import at a time; the
// file is spooled to disk and streamed, so an import holds a few buffers
// of memory (a renaming import decodes it once).
func (n *Node) apiModelsImport(c adminCall, r api.ImportRequest, b *protocol.BulkStream) (*api.Model, error) {
	select {
	case n.imports <- struct{}{}:
		defer func() { <-n.imports }()
	default:
		return nil, &protocol.Error{Code: protocol.CodeBusy, Message: "another model import is running on the leader; retry when it is done"}
	}
	if err := b.SetDeadline(time.Now().Add(importTimeout)); err != nil {
		return nil, err
	}
	m, err := b.Recv()
	if err != nil {
		return nil, fmt.Errorf("models.import: %w", err)
	}
	info, ok := m.(*protocol.BlobInfo)
	if !ok {
		return nil, fmt.Errorf("models.import: %w: got %v, want the file's BlobInfo", errBadRequest, m.Type())
	}
	if limit := n.cfg.MaxImportBytes; info.Size == 0 || info.Size > uint64(limit) {
		return nil, fmt.Errorf("models.import: %w: a model file of %d bytes; this cluster imports 1 to %d (max_import_bytes)", protocol.ErrTooLarge, info.Size, limit)
	}
	// The file goes to a spool file beside the blobs (disk, not memory)
	// a chunk at a time, is checked and hashed as it streams from there,
	// and streams again into the blob store: the import holds a few
	// buffers, not the file.
	tmp, err := os.CreateTemp(n.importDir(), spoolPrefix+"import-*.part")
	if err != nil {
		return nil, fmt.Errorf("models.import: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	var p protocol.BlobProgress
	p.Begin(*info)
	if err := b.Send(&protocol.BlobResume{}); err != nil {
		return nil, err
	}
	if err := b.RecvBlob(c.ctx, tmp, &p); err != nil {
		return nil, fmt.Errorf("models.import: %w", err)
	}
	size := int64(info.Size)
	spec, h, err := checkModelFile(io.NewSectionReader(tmp, 0, size), size)
	if err != nil {
		return nil, fmt.Errorf("models.import: %w: %v", errBadRequest, err)
	}
	write := func(w io.Writer) error {
		_, err := io.Copy(w, io.NewSectionReader(tmp, 0, size))
		return err
	}
	if r.Name != "" && r.Name != spec.Name {
		// A new name is a new spec in the file's header: this rare case
		// decodes the model and writes it again (2F in memory, once).
		defer memlimit.Reserve(2 * size).Release()
		model, err := tensor.ReadModel(bufio.NewReaderSize(io.NewSectionReader(tmp, 0, size), 1<<20), size)
		if err != nil {
			return nil, fmt.Errorf("models.import: %w: %v", errBadRequest, err)
		}
		model.Spec.Name = r.Name
		if err := model.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("models.import: name %q: %w", r.Name, err)
		}
		spec = model.Spec
		write = func(w io.Writer) error {
			_, err := model.WriteTo(w)
			return err
		}
	}
	rec := ModelRecord{
		Hash: hex.EncodeToString(h[:]), CreatedAt: c.now, Name: spec.Name,
		External: spec.IsExternal(), ImportedBy: c.who,
	}
	v, err := applyModel(c.ctx, n, cmdModelImport, modelImportCmd{Model: rec}, write)
	if err != nil {
		return nil, err
	}
	var out api.Model
	n.fsm.Read(func(s *State) { out = apiModel(s.Models[v.(uint64)]) })
	n.log.Info("model imported", "version", out.Version, "name", out.Name, "external", out.External, "bytes", out.Size, "by", c.who)
	return &out, nil
}

// importDir is where an import is spooled: beside the blobs when the
// store is a directory (the collector removes a spool a crash left),
// else the system's temporary directory.
func (n *Node) importDir() string {
	if fb, ok := n.fsm.blobs.(*FileBlobs); ok {
		return fb.dir
	}
	return ""
}

// checkModelFile checks that the size bytes of r are exactly one model
// file (tensor.ReadModelParams: its format, limits and checksum) and
// returns its spec and its parameters' hash (tensor.HashParams), reading
// it as it streams.
func checkModelFile(r io.Reader, size int64) (tensor.Spec, [32]byte, error) {
	var sum [32]byte
	cr := &countingReader{r: bufio.NewReaderSize(r, 1<<20)}
	h := sha256.New()
	var le []byte
	spec, err := tensor.ReadModelParams(cr, size, func(_ int, p []float32) error {
		le = le[:0]
		for _, v := range p {
			le = binary.LittleEndian.AppendUint32(le, math.Float32bits(v))
		}
		h.Write(le)
		return nil
	})
	if err != nil {
		return spec, sum, err
	}
	if cr.n != size {
		return spec, sum, fmt.Errorf("%d bytes after the model file's %d: %w", size-cr.n, cr.n, tensor.ErrFormat)
	}
	h.Sum(sum[:0])
	return spec, sum, nil
}

// countingReader counts what it reads.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}
