package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/tensor"
)

// maxModelBytes bounds one model download.
const maxModelBytes = 1 << 30

// keepModels is how many versions the cache keeps.
const keepModels = 4

// modelCache holds the model versions the fleet trains on: one download
// per version for every virtual agent.
type modelCache struct {
	mu       sync.Mutex
	versions map[uint64]*cachedModel
	bytes    atomic.Int64 // downloaded
	waiting  atomic.Int64 // agents waiting for another agent's download
	// fetch downloads a version (download; tests replace it).
	fetch func(ctx context.Context, c *protocol.Session, version uint64, want protocol.Hash, base *tensor.Model) (*tensor.Model, error)
}

type cachedModel struct {
	version uint64
	done    chan struct{}
	model   *tensor.Model // read only
	hash    protocol.Hash
	err     error
}

func newModelCache() *modelCache {
	mc := &modelCache{versions: map[uint64]*cachedModel{}}
	mc.fetch = mc.download
	return mc
}

// get returns version (read only: callers clone it), downloading it over
// c if no agent has yet. want, if not zero, is its hash. When another
// agent's download of the version fails (its session ended, its stream
// timed out), the agents that waited for it try again over their own
// sessions instead of all failing with its error: one slow download
// must not take a thousand agents out of the round.
func (mc *modelCache) get(ctx context.Context, c *protocol.Session, version uint64, want protocol.Hash) (*tensor.Model, error) {
	for {
		m, shared, err := mc.getOnce(ctx, c, version, want)
		if err == nil || !shared || ctx.Err() != nil {
			return m, err
		}
	}
}

// getOnce is one attempt of get; shared reports that the error is that
// of another agent's download.
func (mc *modelCache) getOnce(ctx context.Context, c *protocol.Session, version uint64, want protocol.Hash) (*tensor.Model, bool, error) {
	mc.mu.Lock()
	e, ok := mc.versions[version]
	if !ok {
		e = &cachedModel{version: version, done: make(chan struct{})}
		mc.versions[version] = e
	}
	base := mc.baseLocked(version)
	mc.mu.Unlock()
	if ok {
		mc.waiting.Add(1)
		select {
		case <-e.done:
		case <-ctx.Done():
		}
		mc.waiting.Add(-1)
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if e.err == nil && (want.IsZero() || e.hash == want) {
			return e.model, false, nil
		}
		if e.err == nil {
			return nil, false, fmt.Errorf("sim: model %d: cached hash differs from the plan's", version)
		}
		return nil, true, e.err
	}
	e.model, e.err = mc.fetch(ctx, c, version, want, base)
	if e.err == nil {
		e.hash = e.model.Hash()
	}
	if e.err != nil {
		mc.mu.Lock()
		delete(mc.versions, version) // the next agent tries again
		mc.mu.Unlock()
	} else {
		mc.trim()
	}
	close(e.done)
	return e.model, false, e.err
}

// baseLocked returns the newest complete cached model below version.
func (mc *modelCache) baseLocked(version uint64) *tensor.Model {
	var best *cachedModel
	for v, e := range mc.versions {
		if v >= version || (best != nil && v < best.version) {
			continue
		}
		select {
		case <-e.done:
			if e.err == nil {
				best = e
			}
		default:
		}
	}
	if best == nil {
		return nil
	}
	return best.model
}

// trim drops the oldest complete versions beyond keepModels.
func (mc *modelCache) trim() {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	for len(mc.versions) > keepModels {
		var oldest uint64
		first := true
		for v := range mc.versions {
			if first || v < oldest {
				oldest, first = v, false
			}
		}
		delete(mc.versions, oldest)
	}
}

func (mc *modelCache) download(ctx context.Context, c *protocol.Session, version uint64, want protocol.Hash, base *tensor.Model) (*tensor.Model, error) {
	if c == nil {
		return nil, errors.New("sim: no session to download a model on")
	}
	buf := protocol.MemBlob{Limit: maxModelBytes}
	var p protocol.BlobProgress
	req := &protocol.ModelRequest{Version: version}
	if base != nil {
		req.HaveBase = base.Hash()
	}
	if err := c.FetchBlob(ctx, req, &buf, &p); err != nil {
		return nil, fmt.Errorf("sim: model %d: %w", version, err)
	}
	if uint64(len(buf.Bytes())) < p.Info.Size {
		return nil, fmt.Errorf("sim: model %d: short download", version)
	}
	got := buf.Bytes()[:p.Info.Size]
	mc.bytes.Add(int64(len(got)))
	var m *tensor.Model
	if encoding.IsBlob(got) {
		if base == nil {
			return nil, fmt.Errorf("sim: model %d: a delta download without a base", version)
		}
		params, err := encoding.Decode(got, base.Params)
		if err != nil {
			return nil, fmt.Errorf("sim: model %d: %w", version, err)
		}
		m = base.Clone()
		if len(params) != len(m.Params) {
			return nil, fmt.Errorf("sim: model %d: delta of %d parameters for a base of %d", version, len(params), len(m.Params))
		}
		copy(m.Params, params)
	} else {
		var err error
		if m, err = tensor.UnmarshalModel(got); err != nil {
			return nil, fmt.Errorf("sim: model %d: %w", version, err)
		}
	}
	if h := m.Hash(); !want.IsZero() && h != want {
		return nil, fmt.Errorf("sim: model %d: hash %x, want %x", version, h[:8], want[:8])
	}
	return m, nil
}
