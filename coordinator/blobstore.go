package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrBlobMissing means a blob named by the replicated state is not (yet)
// in this node's store; the node fetches it from a peer.
var ErrBlobMissing = errors.New("coordinator: blob not held by this node")

// BlobStore holds content-addressed blobs: the bytes of a model version
// (model file ‖ push delta ‖ strategy state), named by the lower-case hex
// SHA-256 of their content. Raft entries and snapshots name blobs by hash;
// the bytes never enter the log. A blob is immutable once committed.
type BlobStore interface {
	// Has reports whether the complete blob is held.
	Has(hash string) bool
	// Open returns the complete blob for reading; ErrBlobMissing if it is
	// not held.
	Open(hash string) (BlobReader, error)
	// Create returns a writer for the blob hash. Bytes an earlier writer
	// wrote and closed without committing are kept (Written), so a
	// transfer resumes; Commit publishes the blob atomically.
	Create(hash string) (BlobWriter, error)
	// Remove deletes a blob and any partial copy; a missing blob is not an
	// error.
	Remove(hash string) error
	// Hashes lists the complete blobs held.
	Hashes() ([]string, error)
}

// BlobReader reads a held blob.
type BlobReader interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// BlobWriter receives a blob, in any order of WriteAt calls.
type BlobWriter interface {
	io.WriterAt
	io.ReaderAt
	// Written is the size of what the partial copy already holds.
	Written() int64
	// Commit makes the blob durable and visible under its hash. sum is
	// the SHA-256 of the whole content the caller verified while the
	// bytes arrived; it must equal the blob's name.
	Commit(sum [32]byte) error
	// Close releases the writer, keeping an uncommitted partial copy for
	// a later Create to resume.
	Close() error
}

// validBlobHash reports whether h names a blob (64 lower-case hex digits).
func validBlobHash(h string) bool {
	if len(h) != 2*sha256.Size || strings.ToLower(h) != h {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// putBlob stores data in s and returns its hash.
func putBlob(s BlobStore, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	if s.Has(h) {
		return h, nil
	}
	w, err := s.Create(h)
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := w.WriteAt(data, 0); err != nil {
		return "", fmt.Errorf("coordinator.putBlob: %w", err)
	}
	if err := w.Commit(sum); err != nil {
		return "", err
	}
	return h, nil
}

// readBlobRange reads [off, off+n) of blob hash from s.
func readBlobRange(s BlobStore, hash string, off, n int64) ([]byte, error) {
	r, err := s.Open(hash)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if off < 0 || n < 0 || off+n > r.Size() {
		return nil, fmt.Errorf("coordinator.readBlobRange: %w: %d bytes at %d of a %d-byte blob", ErrBadEntry, n, off, r.Size())
	}
	out := make([]byte, n)
	if _, err := r.ReadAt(out, off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("coordinator.readBlobRange: %w", err)
	}
	return out, nil
}

// FileBlobs is a BlobStore in a directory: one file per blob, named by
// its hash; a blob being received is "<hash>.part" until Commit fsyncs it
// and renames it into place (then fsyncs the directory), so a crash never
// leaves a half-written blob under a blob's name.
type FileBlobs struct {
	dir string
	mu  sync.Mutex // serializes Create/Commit/Remove of one name
}

var _ BlobStore = (*FileBlobs)(nil)

// OpenFileBlobs opens (creating it if needed) the blob store in dir.
func OpenFileBlobs(dir string) (*FileBlobs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("coordinator.OpenFileBlobs: %w", err)
	}
	return &FileBlobs{dir: dir}, nil
}

func (s *FileBlobs) path(hash string) string { return filepath.Join(s.dir, hash) }

// Has implements BlobStore.
func (s *FileBlobs) Has(hash string) bool {
	if !validBlobHash(hash) {
		return false
	}
	_, err := os.Stat(s.path(hash))
	return err == nil
}

// Open implements BlobStore.
func (s *FileBlobs) Open(hash string) (BlobReader, error) {
	if !validBlobHash(hash) {
		return nil, fmt.Errorf("%w: %q", ErrBlobMissing, hash)
	}
	f, err := os.Open(s.path(hash))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrBlobMissing, hash)
	}
	if err != nil {
		return nil, fmt.Errorf("coordinator.FileBlobs.Open: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("coordinator.FileBlobs.Open: %w", err)
	}
	return &fileBlob{File: f, size: st.Size()}, nil
}

