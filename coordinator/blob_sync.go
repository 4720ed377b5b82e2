package coordinator

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/protocol"
)

// blobSync moves model versions' blobs between coordinators over
// fedge-peer/1: the leader pushes a new version's blob to the other
// voters before it proposes the entry that names it (BlobPut), and a node
// whose state names a blob its store lacks fetches it from a peer
// (BlobGet). Both directions are chunked, hashed and resumable, and a
// blob becomes visible in a store only whole and verified.
type blobSync struct {
	n    *Node
	wake chan struct{} // a blob may be missing: look

	mu       sync.Mutex
	sessions map[string]*protocol.Session // by peer address
	busy     map[string]chan struct{}     // blobs being received, closed when done
	progress map[string]*protocol.BlobProgress
	held     map[string]int // blobs of entries being proposed (hold)
}

// blobFetchTimeout bounds one fetch of a blob from one peer.
const blobFetchTimeout = 10 * time.Minute

func newBlobSync(n *Node) *blobSync {
	return &blobSync{
		n: n, wake: make(chan struct{}, 1),
		sessions: map[string]*protocol.Session{}, busy: map[string]chan struct{}{},
		progress: map[string]*protocol.BlobProgress{},
	}
}

// missing is the FSM's hook: it never blocks.
func (bs *blobSync) missing(string) {
	select {
	case bs.wake <- struct{}{}:
	default:
	}
}

// run fetches the blobs the state names and the store lacks, when told
// and every few seconds, until ctx ends.
func (bs *blobSync) run(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	sweep := time.NewTicker(orphanSweepEvery)
	defer sweep.Stop()
	for {
		for _, h := range bs.n.fsm.MissingBlobs() {
			if ctx.Err() != nil {
				return
			}
			if err := bs.fetch(ctx, h); err != nil && ctx.Err() == nil {
				bs.n.log.Warn("fetching a model blob from peers", "blob", h, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-bs.wake:
		case <-t.C:
		case now := <-sweep.C:
			bs.sweepOrphans(now, orphanGrace)
		}
	}
}

// stage stores a new version's bytes in this node's store and pushes them
// to the other voters, and returns the entry header naming them. It
// returns once a majority of the voters (this node included) holds the
// blob, so whichever node leads next can serve it or fetch it; voters it
// could not reach fetch the blob when they apply the entry.
func (bs *blobSync) stage(ctx context.Context, hdr any, payload []byte) (any, error) {
	info, err := protocol.NewBlobInfo("", bytes.NewReader(payload), int64(len(payload)), 0)
	if err != nil {
		return nil, err
	}
	hash := hex.EncodeToString(info.Hash[:])
	info.ID = "blob/" + hash
	if !bs.n.fsm.blobs.Has(hash) {
		w, err := bs.n.fsm.blobs.Create(hash)
		if err != nil {
			return nil, err
		}
		_, err = w.WriteAt(payload, 0)
		if err == nil {
			err = w.Commit(info.Hash)
		}
		w.Close()
		if err != nil {
			return nil, fmt.Errorf("coordinator.blobSync.stage: %w", err)
		}
	}
	switch c := hdr.(type) {
	case modelCommitCmd:
		c.Model.BlobHash, c.Model.BlobSize = hash, int64(len(payload))
		hdr = c
	case modelImportCmd:
		c.Model.BlobHash, c.Model.BlobSize = hash, int64(len(payload))
		hdr = c
	default:
		return nil, fmt.Errorf("coordinator.blobSync.stage: %T carries no model", hdr)
	}
	bs.hold(hash) // until the entry naming it is decided (Node.apply)
	return hdr, bs.replicate(ctx, hash, &info)
}

// replicate pushes blob hash (manifest info) to every other voter at once
// and waits until a majority of voters holds it.
func (bs *blobSync) replicate(ctx context.Context, hash string, info *protocol.BlobInfo) error {
	f := bs.n.rep.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("coordinator.blobSync.replicate: %w", err)
	}
	var voters []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != bs.n.cfg.NodeID {
			voters = append(voters, s)
		}
	}
	need := (len(voters) + 1) / 2 // a majority of all voters, less this node
	if need == 0 {
		return nil
	}
	rd, err := bs.n.fsm.blobs.Open(hash)
	if err != nil {
		return err
	}
	results := make(chan error, len(voters))
	var wg sync.WaitGroup
	for _, v := range voters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := bs.push(ctx, string(v.Address), rd, info)
			if err != nil {
				err = fmt.Errorf("%s: %w", v.ID, err)
			}
			results <- err
		}()
	}
	go func() { wg.Wait(); rd.Close() }()
	ok, failed := 0, 0
	var errs []error
	for range voters {
		if err := <-results; err != nil {
			failed++
			errs = append(errs, err)
			bs.n.log.Warn("pushing a model blob to a peer", "blob", hash, "err", err)
		} else {
			ok++
		}
		if ok >= need {
			return nil // the others finish in the background
		}
		if len(voters)-failed < need {
			break
		}
	}
	return fmt.Errorf("coordinator.blobSync.replicate: %d of %d peers hold blob %s, need %d: %w", ok, len(voters), hash, need, errors.Join(errs...))
}

