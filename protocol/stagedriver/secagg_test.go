package stagedriver_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/protocol/stagedriver"
)

// memUploads is an in-memory stagedriver.Uploads: an agent's upload is
// added into the sum in 100-byte chunks when its MaskedInput takes it.
type memUploads struct {
	mu    sync.Mutex
	limit uint64
	sum   stagedriver.MaskedSum
	by    map[string][]byte
	ended bool
}

func (u *memUploads) Expect(limit uint64, sum stagedriver.MaskedSum) {
	u.mu.Lock()
	u.limit, u.sum = limit, sum
	u.mu.Unlock()
}

func (u *memUploads) Take(agent string) error {
	u.mu.Lock()
	b, ok := u.by[agent]
	sum := u.sum
	u.mu.Unlock()
	if !ok || sum == nil {
		return fmt.Errorf("no upload from %s", agent)
	}
	w, err := sum.Stream(agent, false)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		n := min(100, len(b))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return w.Finish()
}

func (u *memUploads) End() error {
	u.mu.Lock()
	u.ended = true
	u.mu.Unlock()
	return nil
}

// saClient plays one agent's five SecAgg+ stages against a Round.
type saClient struct {
	name  string
	id    uint32
	c     *secagg.Client
	x     []uint32
	round *stagedriver.Round
	up    *memUploads
	// forge makes the first advertisement claim participant forge.
	forge *secagg.Client
	// leaveAfterShare makes the agent leave the round instead of sending
	// its masked input.
	leaveAfterShare bool
	// upload sends the masked input ahead as a bulk blob.
	upload bool
}

type marshaler interface{ MarshalBinary() ([]byte, error) }

