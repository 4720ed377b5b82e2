package agent

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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

// maxDeltaBytes bounds a sparse delta download, which is decoded in
// memory (a dense delta or push is applied in chunks as it is read from
// its file, a full model file streams from disk).
const maxDeltaBytes = tensor.DefaultMaxModelBytes

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
// verified prefix. The bytes go to a file in DataDir/models as they
// arrive, each chunk checked against the manifest's hash before it is
// written, so a model file never sits whole in memory.
type download struct {
	version uint64
	base    *tensor.Model // the held model a delta is against, or nil
	p       protocol.BlobProgress
	f       *os.File
}

// fetchedModel is a completed download kept for a concurrent second use
// (its file; the model is read again from it).
type fetchedModel struct {
	version uint64
	data    modelData
	hash    [32]byte
}

// deltaBase returns the newest model the agent holds below version on
// model line (empty: the default line, or unknown) — the line's served
// model or the last training base — for the coordinator to send a
// lossless delta against; nil if it holds none. On a named line a model
// of another line (another architecture) is no base.
func (a *Agent) deltaBase(line string, version uint64) *tensor.Model {
	type held struct {
		version uint64
		data    modelData
	}
	var cands []held
	if v, d, err := a.st.latestBase(version); err == nil && v != 0 {
		cands = append(cands, held{v, d})
	}
	var rec *modelRecord
	var err error
	if a.isDefaultLine(line) {
		rec, err = a.st.model(keyCurrent)
	} else {
		rec, err = a.st.lineModel(line, keyCurrent)
	}
	if err == nil && rec != nil && rec.version < version {
		cands = append(cands, held{rec.version, rec.modelData})
	}
	slices.SortFunc(cands, func(x, y held) int { return cmp.Compare(y.version, x.version) })
	for _, c := range cands {
		m, err := a.st.files.load(c.data) // newest first; decoded one at a time
		if err != nil || (line != "" && m.Spec.Name != line) {
			continue
		}
		if m.Spec.Quantize != "" {
			// A quantized version shares its parameters, so its hash, with
			// the float version it was made from: a delta against it would
			// give the download its spec, serving directive included.
			return nil
		}
		return m
	}
	return nil
}

// decodeDownload turns a downloaded blob into the model file bytes and
// the model: the blob is the model file itself, or a lossless delta
// (protocol/encoding) against base, which shares its spec.
func decodeDownload(blob []byte, base *tensor.Model) ([]byte, *tensor.Model, error) {
	if !encoding.IsBlob(blob) {
		m, err := tensor.UnmarshalModel(blob)
		return blob, m, err
	}
	m, err := applyDelta(blob, base)
	if err != nil {
		return nil, nil, err
	}
	file, err := m.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	return file, m, nil
}

// applyDelta decodes a delta download (protocol/encoding) against base.
func applyDelta(blob []byte, base *tensor.Model) (*tensor.Model, error) {
	if base == nil {
		return nil, errors.New("a delta download without a base")
	}
	params, err := encoding.Decode(blob, base.Params)
	if err != nil {
		return nil, err
	}
	if len(params) != len(base.Params) {
		return nil, fmt.Errorf("delta of %d parameters for a base of %d", len(params), len(base.Params))
	}
	m := base.Clone()
	copy(m.Params, params)
	return m, nil
}

// applyDownload applies the delta or quantized push (protocol/encoding)
// of size bytes that f holds to base, in place and a chunk at a time as
// it reads f: the agent holds the base and O(chunk) more, whatever the
// model's size. base becomes the result, or on error is left part
// overwritten and must be dropped. A sparse (top-k) blob, which no node
// sends, is decoded whole, within maxDeltaBytes.
func applyDownload(f io.ReaderAt, size int64, base *tensor.Model) (*tensor.Model, error) {
	if base == nil {
		return nil, errors.New("agent.applyDownload: a delta download without a base")
	}
	var hb [encoding.DeltaHeaderSize]byte
	n, _ := f.ReadAt(hb[:min(size, int64(len(hb)))], 0)
	h, err := encoding.ParseHeader(hb[:n])
	if err != nil {
		return nil, fmt.Errorf("agent.applyDownload: %w", err)
	}
	if h.Sparse() {
		if size > maxDeltaBytes {
			return nil, fmt.Errorf("agent.applyDownload: a %d-byte sparse delta exceeds %d bytes", size, maxDeltaBytes)
		}
		blob := make([]byte, size)
		if _, err := f.ReadAt(blob, 0); err != nil {
			return nil, fmt.Errorf("agent.applyDownload: %w", err)
		}
		return applyDelta(blob, base)
	}
	dec := encoding.Decoder{MaxElements: len(base.Params)}
	if err := dec.Apply(base.Params, f, size); err != nil {
		return nil, fmt.Errorf("agent.applyDownload: %w", err)
	}
	return base, nil
}