// push sends a blob to the peer at addr, resuming where the peer's copy
// stands, retrying a broken transfer a few times.
func (bs *blobSync) push(ctx context.Context, addr string, rd BlobReader, info *protocol.BlobInfo) error {
	var err error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		var s *protocol.Session
		if s, err = bs.session(ctx, addr); err != nil {
			continue
		}
		if err = s.PushBlob(ctx, &protocol.BlobPut{Blob: *info}, rd, info); err == nil {
			return nil
		}
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code != protocol.CodeBusy {
			return err
		}
		bs.dropSession(addr, s)
	}
	return err
}

// fetch gets blob hash from a peer (the leader first), unless another
// call is already receiving it, in which case it waits for that one.
func (bs *blobSync) fetch(ctx context.Context, hash string) error {
	if !validBlobHash(hash) {
		return fmt.Errorf("coordinator.blobSync.fetch: %w: blob %q", ErrBadEntry, hash)
	}
	for !bs.n.fsm.blobs.Has(hash) {
		done, mine := bs.claim(hash)
		if !mine {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-done:
			}
			continue
		}
		err := bs.fetchFromPeers(ctx, hash)
		bs.release(hash, done)
		return err
	}
	return nil
}

// claim marks hash as being received; mine is false when another call
// already is, and done is closed when that one finishes.
func (bs *blobSync) claim(hash string) (done chan struct{}, mine bool) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if ch, ok := bs.busy[hash]; ok {
		return ch, false
	}
	ch := make(chan struct{})
	bs.busy[hash] = ch
	return ch, true
}

func (bs *blobSync) release(hash string, done chan struct{}) {
	bs.mu.Lock()
	delete(bs.busy, hash)
	if p := bs.progress[hash]; p != nil && p.Done() {
		delete(bs.progress, hash)
	}
	bs.mu.Unlock()
	close(done)
}

func (bs *blobSync) progressOf(hash string) *protocol.BlobProgress {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	p := bs.progress[hash]
	if p == nil {
		p = &protocol.BlobProgress{}
		bs.progress[hash] = p
	}
	return p
}

func (bs *blobSync) fetchFromPeers(ctx context.Context, hash string) error {
	var want protocol.Hash
	if _, err := hex.Decode(want[:], []byte(hash)); err != nil {
		return err
	}
	var addrs []string
	leaderID, leaderAddr := bs.n.rep.leader()
	if leaderAddr != "" && leaderID != bs.n.cfg.NodeID {
		addrs = append(addrs, leaderAddr)
	}
	if f := bs.n.rep.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) != bs.n.cfg.NodeID && string(s.Address) != leaderAddr {
				addrs = append(addrs, string(s.Address))
			}
		}
	}
	w, err := bs.n.fsm.blobs.Create(hash)
	if err != nil {
		return err
	}
	defer w.Close()
	p := bs.progressOf(hash)
	errs := []error{fmt.Errorf("%w: no peer to fetch it from", ErrBlobMissing)}
	for _, addr := range addrs {
		s, err := bs.session(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, blobFetchTimeout)
		err = s.FetchBlob(fctx, &protocol.BlobGet{Hash: want, Offset: p.Offset}, w, p)
		cancel()
		if err == nil && p.Info.Hash != want {
			err = fmt.Errorf("%w: peer sent blob %x for %s", protocol.ErrHashMismatch, p.Info.Hash, hash)
			p.Offset = 0
		}
		if err == nil {
			if err := w.Commit(want); err != nil {
				return err
			}
			bs.n.log.Info("model blob fetched from a peer", "blob", hash, "bytes", p.Info.Size, "peer", addr)
			return nil
		}
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			bs.dropSession(addr, s)
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return fmt.Errorf("coordinator.blobSync.fetch %s: %w", hash, errors.Join(errs...))
}