// send marshals the client's stage message m (unless making it failed
// with err), delivers it wrapped by wrap, and decodes the relay, which
// must be of type want, into dst (nil for the unmask stage's empty relay).
func (a *saClient) send(ctx context.Context, m marshaler, err error, wrap func([]byte) protocol.Message,
	want protocol.MsgType, dst interface{ UnmarshalBinary([]byte) error }) error {
	if err != nil {
		return err
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	r, err := a.round.Deliver(ctx, a.name, wrap(b), nil)
	if err != nil {
		return err
	}
	payload, _ := protocol.StagePayload(r)
	if r.Type() != want {
		return fmt.Errorf("%s: got %s, want %s", a.name, r.Type(), want)
	}
	if dst == nil {
		return nil
	}
	return dst.UnmarshalBinary(payload)
}

func (a *saClient) run(ctx context.Context) error {
	if a.forge != nil {
		adv, _ := a.forge.AdvertiseKeys()
		b, _ := adv.MarshalBinary()
		if _, err := a.round.Deliver(ctx, a.name, &protocol.AdvertiseKeys{RoundID: 7, Payload: b}, nil); !errors.Is(err, secagg.ErrForged) {
			return fmt.Errorf("forged advertisement: %v, want ErrForged", err)
		}
	}
	kl, sl := new(secagg.KeyList), new(secagg.ShareList)
	adv, err := a.c.AdvertiseKeys()
	if err := a.send(ctx, adv, err, func(b []byte) protocol.Message { return &protocol.AdvertiseKeys{RoundID: 7, Payload: b} },
		protocol.TypeAdvertiseKeysRelay, kl); err != nil {
		return err
	}
	sk, err := a.c.ShareKeys(kl)
	if err := a.send(ctx, sk, err, func(b []byte) protocol.Message { return &protocol.ShareKeys{RoundID: 7, Payload: b} },
		protocol.TypeShareKeysRelay, sl); err != nil {
		return err
	}
	if a.leaveAfterShare {
		if !a.round.Withdraw(a.name) {
			return errors.New("the masked-input stage did not wait for the leaving agent")
		}
		return nil
	}
	sv, sg := new(secagg.SurvivorList), new(secagg.SignatureList)
	mi, err := a.c.MaskedInput(sl, a.x)
	if err := a.send(ctx, mi, err, func(b []byte) protocol.Message {
		if a.upload {
			a.up.mu.Lock()
			a.up.by[a.name] = b
			a.up.mu.Unlock()
			b = nil
		}
		return &protocol.MaskedInput{RoundID: 7, Payload: b}
	}, protocol.TypeMaskedInputRelay, sv); err != nil {
		return err
	}
	cc, err := a.c.ConsistencyCheck(sv)
	if err := a.send(ctx, cc, err, func(b []byte) protocol.Message { return &protocol.ConsistencyCheck{RoundID: 7, Payload: b} },
		protocol.TypeConsistencyCheckRelay, sg); err != nil {
		return err
	}
	um, err := a.c.Unmask(sg)
	return a.send(ctx, um, err, func(b []byte) protocol.Message { return &protocol.Unmask{RoundID: 7, Payload: b} },
		protocol.TypeUnmaskRelay, nil)
}

// TestSecAggRound runs five agents through the driver's five stages: one
// first forges another participant's advertisement (rejected, it stays
// expected), one sends its masked input ahead as an upload, one leaves
// after sharing its keys. The sum is exactly the four survivors' inputs,
// and the stage reports say who each stage waited for.
func TestSecAggRound(t *testing.T) {
	const n, dim = 5, 6
	cfg := &secagg.Config{RoundID: []byte("stagedriver test"), Dim: dim}
	ids := map[string]uint32{}
	keys := map[uint32]ed25519.PrivateKey{}
	for i := range n {
		id := uint32(i + 1)
		keys[id] = ed25519.NewKeyFromSeed(append(make([]byte, 31), byte(id)))
		ids[fmt.Sprintf("a%d", id)] = id
		cfg.Participants = append(cfg.Participants, secagg.Participant{ID: id, SigningKey: keys[id].Public().(ed25519.PublicKey)})
	}
	round := &stagedriver.Round{}
	up := &memUploads{by: map[string][]byte{}}
	want := make([]uint32, dim)
	var agents []*saClient
	for name, id := range ids {
		c, err := secagg.NewClient(cfg, id, keys[id], nil)
		if err != nil {
			t.Fatal(err)
		}
		a := &saClient{name: name, id: id, c: c, round: round, up: up, x: make([]uint32, dim)}
		for j := range a.x {
			a.x[j] = id*100 + uint32(j)
		}
		switch id {
		case 2:
			a.forge, _ = secagg.NewClient(cfg, 3, keys[3], nil)
		case 4:
			a.upload = true
		case 5:
			a.leaveAfterShare = true
		}
		if !a.leaveAfterShare {
			for j, v := range a.x {
				want[j] += v
			}
		}
		agents = append(agents, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, n)
	d := &stagedriver.SecAgg{
		Round: round, RoundID: 7, Config: cfg, IDs: ids, Uploads: up, StageTime: time.Minute,
		Start: func() {
			for _, a := range agents {
				go func() { errs <- a.run(ctx) }()
			}
		},
	}
	res, err := d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range agents {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if len(res.Survivors) != n-1 {
		t.Fatalf("survivors %v", res.Survivors)
	}
	for j := range want {
		if res.Sum[j] != want[j] {
			t.Fatalf("sum[%d] = %d, want %d", j, res.Sum[j], want[j])
		}
	}
	if !up.ended {
		t.Fatal("the masked-input stage ended without ending its uploads")
	}
	if up.limit != stagedriver.MaskedInputLimit(dim) {
		t.Fatalf("upload limit %d, want %d", up.limit, stagedriver.MaskedInputLimit(dim))
	}
	got := d.Reports()
	wantReports := []struct {
		name              string
		expected, arrived int
	}{{"advertise_keys", 5, 5}, {"share_keys", 5, 5}, {"masked_input", 5, 4}, {"consistency_check", 4, 4}, {"unmask", 4, 4}}
	if len(got) != len(wantReports) {
		t.Fatalf("reports %+v", got)
	}
	for i, w := range wantReports {
		if got[i].Name != w.name || got[i].Expected != w.expected || got[i].Arrived != w.arrived {
			t.Errorf("stage %d: %+v, want %+v", i, got[i], w)
		}
	}
	if d.Busy() <= 0 {
		t.Error("no busy time counted")
	}
}

// TestSecAggFailsBelowThreshold: when too few agents speak by the
// deadline the server cannot go on; Run fails and the agents that did
// speak get the error instead of waiting.
func TestSecAggFailsBelowThreshold(t *testing.T) {
	cfg := &secagg.Config{RoundID: []byte("stagedriver fail"), Dim: 2}
	ids := map[string]uint32{}
	keys := map[uint32]ed25519.PrivateKey{}
	for i := range 4 {
		id := uint32(i + 1)
		keys[id] = ed25519.NewKeyFromSeed(append(make([]byte, 31), byte(id)))
		ids[fmt.Sprintf("a%d", id)] = id
		cfg.Participants = append(cfg.Participants, secagg.Participant{ID: id, SigningKey: keys[id].Public().(ed25519.PublicKey)})
	}
	round := &stagedriver.Round{}
	ctx := context.Background()
	got := make(chan error, 1)
	d := &stagedriver.SecAgg{
		Round: round, Config: cfg, IDs: ids, FirstBy: time.Now().Add(300 * time.Millisecond),
		Start: func() {
			c, _ := secagg.NewClient(cfg, 1, keys[1], nil)
			adv, _ := c.AdvertiseKeys()
			b, _ := adv.MarshalBinary()
			go func() {
				_, err := round.Deliver(ctx, "a1", &protocol.AdvertiseKeys{Payload: b}, nil)
				got <- err
			}()
		},
	}
	_, err := d.Run(ctx)
	if err == nil {
		t.Fatal("a round of one agent out of four succeeded")
	}
	select {
	case aerr := <-got:
		if !errors.Is(aerr, err) && aerr.Error() != err.Error() {
			t.Fatalf("the agent got %v, the driver %v", aerr, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent was not released when the round failed")
	}
	if r := d.Reports(); len(r) != 1 || r[0].Expected != 4 || r[0].Arrived > 1 {
		t.Fatalf("reports %+v", r)
	}
	if _, err := round.Deliver(ctx, "a2", &protocol.AdvertiseKeys{}, nil); !errors.Is(err, stagedriver.ErrStageClosed) {
		t.Fatalf("a late agent: %v, want ErrStageClosed", err)
	}
}
