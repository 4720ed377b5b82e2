package coordinator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// payloadFunc writes the model bytes of a log entry (model file ‖ push
// delta ‖ strategy state) to w, in order.
type payloadFunc func(w io.Writer) error

// streamReplicator is a replicator that takes an entry's model bytes
// from a writer: the leader streams a new model version into its blob
// store, hashing as it goes, instead of building the bytes in memory.
type streamReplicator interface {
	applyStream(ctx context.Context, t cmdType, hdr any, write payloadFunc) (any, error)
}

// applyModel replicates an entry carrying model bytes written by write:
// streamed into the blob store when the replicator can, else built in
// memory first.
func applyModel(ctx context.Context, rep replicator, t cmdType, hdr any, write payloadFunc) (any, error) {
	if s, ok := rep.(streamReplicator); ok {
		return s.applyStream(ctx, t, hdr, write)
	}
	var b bytes.Buffer
	if err := write(&b); err != nil {
		return nil, err
	}
	return rep.apply(ctx, t, hdr, b.Bytes())
}

// applyStream implements streamReplicator: the model bytes go to the
// blob store (one buffer of memory), are pushed to a majority of the
// voters, and the entry names them.
func (n *Node) applyStream(ctx context.Context, t cmdType, hdr any, write payloadFunc) (any, error) {
	if !n.rep.isLeader() {
		return nil, ErrNotLeader
	}
	hdr, err := n.blobsync.stageFrom(ctx, hdr, write)
	if h := heldBlob(hdr); h != "" {
		defer n.blobsync.unhold(h)
	}
	if err != nil {
		return nil, err
	}
	return n.rep.apply(ctx, t, hdr, nil)
}

// stageFrom is stage with the bytes written by write.
func (bs *blobSync) stageFrom(ctx context.Context, hdr any, write payloadFunc) (any, error) {
	info, err := spoolBlob(bs.n.fsm.blobs, write)
	if err != nil {
		return nil, err
	}
	hash := hex.EncodeToString(info.Hash[:])
	info.ID = "blob/" + hash
	if hdr, err = nameBlob(hdr, hash, int64(info.Size)); err != nil {
		return nil, err
	}
	bs.hold(hash) // until the entry naming it is decided (Node.applyStream)
	return hdr, bs.replicate(ctx, hash, &info)
}

// nameBlob sets the blob an entry header names.
func nameBlob(hdr any, hash string, size int64) (any, error) {
	switch c := hdr.(type) {
	case modelCommitCmd:
		c.Model.BlobHash, c.Model.BlobSize = hash, size
		return c, nil
	case modelImportCmd:
		c.Model.BlobHash, c.Model.BlobSize = hash, size
		return c, nil
	}
	return nil, fmt.Errorf("coordinator.nameBlob: %T carries no model", hdr)
}

// blobInfoWriter computes a blob's manifest (protocol.NewBlobInfo's: the
// SHA-256 of each chunk and of the whole) from its bytes as they are
// written, so a blob written once is never read back to be hashed.
type blobInfoWriter struct {
	info    protocol.BlobInfo
	whole   hash.Hash
	chunk   hash.Hash
	inChunk int
}

func newBlobInfoWriter() *blobInfoWriter {
	return &blobInfoWriter{info: protocol.BlobInfo{ChunkSize: protocol.DefaultChunkSize}, whole: sha256.New(), chunk: sha256.New()}
}

func (w *blobInfoWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.whole.Write(p)
	cs := int(w.info.ChunkSize)
	for len(p) > 0 {
		k := min(len(p), cs-w.inChunk)
		w.chunk.Write(p[:k])
		w.inChunk += k
		p = p[k:]
		if w.inChunk == cs {
			w.endChunk()
		}
	}
	w.info.Size += uint64(n)
	return n, nil
}

