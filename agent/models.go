package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/tensor"
)

// ErrModelHash reports a downloaded or cached model whose parameters do
// not hash to the version's announced hash.
var ErrModelHash = errors.New("agent: model hash mismatch")

// syncRetry is how long the agent waits before retrying a rollout that
// failed (a download error, a hash mismatch).
const syncRetry = 30 * time.Second

// maxModelBytes bounds a model download held in memory.
const maxModelBytes = tensor.DefaultMaxModelBytes

// conn is what the agent needs of a coordinator session.
// *protocol.Session implements it; tests drive rounds through an
// in-memory twin that records every message.
type conn interface {
	// Request sends m and waits for the reply (a *protocol.Error or
	// *protocol.Redirect comes back as the error).
	Request(ctx context.Context, m protocol.Message) (protocol.Message, error)
	// FetchBlob downloads a blob into dst, resuming at p.Offset.
	FetchBlob(ctx context.Context, req protocol.Message, dst io.WriterAt, p *protocol.BlobProgress) error
	// PushBlob uploads a blob announced by header, from where the
	// receiver's progress stands.
	PushBlob(ctx context.Context, header protocol.Message, src io.ReaderAt, info *protocol.BlobInfo) error
}

var _ conn = (*protocol.Session)(nil)

// download is a model transfer that survives a lost session: the next
// attempt for the same version (against the same base) resumes at the
// verified prefix.
type download struct {
	version uint64
	base    *tensor.Model // the held model a delta is against, or nil
	p       protocol.BlobProgress
	buf     protocol.MemBlob
}

// fetchedModel is a completed download kept for a concurrent second use.
type fetchedModel struct {
	version uint64
	blob    []byte
	model   *tensor.Model
}

// deltaBase returns the newest model the agent holds below version — the
// last training base or the served model — for the coordinator to send a
// lossless delta against; nil if it holds none.
func (a *Agent) deltaBase(version uint64) *tensor.Model {
	bestV, best, err := a.st.latestBase(version)
	if err != nil {
		bestV, best = 0, nil
	}
	if rec, err := a.st.model(keyCurrent); err == nil && rec != nil && rec.version < version && rec.version > bestV {
		best = rec.blob
	}
	if best == nil {
		return nil
	}
	m, err := tensor.UnmarshalModel(best) // only the chosen one is decoded
	if err != nil || m.Spec.Quantize != "" {
		// A quantized version shares its parameters, so its hash, with
		// the float version it was made from: a delta against it would
		// give the download its spec, serving directive included.
		return nil
	}
	return m
}

// decodeDownload turns a downloaded blob into the model file bytes and
// the model: the blob is the model file itself, or a lossless delta
// (protocol/encoding) against base, which shares its spec.
func decodeDownload(blob []byte, base *tensor.Model) ([]byte, *tensor.Model, error) {
	if !encoding.IsBlob(blob) {
		m, err := tensor.UnmarshalModel(blob)
		return blob, m, err
	}
	if base == nil {
		return nil, nil, errors.New("a delta download without a base")
	}
	params, err := encoding.Decode(blob, base.Params)
	if err != nil {
		return nil, nil, err
	}
	m := base.Clone()
	if len(params) != len(m.Params) {
		return nil, nil, fmt.Errorf("delta of %d parameters for a base of %d", len(params), len(m.Params))
	}
	copy(m.Params, params)
	file, err := m.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	return file, m, nil
}

// fetchModel downloads model version and checks it against want (the raw
// bytes of tensor.Model.Hash; zero skips the check). It returns the model
// file bytes and the decoded model.
func (a *Agent) fetchModel(ctx context.Context, c conn, version uint64, want protocol.Hash) ([]byte, *tensor.Model, error) {
	a.dlMu.Lock()
	defer a.dlMu.Unlock()
	if f := a.fetched; f != nil && f.version == version && (want.IsZero() || f.model.Hash() == want) {
		return f.blob, f.model.Clone(), nil
	}
	d := a.dl
	if d == nil || d.version != version {
		d = &download{version: version, base: a.deltaBase(version), buf: protocol.MemBlob{Limit: maxModelBytes}}
		a.dl = d
	} else if d.p.Offset > 0 {
		a.log.Debug("resuming model download", "version", version, "offset", d.p.Offset)
	}
	req := func() *protocol.ModelRequest {
		r := &protocol.ModelRequest{Version: version, Offset: d.p.Offset}
		if d.base != nil {
			r.HaveBase = d.base.Hash()
		}
		return r
	}
	start := time.Now()
	err := c.FetchBlob(ctx, req(), &d.buf, &d.p)
	if errors.Is(err, protocol.ErrBlobChanged) {
		d.buf.Reset()
		err = c.FetchBlob(ctx, req(), &d.buf, &d.p)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("agent.fetchModel %d: %w", version, err)
	}
	a.dl = nil
	if uint64(len(d.buf.Bytes())) < d.p.Info.Size {
		return nil, nil, fmt.Errorf("agent.fetchModel %d: short download", version)
	}
	got := d.buf.Bytes()[:d.p.Info.Size]
	blob, m, err := decodeDownload(got, d.base)
	if err != nil {
		return nil, nil, fmt.Errorf("agent.fetchModel %d: %w", version, err)
	}
	a.m.modelBytes.Add(uint64(len(got)))
	if encoding.IsBlob(got) {
		a.m.modelDeltas.Add(1)
	}
	if h := m.Hash(); !want.IsZero() && h != want {
		return nil, nil, fmt.Errorf("agent.fetchModel %d: %w: got %x, want %x", version, ErrModelHash, h[:8], want[:8])
	}
	a.fetched = &fetchedModel{version: version, blob: blob, model: m.Clone()}
	a.log.Debug("model downloaded", "version", version, "bytes", len(got), "delta", len(got) != len(blob), "took", time.Since(start).Round(time.Millisecond))
	return blob, m, nil
}

