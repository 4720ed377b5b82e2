package coordinator

import (
	"context"
	"fmt"
	"sync"

	"github.com/fedge/fedge/protocol"
)

// uploads holds the masked inputs that agents of the active round sent as
// bulk blobs (protocol.MaskedUpdate), until their MaskedInput message with
// an empty payload hands them to the masked-input stage. A broken upload
// keeps its verified prefix, so the agent's retry resumes.
type uploads struct {
	mu    sync.Mutex
	limit uint64 // largest masked input of the round; 0 until the stage opens
	by    map[string]*upload
}

type upload struct {
	p    protocol.BlobProgress
	buf  protocol.MemBlob // bounded by the announced size
	busy bool             // a transfer is running (guarded by uploads.mu)
	done bool
}

// expect opens the round to uploads of masked inputs of at most limit
// bytes.
func (us *uploads) expect(limit uint64) {
	us.mu.Lock()
	us.limit, us.by = limit, map[string]*upload{}
	us.mu.Unlock()
}

// accept receives agent's upload on bulk stream b;
// member reports whether the agent is in the round; it is called once the
// masked-input stage is open (the round's participants are fixed by then).
func (us *uploads) accept(ctx context.Context, agent string, m *protocol.MaskedUpdate, b *protocol.BulkStream, member func() bool) error {
	us.mu.Lock()
	if us.by == nil {
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
	if u == nil || u.done {
		u = &upload{}
		us.by[agent] = u
	}
	if u.busy {
		us.mu.Unlock()
		return &protocol.Error{Code: protocol.CodeBadRequest, Message: "a masked upload of this agent is already running"}
	}
	u.busy = true
	us.mu.Unlock()
	if !u.p.Begin(m.Blob) {
		u.buf = protocol.MemBlob{Limit: int64(m.Blob.Size)}
	}
	err := b.AcceptBlob(ctx, &u.buf, &u.p)
	us.mu.Lock()
	u.busy, u.done = false, err == nil
	us.mu.Unlock()
	return err
}

// take returns agent's completed upload and forgets it.
func (us *uploads) take(agent string) ([]byte, error) {
	us.mu.Lock()
	defer us.mu.Unlock()
	u := us.by[agent]
	if u == nil || !u.done || u.busy {
		return nil, fmt.Errorf("%w: masked input of agent %s announced as uploaded, but no complete upload arrived", protocol.ErrMalformed, agent)
	}
	delete(us.by, agent)
	return u.buf.Bytes(), nil
}
