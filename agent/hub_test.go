package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
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
	"github.com/fedge/fedge/protocol/encoding"
	"github.com/fedge/fedge/protocol/stagedriver"
	"github.com/fedge/fedge/tensor"
)

// hub is the test's coordinator side of one round: it runs the real
// SecAgg+ server steps through stagedriver.SecAgg, the driver the
// coordinator's round engine runs, closing each stage once every agent
// still in the round has spoken. It also serves model downloads, and
// keeps plain (non-secure) updates when no SecAgg+ round runs.
type hub struct {
	mu      sync.Mutex
	models  map[uint64][]byte
	round   *stagedriver.Round // nil until start: plain updates
	done    chan struct{}      // closed when the SecAgg+ round ended
	result  *secagg.Result
	err     error
	plain   map[string][]byte // plain updates by agent
	uploads map[string][]byte // masked inputs sent as bulk blobs, by agent
	sum     stagedriver.MaskedSum
	// dropAt makes an agent's message of this type fail, as if it had
	// vanished at that stage.
	dropAt map[string]protocol.MsgType
}

// hubStageTime bounds each stage of a hub's round: the stages close as
// soon as every agent still in the round has spoken, and a test ends its
// round by its cleanup long before.
const hubStageTime = 2 * time.Minute

func newHub(models map[uint64][]byte) *hub {
	return &hub{models: models, plain: map[string][]byte{}, uploads: map[string][]byte{}, dropAt: map[string]protocol.MsgType{}}
}

// start runs a SecAgg+ round for the agents (participant IDs 1..n in
// agent order) until the end of the test, and returns its encoded config
// once the first stage takes messages.
func (h *hub) start(t *testing.T, agents []*Agent, dim int, q *secagg.Quantizer) []byte {
	t.Helper()
	cfg := &secagg.Config{RoundID: []byte(fmt.Sprintf("test/%d", time.Now().UnixNano())), Dim: dim, Quantizer: q}
	ids := map[string]uint32{}
	for i, a := range agents {
		id := uint32(i + 1)
		ids[a.ID()] = id
		cfg.Participants = append(cfg.Participants, secagg.Participant{ID: id, SigningKey: a.ident.key.Public().(ed25519.PublicKey)})
	}
	_, _ = rand.Read(cfg.GraphSeed[:])
	b, err := cfg.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{})
	d := &stagedriver.SecAgg{
		Round: &stagedriver.Round{}, Config: cfg, IDs: ids, Uploads: hubUploads{h},
		Start: func() { close(opened) }, FirstBy: time.Now().Add(hubStageTime), StageTime: hubStageTime,
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.mu.Lock()
	h.round, h.done = d.Round, make(chan struct{})
	h.mu.Unlock()
	go func() {
		res, err := d.Run(ctx)
		h.mu.Lock()
		h.result, h.err = res, err
		h.mu.Unlock()
		close(h.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	select {
	case <-opened:
	case <-h.done:
		t.Fatalf("the SecAgg+ round ended before it began: %v", h.err)
	}
	return b
}

// wait waits until the SecAgg+ round ended, so h.result and h.err hold its
// outcome.
func (h *hub) wait(t *testing.T) {
	t.Helper()
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the SecAgg+ round did not end")
	}
}

// deliver is the coordinator's handling of one agent message.
func (h *hub) deliver(ctx context.Context, agent string, m protocol.Message) (protocol.Message, error) {
	h.mu.Lock()
	r := h.round
	drop := h.dropAt[agent] == m.Type()
	if pm, ok := m.(*protocol.MaskedInput); ok && r == nil && !drop {
		h.plain[agent] = bytes.Clone(pm.Payload)
		h.mu.Unlock()
		return &protocol.Ack{}, nil
	}
	h.mu.Unlock()
	if r == nil {
		return nil, &protocol.Error{Code: protocol.CodeRoundClosed, Message: "no round runs"}
	}
	if drop {
		r.Withdraw(agent)
		return nil, &protocol.Error{Code: protocol.CodeRoundClosed, Message: "dropped by the test"}
	}
	if j, ok := m.(*protocol.RoundJoin); ok && !j.Accept {
		// The agent withdraws mid-round: no stage waits for it.
		r.Withdraw(agent)
		return &protocol.Ack{}, nil
	}
	reply, err := r.Deliver(ctx, agent, m, nil)
	if err != nil {
		return nil, stagedriver.WireError(err)
	}
	return reply, nil
}

// hubUploads hands the masked-input stage the masked inputs the twins
// received as bulk blobs.
type hubUploads struct{ h *hub }

func (u hubUploads) Expect(_ uint64, sum stagedriver.MaskedSum) {
	u.h.mu.Lock()
	u.h.sum = sum
	u.h.mu.Unlock()
}

func (u hubUploads) Take(agent string) error {
	u.h.mu.Lock()
	b, ok := u.h.uploads[agent]
	sum := u.h.sum
	u.h.mu.Unlock()
	if !ok || sum == nil {
		return fmt.Errorf("hub: no masked upload from %s", agent)
	}
	w, err := sum.Stream(agent, false)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Finish()
}

func (u hubUploads) End() error { return nil }

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
	var base []byte
	for v, b := range tw.hub.models {
		if m, err := tensor.UnmarshalModel(b); err == nil && !mr.HaveBase.IsZero() && m.Hash() == mr.HaveBase && v != mr.Version {
			base = b
		}
	}
	tw.hub.mu.Unlock()
	if !ok {
		return &protocol.Error{Code: protocol.CodeNotFound, Message: "no such model"}
	}
	if base != nil {
		// As the coordinator does: a lossless delta against a held base
		// of the same architecture, else the model file.
		if d, ok := losslessDelta(blob, base); ok {
			blob = d
		}
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

// losslessDelta encodes the model file blob against the model file base
// when both hold models of one spec (as the coordinator does: the agent
// rebuilds the model on the base's spec); ok is false otherwise.
func losslessDelta(blob, base []byte) ([]byte, bool) {
	m, err1 := tensor.UnmarshalModel(blob)
	b, err2 := tensor.UnmarshalModel(base)
	if err1 != nil || err2 != nil || len(m.Params) != len(b.Params) {
		return nil, false
	}
	ms, err1 := json.Marshal(m.Spec)
	bs, err2 := json.Marshal(b.Spec)
	if err1 != nil || err2 != nil || !bytes.Equal(ms, bs) {
		return nil, false
	}
	d, err := encoding.Encode(m.Params, b.Params, encoding.LosslessDelta())
	return d, err == nil
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