type fileBlob struct {
	*os.File
	size int64
}

func (b *fileBlob) Size() int64 { return b.size }

// Create implements BlobStore.
func (s *FileBlobs) Create(hash string) (BlobWriter, error) {
	if !validBlobHash(hash) {
		return nil, fmt.Errorf("coordinator.FileBlobs.Create: %w: blob name %q", ErrBadEntry, hash)
	}
	f, err := os.OpenFile(s.path(hash)+".part", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("coordinator.FileBlobs.Create: %w", err)
	}
	return &filePartial{s: s, f: f, hash: hash}, nil
}

type filePartial struct {
	s    *FileBlobs
	f    *os.File
	hash string
}

func (p *filePartial) WriteAt(b []byte, off int64) (int, error) { return p.f.WriteAt(b, off) }
func (p *filePartial) ReadAt(b []byte, off int64) (int, error)  { return p.f.ReadAt(b, off) }

func (p *filePartial) Written() int64 {
	st, err := p.f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

func (p *filePartial) Commit(sum [32]byte) error {
	if hex.EncodeToString(sum[:]) != p.hash {
		return fmt.Errorf("coordinator.FileBlobs.Commit: %w: content hash %x, blob %s", ErrBadEntry, sum, p.hash)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("coordinator.FileBlobs.Commit: %w", err)
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if err := os.Rename(p.f.Name(), p.s.path(p.hash)); err != nil {
		if _, serr := os.Stat(p.s.path(p.hash)); errors.Is(err, fs.ErrNotExist) && serr == nil {
			// Another writer of the same blob committed first (the
			// same bytes, by their hash): this one's file was that one.
			return nil
		}
		return fmt.Errorf("coordinator.FileBlobs.Commit: %w", err)
	}
	return syncDir(p.s.dir)
}

func (p *filePartial) Close() error { return p.f.Close() }

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("coordinator.syncDir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("coordinator.syncDir: %w", err)
	}
	return nil
}

// Remove implements BlobStore.
func (s *FileBlobs) Remove(hash string) error {
	if !validBlobHash(hash) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range []string{s.path(hash), s.path(hash) + ".part"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("coordinator.FileBlobs.Remove: %w", err)
		}
	}
	return nil
}

// Hashes implements BlobStore.
func (s *FileBlobs) Hashes() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("coordinator.FileBlobs.Hashes: %w", err)
	}
	var out []string
	for _, e := range ents {
		if validBlobHash(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// MemBlobs is the in-memory twin of FileBlobs, for unit tests and for an
// FSM made without a directory.
type MemBlobs struct {
	mu      sync.Mutex
	blobs   map[string][]byte
	partial map[string]*memPartial
}

var _ BlobStore = (*MemBlobs)(nil)

// NewMemBlobs returns an empty in-memory blob store.
func NewMemBlobs() *MemBlobs {
	return &MemBlobs{blobs: map[string][]byte{}, partial: map[string]*memPartial{}}
}

// Has implements BlobStore.
func (s *MemBlobs) Has(hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[hash]
	return ok
}

// Open implements BlobStore.
func (s *MemBlobs) Open(hash string) (BlobReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[hash]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrBlobMissing, hash)
	}
	return memBlob{bytes.NewReader(b)}, nil
}

type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }

// Create implements BlobStore.
func (s *MemBlobs) Create(hash string) (BlobWriter, error) {
	if !validBlobHash(hash) {
		return nil, fmt.Errorf("coordinator.MemBlobs.Create: %w: blob name %q", ErrBadEntry, hash)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.partial[hash]
	if p == nil {
		p = &memPartial{s: s, hash: hash}
		s.partial[hash] = p
	}
	return p, nil
}

type memPartial struct {
	s    *MemBlobs
	hash string
	mu   sync.Mutex
	b    []byte
}

func (p *memPartial) WriteAt(b []byte, off int64) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if end := off + int64(len(b)); end > int64(len(p.b)) {
		p.b = append(p.b, make([]byte, end-int64(len(p.b)))...)
	}
	copy(p.b[off:], b)
	return len(b), nil
}

func (p *memPartial) ReadAt(b []byte, off int64) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.NewReader(p.b).ReadAt(b, off)
}

func (p *memPartial) Written() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(len(p.b))
}

func (p *memPartial) Commit(sum [32]byte) error {
	if hex.EncodeToString(sum[:]) != p.hash {
		return fmt.Errorf("coordinator.MemBlobs.Commit: %w: content hash %x, blob %s", ErrBadEntry, sum, p.hash)
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	p.mu.Lock()
	p.s.blobs[p.hash] = p.b
	p.mu.Unlock()
	delete(p.s.partial, p.hash)
	return nil
}

func (p *memPartial) Close() error { return nil }

// Remove implements BlobStore.
func (s *MemBlobs) Remove(hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.blobs, hash)
	delete(s.partial, hash)
	return nil
}

// Hashes implements BlobStore.
func (s *MemBlobs) Hashes() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.blobs), nil
}

// modelBlob is an open model version's blob: its record and a reader of
// its bytes. Close it when done.
type modelBlob struct {
	rec ModelRecord
	r   BlobReader
}

// Close releases the blob.
func (b *modelBlob) Close() error { return b.r.Close() }

// file reads the model file.
func (b *modelBlob) file() *io.SectionReader {
	off, n := b.rec.filePart()
	return io.NewSectionReader(b.r, off, n)
}

// part reads a whole part of the blob into memory.
func (b *modelBlob) part(off, n int64) ([]byte, error) {
	out := make([]byte, n)
	if _, err := b.r.ReadAt(out, off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("coordinator.modelBlob: %w", err)
	}
	return out, nil
}

// openModel opens version's blob: ErrNotFound if the version is unknown
// or retention dropped its bytes, ErrBlobMissing if this node has not
// received them yet.
func (f *FSM) openModel(version uint64) (*modelBlob, error) {
	var rec ModelRecord
	var ok bool
	f.Read(func(s *State) {
		var m *ModelRecord
		if m, ok = s.Models[version]; ok {
			rec = *m
		}
	})
	if !ok || !rec.held() {
		return nil, fmt.Errorf("%w: model %d (or its bytes)", ErrNotFound, version)
	}
	r, err := f.blobs.Open(rec.BlobHash)
	if err != nil {
		if f.missing != nil && errors.Is(err, ErrBlobMissing) {
			f.missing(rec.BlobHash)
		}
		return nil, err
	}
	if r.Size() != rec.BlobSize {
		r.Close()
		return nil, fmt.Errorf("coordinator: model %d: blob %s holds %d bytes, the record says %d", version, rec.BlobHash, r.Size(), rec.BlobSize)
	}
	return &modelBlob{rec: rec, r: r}, nil
}

// ModelFile returns version's model file from this node's blob store,
// read whole into memory (tests, console exports).
func (f *FSM) ModelFile(version uint64) ([]byte, error) {
	b, err := f.openModel(version)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.part(b.rec.filePart())
}

// openModelBlob opens version's blob, fetching it from a peer first when
// this node has not received it yet (a follower that applied the entry
// before the bytes arrived).
func (n *Node) openModelBlob(ctx context.Context, version uint64) (*modelBlob, error) {
	b, err := n.fsm.openModel(version)
	if !errors.Is(err, ErrBlobMissing) {
		return b, err
	}
	var hash string
	n.fsm.Read(func(s *State) {
		if m, ok := s.Models[version]; ok {
			hash = m.BlobHash
		}
	})
	if err := n.blobsync.fetch(ctx, hash); err != nil {
		return nil, err
	}
	return n.fsm.openModel(version)
}