// session returns a session with the peer at addr (dialed once, reused).
func (bs *blobSync) session(ctx context.Context, addr string) (*protocol.Session, error) {
	bs.mu.Lock()
	s := bs.sessions[addr]
	bs.mu.Unlock()
	if s != nil && s.Err() == nil {
		return s, nil
	}
	s, err := bs.n.dialPeer(ctx, addr)
	if err != nil {
		return nil, err
	}
	bs.mu.Lock()
	if old := bs.sessions[addr]; old != nil && old != s {
		old.Close()
	}
	bs.sessions[addr] = s
	bs.mu.Unlock()
	return s, nil
}

func (bs *blobSync) dropSession(addr string, s *protocol.Session) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.sessions[addr] == s {
		delete(bs.sessions, addr)
		s.Close()
	}
}

func (bs *blobSync) close() {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for addr, s := range bs.sessions {
		s.Close()
		delete(bs.sessions, addr)
	}
}

// dialPeer opens a fedge-peer/1 session with the coordinator at addr from
// this node's UDP port, with the node's certificate.
func (n *Node) dialPeer(ctx context.Context, addr string) (*protocol.Session, error) {
	tc, err := identity.CoordinatorClientConfig(n.creds.cert, n.creds.roots, identity.RevokerFunc(n.revoked), protocol.ALPNPeer)
	if err != nil {
		return nil, err
	}
	s, err := n.ln.Dial(ctx, addr, tc, protocol.ALPNPeer, &protocol.Config{Hello: protocol.Hello{Software: "fedge-coordinator " + n.cfg.NodeID}})
	if err != nil {
		return nil, fmt.Errorf("coordinator: session with peer %s: %w", addr, err)
	}
	return s, nil
}

// serveBlobGet answers a peer's BlobGet from this node's store.
func (bs *blobSync) serveBlobGet(ctx context.Context, req *protocol.BlobGet, b *protocol.BulkStream) error {
	hash := hex.EncodeToString(req.Hash[:])
	rd, err := bs.n.fsm.blobs.Open(hash)
	if err != nil {
		return &protocol.Error{Code: protocol.CodeNotFound, Message: fmt.Sprintf("blob %s is not held here", hash)}
	}
	defer rd.Close()
	info, err := bs.n.downloads.manifest("blob/"+hash, rd, rd.Size())
	if err != nil {
		return err
	}
	if req.Offset > info.Size {
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "offset past the end"}
	}
	return b.ServeBlob(ctx, rd, &info, req.Offset)
}

// serveBlobPut receives a blob the leader pushes into this node's store.
func (bs *blobSync) serveBlobPut(ctx context.Context, req *protocol.BlobPut, b *protocol.BulkStream) error {
	hash := hex.EncodeToString(req.Blob.Hash[:])
	if bs.n.fsm.blobs.Has(hash) {
		// Already held: nothing to send.
		if err := b.Send(&protocol.BlobResume{Offset: req.Blob.Size}); err != nil {
			return err
		}
		return b.Send(&protocol.Ack{})
	}
	done, mine := bs.claim(hash)
	if !mine {
		return &protocol.Error{Code: protocol.CodeBusy, Message: fmt.Sprintf("blob %s is being received", hash)}
	}
	defer bs.release(hash, done)
	w, err := bs.n.fsm.blobs.Create(hash)
	if err != nil {
		return err
	}
	defer w.Close()
	p := bs.progressOf(hash)
	if !p.Begin(req.Blob) && w.Written() > 0 {
		// A copy a previous process left: keep the chunks that match.
		if err := p.Restore(w, req.Blob, uint64(w.Written())); err != nil {
			return err
		}
	}
	if err := b.AcceptBlob(ctx, w, p); err != nil {
		return err
	}
	return w.Commit(req.Blob.Hash)
}
