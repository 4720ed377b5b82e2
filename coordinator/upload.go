package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/stagedriver"
)

// uploads receives the masked inputs that agents of the active round send
// as bulk blobs (protocol.MaskedUpdate) and adds each verified chunk into
// the round's running sum as it lands (streaming aggregation): the node
// holds one sum and, per upload, one chunk in flight, never an agent's
// whole vector. Each upload is also spooled to an unlinked temporary file
// (disk, not memory), so that what an upload added can be taken out
// again: when its transfer restarts from an earlier offset (the whole
// blob failed its hash) and when the agent drops out before its
// MaskedInput message takes the upload (Close). A broken upload keeps its
// verified prefix, so the agent's retry resumes, and no chunk is added
// twice.
type uploads struct {
	mu     sync.Mutex
	limit  uint64 // largest masked input of the round; 0 until the stage opens
	sum    stagedriver.MaskedSum
	by     map[string]*upload
	closed bool
	// dir is where uploads are spooled; "" is the system's temporary
	// directory.
	dir string
}

type upload struct {
	agent string
	p     protocol.BlobProgress
	busy  bool // a transfer is running (guarded by uploads.mu)
	done  bool // the whole blob arrived and matched (guarded by uploads.mu)

	mu     sync.Mutex // guards what follows; held while a chunk is added
	spool  *os.File
	add    stagedriver.MaskedWriter
	added  int64 // bytes added into the sum, a prefix of the spool
	taken  bool  // Take finished it: its input counts
	closed bool  // the stage closed: nothing more is added
}

// errUploadClosed refuses chunks that arrive after the stage closed.
var errUploadClosed = errors.New("coordinator: the masked-input stage has closed")

// expect opens the round to uploads of masked inputs of at most limit
// bytes, added into sum.
func (us *uploads) expect(limit uint64, sum stagedriver.MaskedSum) {
	us.mu.Lock()
	old := us.by
	us.limit, us.sum, us.by, us.closed = limit, sum, map[string]*upload{}, false
	us.mu.Unlock()
	for _, u := range old {
		u.release()
	}
}

// accept receives agent's upload on bulk stream b;
// member reports whether the agent is in the round; it is called once the
// masked-input stage is open (the round's participants are fixed by then).
func (us *uploads) accept(ctx context.Context, agent string, m *protocol.MaskedUpdate, b *protocol.BulkStream, member func() bool) error {
	us.mu.Lock()
	if us.by == nil || us.closed {
		us.mu.Unlock()
		return &protocol.Error{Code: protocol.CodeRoundClosed, Message: fmt.Sprintf("round %d takes no masked upload now", m.RoundID)}
	}
	if !member() {
		us.mu.Unlock()
		return &protocol.Error{Code: protocol.CodeUnauthorized, Message: fmt.Sprintf("agent %s is not in round %d", agent, m.RoundID)}
	}
	if m.Blob.Size > us.limit || m.Elements != m.Blob.Size {
		us.mu.Unlock()
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("masked upload of %d bytes, the round's masked input has at most %d", m.Blob.Size, us.limit)}
	}
	u := us.by[agent]
	if u != nil && u.busy {
		us.mu.Unlock()
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "a masked upload of this agent is already running"}
	}
	if u != nil && u.done {
		us.mu.Unlock()
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "this agent's masked upload already arrived"}
	}
	if u == nil {
		spool, err := os.CreateTemp(us.dir, "fedge-masked-*")
		if err != nil {
			us.mu.Unlock()
			return fmt.Errorf("coordinator.uploads.accept: %w", err)
		}
		os.Remove(spool.Name()) // the open file is the only name it needs
		u = &upload{agent: agent, spool: spool}
		us.by[agent] = u
	}
	u.busy = true
	sum := us.sum
	us.mu.Unlock()

	err := u.receive(ctx, sum, m.Blob, b)
	us.mu.Lock()
	u.busy, u.done = false, err == nil
	us.mu.Unlock()
	return err
}

// receive runs one transfer of u: it resumes at the verified prefix,
// first taking out of the sum whatever lies past it.
func (u *upload) receive(ctx context.Context, sum stagedriver.MaskedSum, info protocol.BlobInfo, b *protocol.BulkStream) error {
	u.mu.Lock()
	if !u.p.Begin(info) {
		u.p.Offset = 0 // a new blob: its bytes replace the old ones
	}
	err := u.rewind(sum, int64(u.p.Offset))
	u.mu.Unlock()
	if err != nil {
		return err
	}
	return b.AcceptBlob(ctx, &uploadSink{u: u, sum: sum}, &u.p)
}