func (w *blobInfoWriter) endChunk() {
	var h protocol.Hash
	w.chunk.Sum(h[:0])
	w.info.Chunks = append(w.info.Chunks, h)
	w.chunk.Reset()
	w.inChunk = 0
}

// finish returns the manifest of everything written.
func (w *blobInfoWriter) finish() protocol.BlobInfo {
	if w.inChunk > 0 {
		w.endChunk()
	}
	if w.info.Chunks == nil {
		w.info.Chunks = []protocol.Hash{} // as NewBlobInfo's
	}
	w.whole.Sum(w.info.Hash[:0])
	return w.info
}

// blobSpool receives a blob whose name, its hash, is known only once it
// is all written.
type blobSpool interface {
	io.Writer
	// Commit publishes what was written as the blob named by sum (its
	// SHA-256, which the caller computed while writing).
	Commit(sum [32]byte) error
	// Abort discards what was written (after Commit, a no-op).
	Abort()
}

// blobSpooler is a BlobStore that can receive a blob of unknown name.
type blobSpooler interface {
	Spool() (blobSpool, error)
}

// spoolBlob stores the bytes write writes as a blob and returns its
// manifest, holding one buffer of them in memory when the store can
// spool (FileBlobs), all of them otherwise.
func spoolBlob(s BlobStore, write payloadFunc) (protocol.BlobInfo, error) {
	sp, ok := s.(blobSpooler)
	if !ok {
		var b bytes.Buffer
		iw := newBlobInfoWriter()
		if err := write(io.MultiWriter(&b, iw)); err != nil {
			return protocol.BlobInfo{}, err
		}
		info := iw.finish()
		if _, err := putBlob(s, b.Bytes()); err != nil {
			return protocol.BlobInfo{}, err
		}
		return info, nil
	}
	w, err := sp.Spool()
	if err != nil {
		return protocol.BlobInfo{}, err
	}
	defer w.Abort()
	iw := newBlobInfoWriter()
	bw := bufio.NewWriterSize(io.MultiWriter(w, iw), 1<<20)
	if err := write(bw); err != nil {
		return protocol.BlobInfo{}, err
	}
	if err := bw.Flush(); err != nil {
		return protocol.BlobInfo{}, fmt.Errorf("coordinator.spoolBlob: %w", err)
	}
	info := iw.finish()
	if err := w.Commit(info.Hash); err != nil {
		return protocol.BlobInfo{}, err
	}
	return info, nil
}

// spoolPrefix starts the names of FileBlobs' spool files.
const spoolPrefix = "spool-"

// Spool implements blobSpooler: the blob is written to a spool file in
// the store's directory, fsynced and renamed into place by Commit.
func (s *FileBlobs) Spool() (blobSpool, error) {
	f, err := os.CreateTemp(s.dir, spoolPrefix+"*.part")
	if err != nil {
		return nil, fmt.Errorf("coordinator.FileBlobs.Spool: %w", err)
	}
	return &fileSpool{s: s, f: f}, nil
}

type fileSpool struct {
	s    *FileBlobs
	f    *os.File
	done bool
}

func (w *fileSpool) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *fileSpool) Commit(sum [32]byte) error {
	hash := hex.EncodeToString(sum[:])
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("coordinator.FileBlobs.Spool: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("coordinator.FileBlobs.Spool: %w", err)
	}
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.done = true
	if err := os.Rename(w.f.Name(), w.s.path(hash)); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("coordinator.FileBlobs.Spool: %w", err)
	}
	return syncDir(w.s.dir)
}

func (w *fileSpool) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// modelPayload writes a model version's blob: m's model file, then the
// push delta and the strategy state.
func modelPayload(m *tensor.Model, push, state []byte) payloadFunc {
	return func(w io.Writer) error {
		if _, err := m.WriteTo(w); err != nil {
			return err
		}
		if _, err := w.Write(push); err != nil {
			return err
		}
		_, err := w.Write(state)
		return err
	}
}