// storedModel looks for version among the served models and the cached
// training bases; it returns nil if none holds it with the wanted hash.
func (a *Agent) storedModel(version uint64, want protocol.Hash) ([]byte, *tensor.Model, error) {
	var blobs [][]byte
	for _, which := range [][]byte{keyCurrent, keyPrevious} {
		rec, err := a.st.model(which)
		if err != nil {
			return nil, nil, err
		}
		if rec != nil && rec.version == version {
			blobs = append(blobs, rec.blob)
		}
	}
	b, err := a.st.base(version)
	if err != nil {
		return nil, nil, err
	}
	if b != nil {
		blobs = append(blobs, b)
	}
	for _, blob := range blobs {
		m, err := tensor.UnmarshalModel(blob)
		if err != nil {
			a.log.Warn("stored model does not decode; fetching it again", "version", version, "err", err)
			continue
		}
		if want.IsZero() || m.Hash() == want {
			return blob, m, nil
		}
	}
	return nil, nil, nil
}

// modelFor returns a fresh copy of model version: from the store if held,
// else downloaded and cached as a training base.
func (a *Agent) modelFor(ctx context.Context, c conn, version uint64, want protocol.Hash) (*tensor.Model, error) {
	_, m, err := a.storedModel(version, want)
	if err != nil || m != nil {
		return m, err
	}
	blob, m, err := a.fetchModel(ctx, c, version, want)
	if err != nil {
		return nil, err
	}
	err = a.st.putBase(version, blob)
	a.noteSave(version, err)
	if err != nil {
		a.log.Warn("caching the training base model", "version", version, "err", err)
	}
	return m, nil
}

// startSync starts serving the announced model in the background, unless
// a sync is already running.
func (a *Agent) startSync(ctx context.Context, c conn, ann *protocol.ModelAnnounce) {
	if s := a.lineServed(ann.Name); s != nil && s.version == ann.Version {
		return
	}
	if ann.Name != "" && !a.cfg.Jobs.acceptsModel(ann.Name) {
		a.declineLine(ann.Name, fmt.Sprintf("not accepted by jobs.models %q", a.cfg.Jobs.Models))
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	recent := a.syncFailed.version == ann.Version && a.now().Sub(a.syncFailed.at) < syncRetry
	if recent || a.stopping || !a.syncing.CompareAndSwap(false, true) {
		return
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		defer a.syncing.Store(false)
		if err := a.syncModel(ctx, c, ann); err != nil && ctx.Err() == nil {
			a.log.Warn("model rollout failed; will retry", "version", ann.Version, "in", syncRetry, "err", err)
			a.mu.Lock()
			a.syncFailed.version, a.syncFailed.at = ann.Version, a.now()
			a.mu.Unlock()
		}
	}()
}

// syncModel gets the announced version (from the store for a rollback,
// else by download) and swaps it in.
func (a *Agent) syncModel(ctx context.Context, c conn, ann *protocol.ModelAnnounce) error {
	blob, m, err := a.storedModel(ann.Version, ann.Hash)
	if err == nil && m == nil {
		blob, m, err = a.storedLineModel(ann.Name, ann.Version, ann.Hash)
	}
	if err != nil {
		return err
	}
	if m == nil {
		if blob, m, err = a.fetchModel(ctx, c, ann.Version, ann.Hash); err != nil {
			return err
		}
	}
	if m.Spec.IsExternal() && !a.isDefaultLine(ann.Name) {
		// The reload hook serves one external model: the default line's.
		a.declineLine(ann.Name, "an external model is served by the reload hook on the default line only")
		return nil
	}
	if m.Spec.IsExternal() {
		if err := a.publishExternal(ctx, ann.Version, m); err != nil {
			return err
		}
	}
	rec := &modelRecord{version: ann.Version, hash: m.Hash(), rolledOut: a.now(), blob: blob}
	return a.swapLine(ann.Name, rec, m)
}