// rewind makes the sum hold exactly the first to bytes of the upload:
// it subtracts everything added, then adds the prefix again from the
// spool. Called with u.mu held.
func (u *upload) rewind(sum stagedriver.MaskedSum, to int64) error {
	if u.closed {
		return errUploadClosed
	}
	if u.add != nil && u.added == to {
		return nil
	}
	if u.added > 0 {
		if err := u.feed(sum, true, u.added); err != nil {
			return err
		}
	}
	u.added = 0
	add, err := sum.Stream(u.agent, false)
	if err != nil {
		return err
	}
	u.add = add
	if to > 0 {
		if _, err := io.Copy(add, io.NewSectionReader(u.spool, 0, to)); err != nil {
			return fmt.Errorf("coordinator.upload: re-adding the verified prefix: %w", err)
		}
	}
	u.added = to
	return nil
}

// feed streams the spool's first n bytes into a new stream of sum.
func (u *upload) feed(sum stagedriver.MaskedSum, undo bool, n int64) error {
	w, err := sum.Stream(u.agent, undo)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, io.NewSectionReader(u.spool, 0, n)); err != nil {
		return fmt.Errorf("coordinator.upload: taking an upload out of the sum: %w", err)
	}
	return nil
}

// release closes the spool.
func (u *upload) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	if u.spool != nil {
		u.spool.Close()
		u.spool = nil
	}
}

// uploadSink is where a transfer writes its verified chunks, in order:
// to the spool, then into the sum.
type uploadSink struct {
	u   *upload
	sum stagedriver.MaskedSum
}

func (s *uploadSink) WriteAt(p []byte, off int64) (int, error) {
	u := s.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return 0, errUploadClosed
	}
	if off != u.added {
		return 0, fmt.Errorf("coordinator.upload: %w: chunk at %d, %d bytes added", protocol.ErrMalformed, off, u.added)
	}
	if _, err := u.spool.WriteAt(p, off); err != nil {
		return 0, fmt.Errorf("coordinator.upload: spool: %w", err)
	}
	if _, err := u.add.Write(p); err != nil {
		// The stream refuses the input (wrong sender, size, stage):
		// nothing of this chunk was added.
		return 0, err
	}
	u.added += int64(len(p))
	return len(p), nil
}

// take ends agent's completed upload: its input counts from now on.
func (us *uploads) take(agent string) error {
	us.mu.Lock()
	u := us.by[agent]
	ok := u != nil && u.done && !u.busy && !us.closed
	us.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: masked input of agent %s announced as uploaded, but no complete upload arrived", protocol.ErrMalformed, agent)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.taken || u.closed {
		return fmt.Errorf("%w: masked upload of agent %s taken twice", protocol.ErrMalformed, agent)
	}
	if err := u.add.Finish(); err != nil {
		return err // Close takes its bytes out of the sum
	}
	u.taken = true
	return nil
}

// close ends the stage's uploads: the bytes of every upload not taken
// leave the sum, and no transfer adds more. An error means the sum could
// not be restored (the spool failed): the round must fail.
func (us *uploads) close() error {
	us.mu.Lock()
	us.closed = true
	sum, by := us.sum, us.by
	us.mu.Unlock()
	var errs []error
	for _, u := range by {
		u.mu.Lock()
		if !u.taken && u.added > 0 && !u.closed {
			if err := u.feed(sum, true, u.added); err != nil {
				errs = append(errs, fmt.Errorf("agent %s: %w", u.agent, err))
			}
			u.added = 0
		}
		u.closed = true
		u.mu.Unlock()
	}
	return errors.Join(errs...)
}

// size is the number of bytes of agent's upload (0 if none).
func (us *uploads) size(agent string) int64 {
	us.mu.Lock()
	defer us.mu.Unlock()
	if u := us.by[agent]; u != nil {
		return int64(u.p.Info.Size)
	}
	return 0
}

// releaseAll closes every spool (the round ended).
func (us *uploads) releaseAll() {
	us.mu.Lock()
	by := us.by
	us.by, us.closed = nil, true
	us.mu.Unlock()
	for _, u := range by {
		u.release()
	}
}
