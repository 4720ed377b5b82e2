package coordinator

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/tensor"
)

// pushOptions returns the encoding of a job's quantized pushes, and false
// for lossless pushes (which the node encodes per agent base on demand).
func pushOptions(push string) (encoding.Options, bool) {
	switch push {
	case "int8":
		return encoding.Options{Codec: encoding.Int8, Compressor: encoding.Flate}, true
	case "float16":
		return encoding.Options{Codec: encoding.Float16, Compressor: encoding.Flate}, true
	}
	return encoding.Options{}, false
}

// quantizePush encodes next as a delta from parent with opts and makes
// next exactly what the agents will decode; it returns the push blob and
// the residual, what the quantization dropped (target − committed).
//
// residual, if not nil, is the previous push's residual: it is added to
// the target first (error feedback), so an update too small for one
// round's quantization step, next to a large one in its block, is
// delayed rather than lost.
func quantizePush(next, parent, residual []float32, opts encoding.Options) (push []byte, dropped []float32, err error) {
	if residual != nil && len(residual) == len(next) {
		for i, r := range residual {
			next[i] += r
		}
	}
	target := append([]float32(nil), next...)
	push, err = encoding.Encode(next, parent, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator: quantized push: %w", err)
	}
	got, err := encoding.Decode(push, parent)
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator: quantized push: %w", err)
	}
	copy(next, got)
	for i := range target {
		target[i] -= next[i]
	}
	return push, target, nil
}

// deltaCacheSize is how many encoded deltas a node keeps: after a round
// every agent asks for the same (new version, previous version) pair.
const deltaCacheSize = 4

// downloads builds what a node sends for a model download. An agent that
// names a model it holds (ModelRequest.HaveBase) gets a lossless delta
// against it (protocol/encoding's Float32XOR: the XOR of the float32 bit
// patterns, in byte planes, deflated), so it ends with exactly the
// committed parameters; otherwise, or when the delta would not be
// smaller, it gets the model file.
type downloads struct {
	mu    sync.Mutex
	cache []deltaEntry // most recent last
	// manifests are the BlobInfos of recent downloads by blob ID (the ID
	// changes with the content), so a round's agents do not each make
	// the node hash the model again.
	manifests []protocol.BlobInfo // most recent last
}

// maxDeltaModelBytes is the largest model file a node encodes a lossless
// delta for: the encoding decodes both versions in memory, so larger
// models are sent whole (or as the job's quantized push), straight from
// the blob store.
const maxDeltaModelBytes = 256 << 20

// manifest returns the manifest of size bytes of src named id, from the
// cache or by hashing src once.
func (d *downloads) manifest(id string, src io.ReaderAt, size int64) (protocol.BlobInfo, error) {
	d.mu.Lock()
	for _, m := range d.manifests {
		if m.ID == id && m.Size == uint64(size) {
			d.mu.Unlock()
			return m, nil
		}
	}
	d.mu.Unlock()
	info, err := protocol.NewBlobInfo(id, src, size, 0)
	if err != nil {
		return info, err
	}
	d.mu.Lock()
	d.manifests = append(d.manifests, info)
	if len(d.manifests) > 2*deltaCacheSize {
		d.manifests = d.manifests[1:]
	}
	d.mu.Unlock()
	return info, nil
}

type deltaEntry struct {
	version uint64
	base    protocol.Hash
	blob    []byte // nil: a delta was not worth it; send the model file
}

// blob returns the bytes to serve for version (whose model file is file)
// to an agent that holds the model base (model file baseFile, nil if the
// node does not hold it), and a name for the blob that changes with its
// content (resumption checks it).
func (d *downloads) blob(version uint64, hash string, file []byte, base protocol.Hash, baseFile []byte) ([]byte, string) {
	full, fullID := file, "model/"+hash
	if baseFile == nil {
		return full, fullID
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.cache {
		if e.version == version && e.base == base {
			if e.blob == nil {
				return full, fullID
			}
			return e.blob, deltaID(hash, base)
		}
	}
	// Encoding under the lock: the agents of a round ask at once, and one
	// encoding serves them all.
	delta := encodeDelta(file, baseFile)
	if len(delta) >= len(file) {
		delta = nil
	}
	d.cache = append(d.cache, deltaEntry{version: version, base: base, blob: delta})
	if len(d.cache) > deltaCacheSize {
		d.cache = d.cache[1:]
	}
	if delta == nil {
		return full, fullID
	}
	return delta, deltaID(hash, base)
}

func deltaID(hash string, base protocol.Hash) string {
	return fmt.Sprintf("model/%s/delta/%s", hash, hex.EncodeToString(base[:8]))
}

// encodeDelta returns the lossless delta of model file against base file,
// or nil when they do not share a spec (or do not decode).
func encodeDelta(file, baseFile []byte) []byte {
	m, err := tensor.UnmarshalModel(file)
	if err != nil {
		return nil
	}
	b, err := tensor.UnmarshalModel(baseFile)
	if err != nil || len(b.Params) != len(m.Params) {
		return nil
	}
	ms, err1 := json.Marshal(m.Spec)
	bs, err2 := json.Marshal(b.Spec)
	if err1 != nil || err2 != nil || !bytes.Equal(ms, bs) {
		return nil // the agent rebuilds the model on the base's spec
	}
	out, err := encoding.Encode(m.Params, b.Params, encoding.LosslessDelta())
	if err != nil {
		return nil
	}
	return out
}
