package coordinator

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
)

// Sentinel errors returned by FSM commands (through raft's ApplyFuture).
var (
	ErrBadEntry        = errors.New("coordinator: malformed log entry")
	ErrUnknownEntry    = errors.New("coordinator: unknown log entry type")
	ErrNotFound        = errors.New("coordinator: not found")
	ErrExists          = errors.New("coordinator: already exists")
	ErrTokenUsed       = errors.New("coordinator: join token already used")
	ErrTokenExpired    = errors.New("coordinator: join token expired")
	ErrConflict        = errors.New("coordinator: conflicting state")
	ErrNotBootstrapped = errors.New("coordinator: cluster not bootstrapped")
	ErrTokenRevoked    = errors.New("coordinator: join token revoked")
)

// cmdType is the first byte of every log entry. The list is append-only:
// never renumber or reuse a value. A type with the high bit (optionalCmd)
// set may be ignored by an older server that does not know it.
type cmdType byte

const (
	cmdBootstrap      cmdType = 1  // version 1: cluster name, sealed CA, retention
	cmdTokenCreate    cmdType = 2  // version 1: a join token's hash and expiry
	cmdAgentEnroll    cmdType = 3  // version 1: consume a token, register an agent
	cmdAgentRenew     cmdType = 4  // version 1: new certificate serial
	cmdAgentRevoke    cmdType = 5  // version 1: revoke an agent and its certificate
	cmdAgentLabel     cmdType = 6  // version 1: replace an agent's labels
	cmdAgentSeen      cmdType = 7  // version 1: coarse last-seen times
	cmdJobCreate      cmdType = 8  // version 1: a training job
	cmdJobUpdate      cmdType = 9  // version 1: a job's state
	cmdRoundStart     cmdType = 10 // version 1: a round begins
	cmdRoundEnd       cmdType = 11 // version 1: a round ends without a model
	cmdModelCommit    cmdType = 12 // version 1: a model version (blob), ends its round; version 3: the blob by hash, no payload
	cmdModelPin       cmdType = 13 // version 1: pin or unpin a model version
	cmdRolloutCreate  cmdType = 14 // version 1: start a rollout
	cmdRolloutDecide  cmdType = 15 // version 1: a rollout decision with evidence
	cmdSetStable      cmdType = 16 // version 1: the version agents serve by default
	cmdAbortRounds    cmdType = 17 // version 1: a new leader aborts rounds in flight
	cmdAdminCert      cmdType = 18 // version 1: record an admin certificate
	cmdTokenPrune     cmdType = 19 // version 1: forget expired or used tokens
	cmdTokenRevoke    cmdType = 20 // version 1: revoke an unused join token
	cmdAdminRevoke    cmdType = 21 // version 1: revoke admin certificates by serial or name
	cmdModelImport    cmdType = 22 // version 2: an operator's model version (blob), without parent, job or round; version 3: by hash
	optionalCmd       cmdType = 0x80
	maxEntryHeaderLen         = 1 << 20
)

// encodeEntry lays out a log entry: type byte, uvarint header length, JSON
// header, then an optional raw payload. Since FSM version 3 no entry
// carries model bytes: a model entry names its blob by hash (BlobStore);
// entries of versions 1 and 2 that carried them raw still apply.
func encodeEntry(t cmdType, hdr any, payload []byte) ([]byte, error) {
	h, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("coordinator.encodeEntry: %w", err)
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(h)+len(payload))
	out = append(out, byte(t))
	out = binary.AppendUvarint(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, payload...), nil
}

// decodeEntry splits an entry into its type, header JSON and payload.
func decodeEntry(b []byte) (cmdType, []byte, []byte, error) {
	if len(b) < 2 {
		return 0, nil, nil, ErrBadEntry
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > maxEntryHeaderLen || n > uint64(len(b)-1-k) {
		return 0, nil, nil, ErrBadEntry
	}
	start := 1 + k
	return cmdType(b[0]), b[start : start+int(n)], b[start+int(n):], nil
}

// FSM is the replicated state machine of a coordinator cluster. Apply is
// deterministic: it reads nothing but the entry and the state (every
// timestamp travels in the entry), returns errors instead of panicking, and
// never applies half of an entry.
type FSM struct {
	mu    sync.RWMutex
	state *State
	log   *slog.Logger
	// blobs holds the model versions' bytes the state names by hash.
	blobs BlobStore
	// missing, if set, is told (without blocking) the hash of a blob the
	// state names that the store lacks, so the node fetches it.
	missing func(hash string)

	// watchers are told the index of every applied entry.
	watchMu  sync.Mutex
	watchers map[chan uint64]struct{}
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an empty state machine whose blobs live in memory
// (MemBlobs); nodes use NewFSMWithBlobs.
func NewFSM(logger *slog.Logger) *FSM {
	return NewFSMWithBlobs(logger, NewMemBlobs())
}

// NewFSMWithBlobs returns an empty state machine whose model versions'
// bytes live in blobs.
func NewFSMWithBlobs(logger *slog.Logger, blobs BlobStore) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{state: newState(), log: logger, blobs: blobs, watchers: map[chan uint64]struct{}{}}
}

// Blobs returns the store of the model versions' bytes.
func (f *FSM) Blobs() BlobStore { return f.blobs }

// Apply applies one committed log entry. The response is an error or the
// command's result (see the apply functions).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	t, hdr, payload, err := decodeEntry(l.Data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	var before map[string]bool
	if t == cmdModelCommit || t == cmdModelImport || t == cmdModelPin || t == cmdRolloutDecide || t == cmdSetStable || t == cmdRolloutCreate {
		before = f.state.blobRefs()
	}
	res := f.applyLocked(t, hdr, payload)
	if f.state.LastApplied < l.Index {
		f.state.LastApplied = l.Index
	}
	if before != nil {
		f.collectBlobs(before)
	}
	f.mu.Unlock()
	f.notify(l.Index)
	return res
}