// fetchModel downloads model version of model line (empty: the default
// line, or unknown) and checks it against want (the raw bytes of
// tensor.Model.Hash; zero skips the check). It returns the stored model
// file and the decoded model.
func (a *Agent) fetchModel(ctx context.Context, c conn, line string, version uint64, want protocol.Hash) (modelData, *tensor.Model, error) {
	a.dlMu.Lock()
	defer a.dlMu.Unlock()
	if f := a.fetched; f != nil && f.version == version && (want.IsZero() || f.hash == want) {
		if m, err := a.st.files.load(f.data); err == nil {
			return f.data, m, nil
		}
	}
	d := a.dl
	if d == nil || d.version != version {
		if d != nil {
			d.f.Close()
			os.Remove(d.f.Name())
		}
		f, err := a.st.files.partial(version)
		if err != nil {
			a.noteSave(version, err) // a disk that takes no file
			return modelData{}, nil, err
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return modelData{}, nil, fmt.Errorf("agent.fetchModel %d: %w", version, err)
		}
		d = &download{version: version, base: a.deltaBase(line, version), f: f}
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
	err := c.FetchBlob(ctx, req(), d.f, &d.p)
	if errors.Is(err, protocol.ErrBlobChanged) {
		if err = d.f.Truncate(0); err == nil {
			err = c.FetchBlob(ctx, req(), d.f, &d.p)
		}
	}
	if err != nil {
		return modelData{}, nil, fmt.Errorf("agent.fetchModel %d: %w", version, err)
	}
	a.dl = nil
	data, m, err := a.finishDownload(d)
	d.f.Close()
	os.Remove(d.f.Name()) // gone already if adopted as the model file
	if errors.Is(err, errSaveFile) {
		a.noteSave(version, err)
	}
	if err != nil {
		return modelData{}, nil, fmt.Errorf("agent.fetchModel %d: %w", version, err)
	}
	size := d.p.Info.Size
	a.m.modelBytes.Add(size)
	if h := m.Hash(); !want.IsZero() && h != want {
		return modelData{}, nil, fmt.Errorf("agent.fetchModel %d: %w: got %x, want %x", version, ErrModelHash, h[:8], want[:8])
	}
	a.fetched = &fetchedModel{version: version, data: data, hash: m.Hash()}
	a.log.Debug("model downloaded", "version", version, "bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return data, m, nil
}

// finishDownload decodes a complete download: a model file is read by
// streaming and kept as the model file; a delta or push is applied to
// the base in place, a chunk at a time from the download file, and the
// model written to a new model file once its hash checked.
func (a *Agent) finishDownload(d *download) (modelData, *tensor.Model, error) {
	size := int64(d.p.Info.Size)
	head := make([]byte, min(size, 4))
	if _, err := d.f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return modelData{}, nil, err
	}
	if encoding.IsBlob(head) {
		m, err := applyDownload(d.f, size, d.base)
		d.base = nil // applied in place: no longer the base
		if err != nil {
			return modelData{}, nil, err
		}
		a.m.modelDeltas.Add(1)
		data, err := a.st.files.write(m)
		if err != nil {
			err = fmt.Errorf("%w: %v", errSaveFile, err)
		}
		return data, m, err
	}
	m, err := tensor.ReadModel(bufio.NewReaderSize(io.NewSectionReader(d.f, 0, size), 1<<20), size)
	if err != nil {
		return modelData{}, nil, err
	}
	// The manifest's whole-blob hash, checked as the chunks arrived, is
	// the SHA-256 of the file: its name.
	data, err := a.st.files.adopt(d.f, d.p.Info.Hash)
	if err != nil {
		err = fmt.Errorf("%w: %v", errSaveFile, err)
	}
	return data, m, err
}

// errSaveFile marks a download that arrived but could not be kept.
var errSaveFile = errors.New("agent: storing the model file")

// storedModel looks for version among the served models and the cached
// training bases; it returns a nil model if none holds it with the
// wanted hash.
func (a *Agent) storedModel(version uint64, want protocol.Hash) (modelData, *tensor.Model, error) {
	var held []modelData
	for _, which := range [][]byte{keyCurrent, keyPrevious} {
		rec, err := a.st.model(which)
		if err != nil {
			return modelData{}, nil, err
		}
		if rec != nil && rec.version == version {
			held = append(held, rec.modelData)
		}
	}
	b, ok, err := a.st.base(version)
	if err != nil {
		return modelData{}, nil, err
	}
	if ok {
		held = append(held, b)
	}
	for _, d := range held {
		m, err := a.st.files.load(d)
		if err != nil {
			a.log.Warn("stored model does not decode; fetching it again", "version", version, "err", err)
			continue
		}
		if want.IsZero() || m.Hash() == want {
			return d, m, nil
		}
	}
	return modelData{}, nil, nil
}

// modelFor returns a fresh copy of model version: from the store if held,
// else downloaded and cached as a training base.
func (a *Agent) modelFor(ctx context.Context, c conn, version uint64, want protocol.Hash) (*tensor.Model, error) {
	_, m, err := a.modelDataFor(ctx, c, version, want)
	return m, err
}

// modelDataFor is modelFor that also returns where the model's file is
// stored, to read it again without holding it.
func (a *Agent) modelDataFor(ctx context.Context, c conn, version uint64, want protocol.Hash) (modelData, *tensor.Model, error) {
	data, m, err := a.storedModel(version, want)
	if err != nil || m != nil {
		return data, m, err
	}
	data, m, err = a.fetchModel(ctx, c, "", version, want)
	if err != nil {
		return modelData{}, nil, err
	}
	err = a.st.putBase(version, data)
	a.noteSave(version, err)
	if err != nil {
		a.log.Warn("caching the training base model", "version", version, "err", err)
	}
	return data, m, nil
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
	data, m, err := a.storedModel(ann.Version, ann.Hash)
	if err == nil && m == nil {
		data, m, err = a.storedLineModel(ann.Name, ann.Version, ann.Hash)
	}
	if err != nil {
		return err
	}
	if m == nil {
		if data, m, err = a.fetchModel(ctx, c, ann.Name, ann.Version, ann.Hash); err != nil {
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
	rec := &modelRecord{version: ann.Version, hash: m.Hash(), rolledOut: a.now(), modelData: data}
	return a.swapLine(ann.Name, rec, m)
}
