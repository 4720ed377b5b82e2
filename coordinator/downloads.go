package coordinator

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
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
	// next becomes what the agents decode: the push applied to the
	// parent in its memory, as an agent does (no decoded copy, and no
	// element limit below the model's).
	copy(next, parent)
	dec := encoding.Decoder{MaxElements: len(next)}
	if err := dec.Apply(next, bytes.NewReader(push), int64(len(push))); err != nil {
		return nil, nil, fmt.Errorf("coordinator: quantized push: %w", err)
	}
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
// smaller, it gets the model file. A delta is encoded once per (version,
// base) from the two model files, a chunk at a time, into a spool file
// of dir that the agents of a round are served from.
type downloads struct {
	// dir holds the spooled deltas; empty means the system's temporary
	// directory.
	dir string

	mu    sync.Mutex
	cache []*deltaEntry // most recent last
	// manifests are the BlobInfos of recent downloads by blob ID (the ID
	// changes with the content), so a round's agents do not each make
	// the node hash the model again.
	manifests []protocol.BlobInfo // most recent last
}

// maxDeltaModelBytes is the largest model file a node sends a lossless
// delta of to an agent below chunkedDeltaVersion: such an agent decodes
// a delta whole, in memory, and refuses one of more than 64 Mi
// parameters; larger models go to it whole (or as the job's quantized
// push), straight from the blob store.
const maxDeltaModelBytes = 256 << 20

// chunkedDeltaVersion is the protocol version from which an agent applies
// a delta a chunk at a time as it reads it from its download file, so a
// node sends it deltas of models of any size.
const chunkedDeltaVersion = 6

// sendsDelta reports whether a node offers a lossless delta of a model
// file of size bytes to an agent whose session runs at version.
func sendsDelta(size int64, version uint32) bool {
	return size <= maxDeltaModelBytes || version >= chunkedDeltaVersion
}

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

// deltaEntry is a cached delta: its spool file, or none when a delta was
// not worth it.
type deltaEntry struct {
	version uint64
	base    protocol.Hash
	f       *os.File // nil: send the model file
	size    int64
	refs    int  // downloads being served from f (or waiting for it)
	evicted bool // out of the cache: f goes once refs is zero
	ready   chan struct{}
}

// deltaRef is a cached delta being served; Release it when done.
type deltaRef struct {
	R    io.ReaderAt
	Size int64
	ID   string
	d    *downloads
	e    *deltaEntry
}

// Release ends the use of the delta's spool file.
func (r *deltaRef) Release() {
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	r.e.refs--
	if r.e.evicted && r.e.refs == 0 {
		r.e.drop()
	}
}

// drop closes and removes the entry's spool file.
func (e *deltaEntry) drop() {
	if e.f != nil {
		e.f.Close()
		os.Remove(e.f.Name())
		e.f = nil
	}
}

// delta returns the lossless delta of version's model file next (named
// hash) against the model file baseFile, whose parameters hash to base,
// and false when a delta is not worth sending (no common spec, or not
// smaller than next): from the cache, or encoded from the two files a
// chunk at a time into a spool file.
func (d *downloads) delta(version uint64, hash string, next *io.SectionReader, base protocol.Hash, baseFile *io.SectionReader) (*deltaRef, bool) {
	d.mu.Lock()
	var e *deltaEntry
	for _, c := range d.cache {
		if c.version == version && c.base == base {
			e = c
		}
	}
	encode := e == nil
	if encode {
		// One encoding serves every agent of a round, who ask at once:
		// they wait for it, other downloads do not.
		e = &deltaEntry{version: version, base: base, ready: make(chan struct{})}
		d.cache = append(d.cache, e)
		if len(d.cache) > deltaCacheSize {
			old := d.cache[0]
			d.cache = d.cache[1:]
			old.evicted = true
			if old.refs == 0 {
				old.drop()
			}
		}
	}
	e.refs++ // held while it is encoded or awaited, so it stays
	d.mu.Unlock()
	ref := &deltaRef{ID: deltaID(hash, base), d: d, e: e}
	if encode {
		f, size := encodeDelta(d.dir, next, baseFile)
		d.mu.Lock()
		e.f, e.size = f, size
		d.mu.Unlock()
		close(e.ready)
	}
	<-e.ready
	if e.f == nil {
		ref.Release()
		return nil, false
	}
	ref.R, ref.Size = e.f, e.size
	return ref, true
}

// close drops the cached deltas no download uses (at the node's close,
// after its listener stopped serving).
func (d *downloads) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.cache {
		e.evicted = true
		if e.refs == 0 {
			e.drop()
		}
	}
	d.cache = nil
}

func deltaID(hash string, base protocol.Hash) string {
	return fmt.Sprintf("model/%s/delta/%s", hash, hex.EncodeToString(base[:8]))
}

// encodeDelta spools the lossless delta of model file next against model
// file baseFile into a new file of dir, reading both a chunk at a time;
// it returns nil when they do not share a spec (or do not decode), or
// when the delta is not smaller than next.
func encodeDelta(dir string, next, baseFile *io.SectionReader) (*os.File, int64) {
	ns, nn, err1 := tensor.ReadModelHeader(io.NewSectionReader(next, 0, next.Size()), next.Size())
	bs, bn, err2 := tensor.ReadModelHeader(io.NewSectionReader(baseFile, 0, baseFile.Size()), baseFile.Size())
	if err1 != nil || err2 != nil || nn != bn {
		return nil, 0
	}
	mj, err1 := json.Marshal(ns)
	bj, err2 := json.Marshal(bs)
	if err1 != nil || err2 != nil || !bytes.Equal(mj, bj) {
		return nil, 0 // the agent rebuilds the model on the base's spec
	}
	f, err := os.CreateTemp(dir, "delta-*")
	if err != nil {
		return nil, 0
	}
	size, err := encoding.WriteLosslessDelta(f, nn, modelSource(next), modelSource(baseFile))
	if err != nil || size >= next.Size() {
		f.Close()
		os.Remove(f.Name())
		return nil, 0
	}
	return f, size
}

// modelSource reads the parameters of a model file a chunk at a time.
func modelSource(file *io.SectionReader) encoding.FloatSource {
	return func() (encoding.FloatReader, func(), error) {
		seq := func(yield func([]float32, error) bool) {
			r := bufio.NewReaderSize(io.NewSectionReader(file, 0, file.Size()), 256<<10)
			_, err := tensor.ReadModelParams(r, file.Size(), func(_ int, p []float32) error {
				if !yield(p, nil) {
					return errStopped
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStopped) {
				yield(nil, err)
			}
		}
		next, stop := iter.Pull2(seq)
		return &pulledFloats{next: next}, stop, nil
	}
}

// errStopped ends a model file's reading its consumer stopped.
var errStopped = errors.New("coordinator: stopped reading")

// pulledFloats is a FloatReader over pulled chunks.
type pulledFloats struct {
	next func() ([]float32, error, bool)
	rest []float32
}

func (p *pulledFloats) ReadFloats(dst []float32) (int, error) {
	for len(p.rest) == 0 {
		chunk, err, ok := p.next()
		if !ok {
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		p.rest = chunk
	}
	k := copy(dst, p.rest)
	p.rest = p.rest[k:]
	return k, nil
}
