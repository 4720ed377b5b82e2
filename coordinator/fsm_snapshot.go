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

// Snapshot format, version 2:
//
//	"FEDGESNP" | version byte | uvarint len | JSON State (no blobs) |
//	uvarint count | count × (uvarint model version | uvarint len | blob |
//	uvarint len | strategy state | uvarint len | push delta) |
//	SHA-256 of everything before it
//
// Version 1 had no push delta; it is still read.
const (
	snapshotMagic   = "FEDGESNP"
	snapshotVersion = 2 // 2 adds each model's push delta; 1 is still read
	// maxSnapshotMeta bounds the JSON part of a snapshot.
	maxSnapshotMeta = 1 << 30
	// maxSnapshotBlob bounds one model blob in a snapshot.
	maxSnapshotBlob = 1 << 31
)

// ErrBadSnapshot is returned for a snapshot that is corrupt or foreign.
var ErrBadSnapshot = errors.New("coordinator: bad snapshot")

// snapshotOf captures s for a snapshot: its metadata encoded at once (the
// JSON the snapshot holds, so the state can change afterwards) and its
// model blobs, which are immutable once committed and so are shared.
func snapshotOf(s *State) (*fsmSnapshot, error) {
	meta, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("coordinator: encoding the state: %w", err)
	}
	snap := &fsmSnapshot{meta: meta}
	for _, v := range sortedKeys(s.Models) {
		if m := s.Models[v]; m.Blob != nil {
			snap.models = append(snap.models, snapshotModel{version: v, blob: m.Blob, state: m.StrategyState, push: m.Push})
		}
	}
	return snap, nil
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
	c, err := readSnapshot(&buf)
	if err != nil {
		panic(err)
	}
	return c
}

// snapshotModel is one model version's bytes in a snapshot.
type snapshotModel struct {
	version           uint64
	blob, state, push []byte
}

// fsmSnapshot is a point-in-time copy of the state, taken under the FSM's
// read lock and written out later without it.
type fsmSnapshot struct {
	meta   []byte
	models []snapshotModel
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
	put(uint64(len(f.models)))
	for _, m := range f.models {
		put(m.version)
		put(uint64(len(m.blob)))
		bw.Write(m.blob)
		put(uint64(len(m.state)))
		bw.Write(m.state)
		put(uint64(len(m.push)))
		bw.Write(m.push)
	}
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

func readSnapshot(rd io.Reader) (*State, error) {
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
	if err != nil || count > uint64(len(s.Models)) {
		return nil, bad("blob count")
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
		if m.Blob, err = readN(r, size); err != nil {
			return nil, bad("blob of model %d: %v", v, err)
		}
		size, err = binary.ReadUvarint(r)
		if err != nil || size != uint64(m.StateSize) {
			return nil, bad("strategy state size of model %d", v)
		}
		if size > 0 {
			if m.StrategyState, err = readN(r, size); err != nil {
				return nil, bad("strategy state of model %d: %v", v, err)
			}
		}
		if version < 2 {
			continue
		}
		size, err = binary.ReadUvarint(r)
		if err != nil || size != uint64(m.PushSize) {
			return nil, bad("push size of model %d", v)
		}
		if size > 0 {
			if m.Push, err = readN(r, size); err != nil {
				return nil, bad("push of model %d: %v", v, err)
			}
		}
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
