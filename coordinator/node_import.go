package coordinator

import (
	"encoding/hex"
	"fmt"
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
// Config.MaxImportBytes, and the leader takes one import at a time, so an
// import holds at most that much memory.
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
	// The file and its decoding: the heap's slack above them stays
	// small, and they return to the system once committed.
	defer memlimit.Reserve(2 * int64(info.Size)).Release()
	var p protocol.BlobProgress
	p.Begin(*info)
	buf := protocol.MemBlob{Limit: int64(info.Size)}
	if err := b.Send(&protocol.BlobResume{}); err != nil {
		return nil, err
	}
	if err := b.RecvBlob(c.ctx, &buf, &p); err != nil {
		return nil, fmt.Errorf("models.import: %w", err)
	}
	model, err := tensor.UnmarshalModel(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("models.import: %w: %v", errBadRequest, err)
	}
	blob := buf.Bytes()
	if r.Name != "" && r.Name != model.Spec.Name {
		model.Spec.Name = r.Name
		if err := model.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("models.import: name %q: %w", r.Name, err)
		}
		if blob, err = model.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	h := model.Hash()
	rec := ModelRecord{
		Hash: hex.EncodeToString(h[:]), CreatedAt: c.now, Name: model.Spec.Name,
		External: model.Spec.IsExternal(), ImportedBy: c.who,
	}
	v, err := n.apply(c.ctx, cmdModelImport, modelImportCmd{Model: rec}, blob)
	if err != nil {
		return nil, err
	}
	var out api.Model
	n.fsm.Read(func(s *State) { out = apiModel(s.Models[v.(uint64)]) })
	n.log.Info("model imported", "version", out.Version, "name", out.Name, "external", out.External, "bytes", out.Size, "by", c.who)
	return &out, nil
}
