package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// hub is the test's coordinator side of one round: it drives a real
// secagg.Server with the stage messages the agents send, closing a stage
// once every agent still in the round has spoken, and answers each with
// its relay, as coordinator.Node does. It also serves model downloads.
type hub struct {
	mu      sync.Mutex
	models  map[uint64][]byte
	srv     *secagg.Server
	ids     map[string]uint32 // agent -> participant ID
	alive   map[string]bool   // agents still expected at this stage
	waiting map[string]chan hubReply
	stage   protocol.MsgType
	result  *secagg.Result
	err     error
	plain   map[string][]byte // plain updates by agent
	uploads map[string][]byte // masked inputs sent as bulk blobs, by agent
	// dropAt makes an agent's message of this type fail, as if it had
	// vanished at that stage.
	dropAt map[string]protocol.MsgType
}

type hubReply struct {
	m   protocol.Message
	err error
}

func newHub(models map[uint64][]byte) *hub {
	return &hub{models: models, plain: map[string][]byte{}, uploads: map[string][]byte{}, dropAt: map[string]protocol.MsgType{}}
}

// start prepares a SecAgg+ round for the agents (participant IDs 1..n in
// agent order) and returns its encoded config.
func (h *hub) start(t *testing.T, agents []*Agent, dim int, q *secagg.Quantizer) []byte {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg := &secagg.Config{RoundID: []byte(fmt.Sprintf("test/%d", time.Now().UnixNano())), Dim: dim, Quantizer: q}
	h.ids, h.alive, h.waiting = map[string]uint32{}, map[string]bool{}, map[string]chan hubReply{}
	for i, a := range agents {
		id := uint32(i + 1)
		h.ids[a.ID()] = id
		h.alive[a.ID()] = true
		cfg.Participants = append(cfg.Participants, secagg.Participant{ID: id, SigningKey: a.ident.key.Public().(ed25519.PublicKey)})
	}
	_, _ = rand.Read(cfg.GraphSeed[:])
	srv, err := secagg.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv, h.stage = srv, protocol.TypeAdvertiseKeys
	b, err := cfg.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deliver is the coordinator's handling of one agent message.
func (h *hub) deliver(ctx context.Context, agent string, m protocol.Message) (protocol.Message, error) {
	h.mu.Lock()
	if t, ok := h.dropAt[agent]; ok && t == m.Type() {
		delete(h.alive, agent)
		h.maybeClose()
		h.mu.Unlock()
		return nil, &protocol.Error{Code: protocol.CodeRoundClosed, Message: "dropped by the test"}
	}
	if pm, ok := m.(*protocol.MaskedInput); ok && h.srv == nil {
		h.plain[agent] = bytes.Clone(pm.Payload)
		h.mu.Unlock()
		return &protocol.Ack{}, nil
	}
	if h.srv == nil || m.Type() != h.stage || !h.alive[agent] {
		h.mu.Unlock()
		return nil, &protocol.Error{Code: protocol.CodeRoundClosed, Message: "not expected at this stage"}
	}
	if mi, ok := m.(*protocol.MaskedInput); ok && len(mi.Payload) == 0 {
		// The masked vector went ahead as a bulk upload.
		m = &protocol.MaskedInput{RoundID: mi.RoundID, Payload: h.uploads[agent]}
	}
	if err := h.add(m); err != nil {
		h.mu.Unlock()
		return nil, &protocol.Error{Code: protocol.CodeBadRequest, Message: err.Error()}
	}
	ch := make(chan hubReply, 1)
	h.waiting[agent] = ch
	h.maybeClose()
	h.mu.Unlock()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *hub) add(m protocol.Message) error {
	switch v := m.(type) {
	case *protocol.AdvertiseKeys:
		var x secagg.AdvertiseKeys
		if err := x.UnmarshalBinary(v.Payload); err != nil {
			return err
		}
		return h.srv.AddAdvertiseKeys(&x)
	case *protocol.ShareKeys:
		var x secagg.ShareKeys
		if err := x.UnmarshalBinary(v.Payload); err != nil {
			return err
		}
		return h.srv.AddShareKeys(&x)
	case *protocol.MaskedInput:
		var x secagg.MaskedInput
		if err := x.UnmarshalBinary(v.Payload); err != nil {
			return err
		}
		return h.srv.AddMaskedInput(&x)
	case *protocol.ConsistencyCheck:
		var x secagg.ConsistencyCheck
		if err := x.UnmarshalBinary(v.Payload); err != nil {
			return err
		}
		return h.srv.AddConsistencyCheck(&x)
	case *protocol.Unmask:
		var x secagg.Unmask
		if err := x.UnmarshalBinary(v.Payload); err != nil {
			return err
		}
		return h.srv.AddUnmask(&x)
	}
	return fmt.Errorf("unexpected %v", m.Type())
}

// maybeClose ends the stage once every live agent has spoken, and
// releases the waiters with their relays. Called with h.mu held.
func (h *hub) maybeClose() {
	if len(h.waiting) < len(h.alive) || len(h.alive) == 0 {
		return
	}
	var next []uint32
	var err error
	relay := func(id uint32) (protocol.Message, error) { return nil, errors.New("no relay") }
	switch h.stage {
	case protocol.TypeAdvertiseKeys:
		next, err = h.srv.EndAdvertiseKeys()
		relay = func(id uint32) (protocol.Message, error) {
			kl, err := h.srv.KeyList(id)
			return marshalRelay(kl, err, func(p []byte) protocol.Message { return &protocol.AdvertiseKeysRelay{Payload: p} })
		}
		h.stage = protocol.TypeShareKeys
	case protocol.TypeShareKeys:
		next, err = h.srv.EndShareKeys()
		relay = func(id uint32) (protocol.Message, error) {
			sl, err := h.srv.ShareList(id)
			return marshalRelay(sl, err, func(p []byte) protocol.Message { return &protocol.ShareKeysRelay{Payload: p} })
		}
		h.stage = protocol.TypeMaskedInput
	case protocol.TypeMaskedInput:
		next, err = h.srv.EndMaskedInput()
		relay = func(uint32) (protocol.Message, error) {
			sv, err := h.srv.SurvivorList()
			return marshalRelay(sv, err, func(p []byte) protocol.Message { return &protocol.MaskedInputRelay{Payload: p} })
		}
		h.stage = protocol.TypeConsistencyCheck
	case protocol.TypeConsistencyCheck:
		next, err = h.srv.EndConsistencyCheck()
		relay = func(id uint32) (protocol.Message, error) {
			sg, err := h.srv.SignatureList(id)
			return marshalRelay(sg, err, func(p []byte) protocol.Message { return &protocol.ConsistencyCheckRelay{Payload: p} })
		}
		h.stage = protocol.TypeUnmask
	case protocol.TypeUnmask:
		h.result, err = h.srv.Finish()
		for id := range h.waiting {
			next = append(next, h.ids[id])
		}
		relay = func(uint32) (protocol.Message, error) { return &protocol.UnmaskRelay{}, nil }
		h.stage = 0
	}
	if err != nil {
		h.err = err
	}
	goOn := map[uint32]bool{}
	for _, id := range next {
		goOn[id] = true
	}
	for agent, ch := range h.waiting {
		id := h.ids[agent]
		if err != nil || !goOn[id] {
			ch <- hubReply{err: &protocol.Error{Code: protocol.CodeRoundClosed, Message: "dropped"}}
			delete(h.alive, agent)
			continue
		}
		m, rerr := relay(id)
		ch <- hubReply{m, rerr}
	}
	h.waiting = map[string]chan hubReply{}
}

func marshalRelay(m interface{ MarshalBinary() ([]byte, error) }, err error, wrap func([]byte) protocol.Message) (protocol.Message, error) {
	if err != nil {
		return nil, err
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return wrap(b), nil
}

// twin is an in-memory twin of an agent's session with the hub. Every
// message goes through the real frame codec both ways, and the twin keeps
// every frame the agent sent, so a test can inspect each byte that would
// have left the host.
type twin struct {
	agent string
	hub   *hub
	mu    sync.Mutex
	sent  [][]byte
}

var _ conn = (*twin)(nil)

func (tw *twin) record(m protocol.Message, flags protocol.Flags) ([]byte, error) {
	b, err := protocol.EncodeFrame(nil, m, flags, 1, protocol.Limits{})
	if err != nil {
		return nil, err
	}
	tw.mu.Lock()
	tw.sent = append(tw.sent, b)
	tw.mu.Unlock()
	return b, nil
}

func (tw *twin) Request(ctx context.Context, m protocol.Message) (protocol.Message, error) {
	b, err := tw.record(m, protocol.FlagRequest)
	if err != nil {
		return nil, err
	}
	_, got, err := protocol.DecodeMessage(b, protocol.Limits{})
	if err != nil {
		return nil, err
	}
	reply, err := tw.hub.deliver(ctx, tw.agent, got)
	if err != nil {
		return nil, err
	}
	rb, err := protocol.EncodeFrame(nil, reply, protocol.FlagResponse, 1, protocol.Limits{})
	if err != nil {
		return nil, err
	}
	_, out, err := protocol.DecodeMessage(rb, protocol.Limits{})
	return out, err
}

// PushBlob receives a masked upload over a bulk stream on an in-memory
// pipe, with the protocol's manifest, chunk hashing and resume, and keeps
// the bytes among what the agent sent.
func (tw *twin) PushBlob(ctx context.Context, header protocol.Message, src io.ReaderAt, info *protocol.BlobInfo) error {
	if _, err := tw.record(header, 0); err != nil {
		return err
	}
	up, ok := header.(*protocol.MaskedUpdate)
	if !ok {
		return &protocol.Error{Code: protocol.CodeUnsupported, Message: header.Type().String()}
	}
	c1, c2 := net.Pipe()
	server, client := protocol.NewBulkStream(c1, protocol.Limits{}), protocol.NewBulkStream(c2, protocol.Limits{})
	defer client.Abort()
	got := make(chan []byte, 1)
	go func() {
		defer server.Close()
		var p protocol.BlobProgress
		p.Begin(up.Blob)
		buf := &protocol.MemBlob{Limit: int64(up.Blob.Size)}
		if err := server.AcceptBlob(ctx, buf, &p); err != nil {
			got <- nil
			return
		}
		got <- buf.Bytes()
	}()
	m, err := client.Recv()
	if err != nil {
		return err
	}
	resume, ok := m.(*protocol.BlobResume)
	if !ok {
		return fmt.Errorf("twin: got %v, want BlobResume", m.Type())
	}
	if err := client.SendBlob(ctx, src, info, resume.Offset); err != nil {
		return err
	}
	if _, err := client.Recv(); err != nil {
		return err
	}
	b := <-got
	if b == nil {
		return errors.New("twin: upload failed")
	}
	tw.mu.Lock()
	tw.sent = append(tw.sent, b)
	tw.mu.Unlock()
	tw.hub.mu.Lock()
	tw.hub.uploads[tw.agent] = b
	tw.hub.mu.Unlock()
	return nil
}

// FetchBlob serves a model over a bulk stream on an in-memory pipe, with
// the protocol's own manifest, chunk hashing and resume.
func (tw *twin) FetchBlob(ctx context.Context, req protocol.Message, dst io.WriterAt, p *protocol.BlobProgress) error {
	if _, err := tw.record(req, 0); err != nil {
		return err
	}
	mr := req.(*protocol.ModelRequest)
	tw.hub.mu.Lock()
	blob, ok := tw.hub.models[mr.Version]
	tw.hub.mu.Unlock()
	if !ok {
		return &protocol.Error{Code: protocol.CodeNotFound, Message: "no such model"}
	}
	c1, c2 := net.Pipe()
	server, client := protocol.NewBulkStream(c1, protocol.Limits{}), protocol.NewBulkStream(c2, protocol.Limits{})
	defer client.Abort()
	go func() {
		defer server.Close()
		info, err := protocol.NewBlobInfo(fmt.Sprintf("model/%d", mr.Version), bytes.NewReader(blob), int64(len(blob)), 4096)
		if err != nil {
			server.Abort()
			return
		}
		_ = server.ServeBlob(ctx, bytes.NewReader(blob), &info, mr.Offset)
	}()
	m, err := client.Recv()
	if err != nil {
		return err
	}
	info, ok := m.(*protocol.BlobInfo)
	if !ok {
		return fmt.Errorf("got %v, want BlobInfo", m.Type())
	}
	p.Begin(*info)
	return client.RecvBlob(ctx, dst, p)
}

func (tw *twin) frames() [][]byte {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([][]byte(nil), tw.sent...)
}

// testLogger logs to stderr when FEDGE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("FEDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// roundAgent builds an enrolled-looking agent around a store, a key and a
// dataset, ready to serve round messages (no network).
func roundAgent(t *testing.T, ds *tensor.Dataset, heldOut float64) *Agent {
	t.Helper()
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { st.close() })
	key, err := identity.NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := identity.NewAgentID(rand.Reader)
	n := int(float64(ds.Len()) * heldOut)
	idx := func(lo, hi int) []int {
		out := make([]int, 0, hi-lo)
		for i := lo; i < hi; i++ {
			out = append(out, i)
		}
		return out
	}
	a := &Agent{
		log: testLogger().With("agent", id), st: st, m: newMetrics(), now: time.Now, win: window{-1, -1}, grace: 200 * time.Millisecond,
		data:  &localData{train: ds.Subset(idx(n, ds.Len())), heldOut: ds.Subset(idx(0, n))},
		ident: identityRecord{key: key, id: id},
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a.runCtx = ctx
	return a
}

// waitIdle waits until the agent's round goroutines ended.
func waitIdle(t *testing.T, agents ...*Agent) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		for _, a := range agents {
			a.bg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("rounds did not finish")
	}
}

// synthData returns a small separable classification problem: class c's
// examples cluster around a centroid; agent k's data is drawn with seed k.
func synthData(n, features, classes int, seed uint64) *tensor.Dataset {
	ds := &tensor.Dataset{X: make([]float32, n*features), Y: make([]int32, n), Shape: []int{features}, Classes: classes}
	s := seed*2654435761 + 1
	next := func() float32 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		return float32(s%10000)/10000 - 0.5
	}
	for i := range n {
		c := (i + int(seed)) % classes
		ds.Y[i] = int32(c)
		for j := range features {
			center := float32(0)
			if j%classes == c {
				center = 2
			}
			ds.X[i*features+j] = center + next()
		}
	}
	return ds
}

// sortedIDs returns agent IDs in order (for stable test output).
func sortedIDs(agents []*Agent) []string {
	ids := make([]string, len(agents))
	for i, a := range agents {
		ids[i] = a.ID()
	}
	sort.Strings(ids)
	return ids
}
