package coordinator

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// Snapshot format, version 3:
//
//	"FEDGESNP" | version byte | uvarint len | JSON State | uvarint 0 |
//	SHA-256 of everything before it
//
// The state names each model version's blob by hash (ModelRecord.BlobHash);
// the bytes stay in the BlobStore, and a node restoring a snapshot fetches
// the blobs it lacks from a peer. Versions 1 and 2 carried the bytes after
// the state, and are still read (their bytes go into the store):
//
//	uvarint count | count × (uvarint model version | uvarint len | model
//	file | uvarint len | strategy state | uvarint len | push delta)
//
// (version 1 without the push delta).
const (
	snapshotMagic   = "FEDGESNP"
	snapshotVersion = 3 // 3 names blobs by hash; 2 (push delta) and 1 are still read
	// maxSnapshotMeta bounds the JSON part of a snapshot.
	maxSnapshotMeta = 1 << 30
	// maxSnapshotBlob bounds one model blob in a snapshot.
	maxSnapshotBlob = 1 << 31
)

// ErrBadSnapshot is returned for a snapshot that is corrupt or foreign.
var ErrBadSnapshot = errors.New("coordinator: bad snapshot")

// snapshotOf captures s for a snapshot: its metadata encoded at once (the
// JSON the snapshot holds, so the state can change afterwards).
func snapshotOf(s *State) (*fsmSnapshot, error) {
	meta, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("coordinator: encoding the state: %w", err)
	}
	return &fsmSnapshot{meta: meta}, nil
}

// clone deep-copies a state through its snapshot form (tests use it).
func (s *State) clone() *State {
	snap, err := snapshotOf(s)
	if err != nil {
		panic(err) // tests only; Snapshot returns the error
	}
	var buf bytes.Buffer
	if err := snap.write(&buf); err != nil {
		panic(err)
	}
	c, err := readSnapshot(&buf, NewMemBlobs())
	if err != nil {
		panic(err)
	}
	return c
}

// fsmSnapshot is a point-in-time copy of the state, taken under the FSM's
// read lock and written out later without it.
type fsmSnapshot struct {
	meta []byte
}

// Persist writes the snapshot to the sink.
func (f *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := f.write(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("coordinator.Persist: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the snapshot holds only its own copy.
func (f *fsmSnapshot) Release() {}

func writeSnapshot(w io.Writer, s *State) error {
	snap, err := snapshotOf(s)
	if err != nil {
		return err
	}
	return snap.write(w)
}

func (f *fsmSnapshot) write(w io.Writer) error {
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
	var tmp [binary.MaxVarintLen64]byte
	put := func(v uint64) {
		bw.Write(tmp[:binary.PutUvarint(tmp[:], v)])
	}
	bw.WriteString(snapshotMagic)
	bw.WriteByte(snapshotVersion)
	put(uint64(len(f.meta)))
	bw.Write(f.meta)
	put(0) // no inline model bytes since version 3
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(h.Sum(nil))
	return err
}

// hashingReader hashes what it reads.
type hashingReader struct {
	r *bufio.Reader
	h interface{ Write([]byte) (int, error) }
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	return n, err
}

func (r *hashingReader) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err == nil {
		r.h.Write([]byte{b})
	}
	return b, err
}

// readSnapshot reads a snapshot of any version; model bytes a version 1
// or 2 snapshot carries go into blobs, and the state names them by hash.
func readSnapshot(rd io.Reader, blobs BlobStore) (*State, error) {
	h := sha256.New()
	r := &hashingReader{r: bufio.NewReaderSize(rd, 1<<20), h: h}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, a...))
	}
	head := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, bad("header: %v", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, bad("not a fedge snapshot")
	}
	version := head[len(snapshotMagic)]
	if version < 1 || version > snapshotVersion {
		return nil, bad("version %d, want 1 to %d", version, snapshotVersion)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > maxSnapshotMeta {
		return nil, bad("metadata length")
	}
	meta, err := readN(r, n)
	if err != nil {
		return nil, bad("metadata: %v", err)
	}
	s := newState()
	if err := json.Unmarshal(meta, s); err != nil {
		return nil, bad("metadata: %v", err)
	}
	count, err := binary.ReadUvarint(r)
	if err != nil || count > uint64(len(s.Models)) || (version >= 3 && count != 0) {
		return nil, bad("blob count")
	}
	if version < 3 {
		for _, m := range s.Models {
			m.BlobHash, m.BlobSize = "", 0 // named below, by the bytes that follow
		}
	}
	for i := uint64(0); i < count; i++ {
		v, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, bad("blob version: %v", err)
		}
		m, ok := s.Models[v]
		if !ok {
			return nil, bad("blob for unknown model %d", v)
		}
		size, err := binary.ReadUvarint(r)
		if err != nil || size > maxSnapshotBlob || (m.Size != 0 && size != uint64(m.Size)) {
			return nil, bad("blob size of model %d", v)
		}
		file, err := readN(r, size)
		if err != nil {
			return nil, bad("blob of model %d: %v", v, err)
		}
		size, err = binary.ReadUvarint(r)
		if err != nil || size != uint64(m.StateSize) {
			return nil, bad("strategy state size of model %d", v)
		}
		var state, push []byte
		if size > 0 {
			if state, err = readN(r, size); err != nil {
				return nil, bad("strategy state of model %d: %v", v, err)
			}
		}
		if version >= 2 {
			size, err = binary.ReadUvarint(r)
			if err != nil || size != uint64(m.PushSize) {
				return nil, bad("push size of model %d", v)
			}
			if size > 0 {
				if push, err = readN(r, size); err != nil {
					return nil, bad("push of model %d: %v", v, err)
				}
			}
		}
		// The blob's layout: model file, push delta, strategy state.
		m.Size, m.PushSize = len(file), len(push)
		blob := append(append(file, push...), state...)
		h, err := putBlob(blobs, blob)
		if err != nil {
			return nil, fmt.Errorf("coordinator: restoring model %d's bytes: %w", v, err)
		}
		m.BlobHash, m.BlobSize = h, int64(len(blob))
	}
	want := h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r.r, got); err != nil {
		return nil, bad("checksum: %v", err)
	}
	if !bytes.Equal(got, want) {
		return nil, bad("checksum mismatch")
	}
	fixNilMaps(s)
	migrateAdmins(s)
	return s, nil
}

// readN reads exactly n bytes, growing the buffer as data arrives so a
// forged length cannot make it allocate more than the input holds.
func readN(r io.Reader, n uint64) ([]byte, error) {
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, int64(n))
	if err != nil {
		return nil, err
	}
	if uint64(got) != n {
		return nil, io.ErrUnexpectedEOF
	}
	return buf.Bytes(), nil
}

// fixNilMaps restores empty maps a snapshot may have written as null.
func fixNilMaps(s *State) {
	if s.Agents == nil {
		s.Agents = map[string]*AgentRecord{}
	}
	if s.Tokens == nil {
		s.Tokens = map[string]*TokenRecord{}
	}
	if s.Revoked == nil {
		s.Revoked = map[string]time.Time{}
	}
	if s.Jobs == nil {
		s.Jobs = map[string]*JobRecord{}
	}
	if s.Rounds == nil {
		s.Rounds = map[uint64]*RoundRecord{}
	}
	if s.Models == nil {
		s.Models = map[uint64]*ModelRecord{}
	}
	if s.Rollouts == nil {
		s.Rollouts = map[string]*RolloutRecord{}
	}
	if s.AdminSerials == nil {
		s.AdminSerials = map[string]string{}
	}
	if s.Admins == nil {
		s.Admins = map[string]*AdminRecord{}
	}
}