func (f *FSM) applyLocked(t cmdType, hdr, payload []byte) any {
	s := f.state
	switch t {
	case cmdBootstrap:
		return applyBootstrap(s, hdr)
	case cmdTokenCreate:
		return applyTokenCreate(s, hdr)
	case cmdAgentEnroll:
		return applyAgentEnroll(s, hdr)
	case cmdAgentRenew:
		return applyAgentRenew(s, hdr)
	case cmdAgentRevoke:
		return applyAgentRevoke(s, hdr)
	case cmdAgentLabel:
		return applyAgentLabel(s, hdr)
	case cmdAgentSeen:
		return applyAgentSeen(s, hdr)
	case cmdJobCreate:
		return applyJobCreate(s, hdr)
	case cmdJobUpdate:
		return applyJobUpdate(s, hdr)
	case cmdRoundStart:
		return applyRoundStart(s, hdr)
	case cmdRoundEnd:
		return applyRoundEnd(s, hdr)
	case cmdModelCommit:
		ref, err := f.inlineBlob(payload)
		if err != nil {
			return err
		}
		return applyModelCommit(s, hdr, ref)
	case cmdModelPin:
		return applyModelPin(s, hdr)
	case cmdRolloutCreate:
		return applyRolloutCreate(s, hdr)
	case cmdRolloutDecide:
		return applyRolloutDecide(s, hdr)
	case cmdSetStable:
		return applySetStable(s, hdr)
	case cmdAbortRounds:
		return applyAbortRounds(s, hdr)
	case cmdAdminCert:
		return applyAdminCert(s, hdr)
	case cmdTokenPrune:
		return applyTokenPrune(s, hdr)
	case cmdTokenRevoke:
		return applyTokenRevoke(s, hdr)
	case cmdAdminRevoke:
		return applyAdminRevoke(s, hdr)
	case cmdModelImport:
		ref, err := f.inlineBlob(payload)
		if err != nil {
			return err
		}
		return applyModelImport(s, hdr, ref)
	case cmdModelExplain:
		return applyModelExplain(s, hdr)
	}
	if t&optionalCmd != 0 {
		f.log.Warn("ignoring optional log entry of unknown type", "type", byte(t))
		return nil
	}
	return fmt.Errorf("%w: %d", ErrUnknownEntry, byte(t))
}

// inlineBlob stores the model bytes an entry written before FSM version
// 3 carries and names them; an entry without payload names its blob in
// its header.
func (f *FSM) inlineBlob(payload []byte) (blobRef, error) {
	if len(payload) == 0 {
		return blobRef{}, nil
	}
	h, err := putBlob(f.blobs, payload)
	if err != nil {
		return blobRef{}, fmt.Errorf("coordinator.FSM.Apply: storing an entry's model bytes: %w", err)
	}
	return blobRef{hash: h, size: int64(len(payload))}, nil
}

// collectBlobs removes from the store the blobs before named and the
// state no longer names (retention dropped their versions), and asks for
// the ones it names but the store lacks. Called with f.mu held.
func (f *FSM) collectBlobs(before map[string]bool) {
	after := f.state.blobRefs()
	for h := range before {
		if after[h] {
			continue
		}
		if err := f.blobs.Remove(h); err != nil {
			f.log.Warn("removing a dropped model blob", "blob", h, "err", err)
		}
	}
	for h := range after {
		if !before[h] && !f.blobs.Has(h) && f.missing != nil {
			f.missing(h)
		}
	}
}

// MissingBlobs returns the hashes of the blobs the state names that the
// store lacks.
func (f *FSM) MissingBlobs() []string {
	f.mu.RLock()
	refs := f.state.blobRefs()
	f.mu.RUnlock()
	var out []string
	for _, h := range sortedKeys(refs) {
		if !f.blobs.Has(h) {
			out = append(out, h)
		}
	}
	return out
}

// decodeHdr unmarshals an entry header strictly.
func decodeHdr(hdr []byte, v any) error {
	if err := json.Unmarshal(hdr, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadEntry, err)
	}
	return nil
}

// Read runs fn with the state under the read lock. fn must not keep
// references into the state or modify it.
func (f *FSM) Read(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// LastApplied returns the index of the last entry applied.
func (f *FSM) LastApplied() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.LastApplied
}

// Watch returns a channel told the index of every applied entry (dropping
// values a slow reader misses) and a function that stops the watch.
func (f *FSM) Watch() (<-chan uint64, func()) {
	ch := make(chan uint64, 16)
	f.watchMu.Lock()
	f.watchers[ch] = struct{}{}
	f.watchMu.Unlock()
	return ch, func() {
		f.watchMu.Lock()
		delete(f.watchers, ch)
		f.watchMu.Unlock()
	}
}

func (f *FSM) notify(index uint64) {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	for ch := range f.watchers {
		select {
		case ch <- index:
		default:
		}
	}
}

// Snapshot captures the state for log compaction: the metadata encoded
// under the read lock (one JSON encoding, the snapshot's own), which names
// the model versions' blobs by hash (the bytes stay in the BlobStore).
// Persist writes it out without the lock.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return snapshotOf(f.state)
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := readSnapshot(rc, f.blobs)
	if err != nil {
		return fmt.Errorf("coordinator.FSM.Restore: %w", err)
	}
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	if f.missing != nil {
		for _, h := range f.MissingBlobs() {
			f.missing(h)
		}
	}
	f.notify(s.LastApplied)
	return nil
}
