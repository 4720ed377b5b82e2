package coordinator

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/protocol"
)

// joinLink is an agent link that joins every round it is invited to and
// records what it was sent.
type joinLink struct {
	id string

	mu      sync.Mutex
	invites []uint64
}

func (l *joinLink) AgentID() string               { return l.id }
func (l *joinLink) SigningKey() ed25519.PublicKey { return nil }
func (l *joinLink) Send(context.Context, protocol.Message) error {
	return nil
}
func (l *joinLink) Request(_ context.Context, m protocol.Message) (protocol.Message, error) {
	inv, ok := m.(*protocol.RoundInvite)
	if !ok {
		return nil, fmt.Errorf("joinLink: unexpected %s", m.Type())
	}
	l.mu.Lock()
	l.invites = append(l.invites, inv.RoundID)
	l.mu.Unlock()
	return &protocol.RoundJoin{RoundID: inv.RoundID, Accept: true}, nil
}

// newLinkEngine returns an engine over an in-memory FSM whose connected
// agents are links, each enrolled without labels.
func newLinkEngine(t *testing.T, links ...*joinLink) *Engine {
	t.Helper()
	fsm := NewFSM(nil)
	rep := &memRep{f: fsm}
	if _, err := rep.apply(context.Background(), cmdBootstrap, bootstrapCmd{ClusterName: "conc", CA: []byte("ca")}, nil); err != nil {
		t.Fatal(err)
	}
	var ls []AgentLink
	for _, l := range links {
		fsm.state.Agents[l.id] = &AgentRecord{ID: l.id}
		ls = append(ls, l)
	}
	return newEngine(discardLogger(), EngineConfig{}, fsm, rep, func() []AgentLink { return ls }, nil)
}

// TestEngineRoutesMessagesByRoundID runs two rounds (of two jobs) at
// once: each agent's stage message, withdrawal and download goes to the
// round whose ID it carries, never to the other, and a message for no
// round in progress gets ErrRoundFinished.
func TestEngineRoutesMessagesByRoundID(t *testing.T) {
	e := newLinkEngine(t)
	type got struct {
		round uint64
		agent string
	}
	var mu sync.Mutex
	var accepted []got
	open := func(id uint64, owner string, agents ...string) (*activeRound, func() []string) {
		r := &activeRound{id: id, owner: owner, models: []uint64{7}}
		e.setRound(r)
		st := r.Open("masked_input", protocol.TypeMaskedInput, agents, func(agent string, m protocol.Message) error {
			mu.Lock()
			defer mu.Unlock()
			accepted = append(accepted, got{m.(*protocol.MaskedInput).RoundID, agent})
			if m.(*protocol.MaskedInput).RoundID != id {
				return fmt.Errorf("round %d took a message of round %d", id, m.(*protocol.MaskedInput).RoundID)
			}
			return nil
		})
		// Release every arrival with a reply naming the round.
		return r, func() []string {
			arrived, _ := st.Wait(context.Background(), time.Now().Add(20*time.Second))
			replies := map[string]any{}
			for _, a := range arrived {
				replies[a] = &protocol.MaskedInputRelay{RoundID: id}
			}
			st.Release(replies)
			return arrived
		}
	}
	ra, waitA := open(11, "job-a", "a1", "a2")
	rb, waitB := open(12, "job-b", "b1", "b2")
	e.mu.Lock()
	e.claims["a1"], e.claims["a2"], e.claims["b1"], e.claims["b2"] = []uint64{11}, []uint64{11}, []uint64{12}, []uint64{12}
	e.mu.Unlock()

	// An agent of round 11 sending round 12's ID reaches round 12, which
	// does not expect it: refused there, and round 11 never sees it.
	if _, err := e.deliver(context.Background(), "a1", &protocol.MaskedInput{RoundID: 12, Payload: []byte{1}}); !errors.Is(err, ErrNotInvited) {
		t.Fatalf("a1's message for round 12: %v, want ErrNotInvited", err)
	}
	// A round that is not in progress.
	if _, err := e.deliver(context.Background(), "a1", &protocol.MaskedInput{RoundID: 13}); !errors.Is(err, ErrRoundFinished) {
		t.Fatalf("message for round 13: %v, want ErrRoundFinished", err)
	}
	// b2 withdraws from round 12: round 11 still waits for both its agents.
	if _, err := e.deliver(context.Background(), "b2", &protocol.RoundJoin{RoundID: 12, Reason: "trainer failed"}); err != nil {
		t.Fatal(err)
	}
	// Downloads count in the downloading agent's round only.
	e.countDownload("b1", 7, 100)
	e.countDownload("a2", 7, 10)

	replies := map[string]protocol.Message{}
	var wg sync.WaitGroup
	for _, s := range []struct {
		agent string
		round uint64
	}{{"a1", 11}, {"a2", 11}, {"b1", 12}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := e.deliver(context.Background(), s.agent, &protocol.MaskedInput{RoundID: s.round, Payload: []byte{1}})
			if err != nil {
				t.Errorf("%s's message for round %d: %v", s.agent, s.round, err)
				return
			}
			mu.Lock()
			replies[s.agent] = rep
			mu.Unlock()
		}()
	}
	arrivedA, arrivedB := waitA(), waitB()
	wg.Wait()
	slices.Sort(arrivedA) // in the order they arrived
	if !slices.Equal(arrivedA, []string{"a1", "a2"}) || !slices.Equal(arrivedB, []string{"b1"}) {
		t.Fatalf("round 11 heard from %v, round 12 from %v; want [a1 a2] and [b1]", arrivedA, arrivedB)
	}
	for agent, rep := range replies {
		want := uint64(11)
		if agent[0] == 'b' {
			want = 12
		}
		if r, ok := rep.(*protocol.MaskedInputRelay); !ok || r.RoundID != want {
			t.Errorf("%s got reply %#v, want round %d's", agent, rep, want)
		}
	}
	for _, g := range accepted {
		if (g.agent[0] == 'a') != (g.round == 11) {
			t.Errorf("round %d accepted a message of %s", g.round, g.agent)
		}
	}
	if in, out := ra.bytesOut.Load(), rb.bytesOut.Load(); in < 10 || in >= 100 || out < 100 {
		t.Errorf("bytes out: round 11 %d (want its agent's 10 download bytes + replies), round 12 %d (want >= 100)", in, out)
	}
	e.clearRound(ra, ErrRoundFinished)
	if _, err := e.deliver(context.Background(), "a1", &protocol.MaskedInput{RoundID: 11}); !errors.Is(err, ErrRoundFinished) {
		t.Fatalf("message for the ended round 11: %v, want ErrRoundFinished", err)
	}
	if e.activeRound(12) != rb {
		t.Fatal("ending round 11 ended round 12")
	}
	e.clearRound(rb, ErrRoundFinished)
}

// TestEngineSkipsAgentsBusyInAnotherRound: an agent that joined a round
// in progress is neither eligible for nor invited to another round until
// that round ends; agents that did not join are free at once.
func TestEngineSkipsAgentsBusyInAnotherRound(t *testing.T) {
	links := []*joinLink{{id: "g1"}, {id: "g2"}, {id: "g3"}, {id: "g4"}}
	e := newLinkEngine(t, links...)
	ids := func(ls []AgentLink) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.AgentID())
		}
		slices.Sort(out)
		return out
	}
	r1 := &activeRound{id: 21, owner: "job-a"}
	e.setRound(r1)
	joined := e.invite(context.Background(), "job-a", []AgentLink{links[0], links[1]}, &protocol.RoundInvite{RoundID: 21, Job: "job-a"})
	if got := ids(joined); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Fatalf("round 21 joined %v", got)
	}
	if got := ids(e.eligible(nil, nil)); !slices.Equal(got, []string{"g3", "g4"}) {
		t.Fatalf("eligible while g1, g2 are in round 21: %v, want [g3 g4]", got)
	}
	// A second round that picked every agent before round 21 claimed them
	// invites only the free ones.
	r2 := &activeRound{id: 22, owner: "job-b"}
	e.setRound(r2)
	all := []AgentLink{links[0], links[1], links[2], links[3]}
	if got := ids(e.invite(context.Background(), "job-b", all, &protocol.RoundInvite{RoundID: 22, Job: "job-b"})); !slices.Equal(got, []string{"g3", "g4"}) {
		t.Fatalf("round 22 joined %v, want [g3 g4]", got)
	}
	for _, l := range links[:2] {
		if slices.Contains(l.invites, 22) {
			t.Errorf("%s, busy in round 21, was invited to round 22", l.id)
		}
	}
	e.clearRound(r1, ErrRoundFinished)
	if got := ids(e.eligible(nil, nil)); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Fatalf("eligible after round 21 ended (round 22 holds g3, g4): %v, want [g1 g2]", got)
	}
	e.clearRound(r2, ErrRoundFinished)
	if got := ids(e.eligible(nil, nil)); len(got) != 4 {
		t.Fatalf("eligible with no round in progress: %v", got)
	}
}

// concLink is a joinLink whose agent reported how many rounds of
// different jobs it runs at once.
type concLink struct {
	*joinLink
	n int
}

func (l concLink) Concurrent() int { return l.n }

// TestEngineHonoursAgentConcurrency: an agent that reported 2 rounds at
// once is invited to two jobs' rounds in progress at the same time, and
// to no third; agents that reported 1, or nothing, are invited to one
// round at a time. Ending a round frees one of the agent's places, and a
// download counts in the agent's round that needs the version.
func TestEngineHonoursAgentConcurrency(t *testing.T) {
	two, one, none := &joinLink{id: "c2"}, &joinLink{id: "c1"}, &joinLink{id: "c0"}
	links := []AgentLink{concLink{two, 2}, concLink{one, 1}, none}
	fsm := NewFSM(nil)
	rep := &memRep{f: fsm}
	if _, err := rep.apply(context.Background(), cmdBootstrap, bootstrapCmd{ClusterName: "conc", CA: []byte("ca")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		fsm.state.Agents[l.AgentID()] = &AgentRecord{ID: l.AgentID()}
	}
	e := newEngine(discardLogger(), EngineConfig{}, fsm, rep, func() []AgentLink { return links }, nil)
	ids := func(ls []AgentLink) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.AgentID())
		}
		slices.Sort(out)
		return out
	}
	invite := func(id uint64, job string, models ...uint64) (*activeRound, []string) {
		r := &activeRound{id: id, owner: job, models: models}
		e.setRound(r)
		return r, ids(e.invite(context.Background(), job, links, &protocol.RoundInvite{RoundID: id, Job: job}))
	}

	r1, got := invite(31, "job-a", 7)
	if !slices.Equal(got, []string{"c0", "c1", "c2"}) {
		t.Fatalf("round 31 joined %v, want every agent", got)
	}
	if got := ids(e.eligible(nil, nil)); !slices.Equal(got, []string{"c2"}) {
		t.Fatalf("eligible while every agent is in round 31: %v, want [c2] (it runs 2 rounds at once)", got)
	}
	r2, got := invite(32, "job-b", 8)
	if !slices.Equal(got, []string{"c2"}) {
		t.Fatalf("round 32 joined %v, want [c2]", got)
	}
	for _, l := range []*joinLink{one, none} {
		if slices.Contains(l.invites, 32) {
			t.Errorf("%s, which runs one round at a time, was invited to round 32 while in round 31", l.id)
		}
	}
	if !slices.Contains(two.invites, 32) {
		t.Errorf("c2 was not invited to round 32: invites %v", two.invites)
	}
	if got := ids(e.eligible(nil, nil)); len(got) != 0 {
		t.Fatalf("eligible while c2 is in 2 rounds and the others in 1: %v, want none", got)
	}
	r3, got := invite(33, "job-c")
	if len(got) != 0 || slices.Contains(two.invites, 33) {
		t.Fatalf("round 33 joined %v (c2's invites %v): c2 runs at most 2 rounds at once", got, two.invites)
	}
	e.clearRound(r3, ErrRoundFinished)

	// c2's download of version 8 counts in round 32, which needs it.
	e.countDownload("c2", 8, 100)
	if a, b := r1.bytesOut.Load(), r2.bytesOut.Load(); a != 0 || b != 100 {
		t.Fatalf("c2's download of version 8 counted %d in round 31 and %d in round 32, want 0 and 100", a, b)
	}

	e.clearRound(r1, ErrRoundFinished)
	if got := ids(e.eligible(nil, nil)); !slices.Equal(got, []string{"c0", "c1", "c2"}) {
		t.Fatalf("eligible after round 31 ended (c2 still in round 32): %v, want every agent", got)
	}
	e.clearRound(r2, ErrRoundFinished)
	e.mu.Lock()
	left := len(e.claims)
	e.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d agents still claimed with no round in progress", left)
	}
}

// TestSlotsFirstComeFirstServed: a released slot goes to the longest
// waiting acquire, and an acquire whose context ends leaves the queue.
func TestSlotsFirstComeFirstServed(t *testing.T) {
	s := newSlots(1)
	if err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	order := make(chan int, 3)
	gone, cancel := context.WithCancel(context.Background())
	if err := func() error { cancel(); return s.acquire(gone) }(); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with an ended context: %v", err)
	}
	for i := range 3 {
		go func() {
			if err := s.acquire(context.Background()); err == nil {
				order <- i
			}
		}()
		testutil.WaitFor(t, 5*time.Second, "the acquire queued", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.queue) == i+1
		})
	}
	for want := range 3 {
		s.release()
		if got := <-order; got != want {
			t.Fatalf("slot went to waiter %d, want %d", got, want)
		}
	}
	s.release()
	if s.free != 1 || len(s.queue) != 0 {
		t.Fatalf("free %d, queue %d after every release", s.free, len(s.queue))
	}
}

// createJob starts a job named id created at t.
func createJob(t *testing.T, h *engineHarness, id string, at time.Time, spec JobSpec) {
	t.Helper()
	if err := spec.Normalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rep.apply(context.Background(), cmdJobCreate, JobRecord{ID: id, Spec: spec, CreatedAt: at}, nil); err != nil {
		t.Fatal(err)
	}
}

// trainRounds returns job's training rounds, by ID.
func trainRounds(h *engineHarness, job string) []RoundRecord {
	var out []RoundRecord
	h.fsm.Read(func(s *State) {
		for _, id := range sortedKeys(s.Rounds) {
			if r := s.Rounds[id]; r.Job == job && r.Kind == RoundTrain {
				out = append(out, *r)
			}
		}
	})
	return out
}

func overlap(a, b RoundRecord) bool {
	return a.StartedAt.Before(b.EndedAt) && b.StartedAt.Before(a.EndedAt)
}

// TestEngineJobsTakeTurnsInOneSlot: with max_concurrent_rounds 1 the
// rounds of two jobs never overlap, and the younger job's rounds do not
// wait for the older job's last round: the slot goes to the job that
// waited longest.
func TestEngineJobsTakeTurnsInOneSlot(t *testing.T) {
	h := newEngineHarness(t, 6, 100)
	h.eng.cfg.MaxRounds, h.eng.slots = 1, newSlots(1)
	for i, a := range h.agents {
		h.fsm.state.Agents[a.id].Labels = map[string]string{"team": []string{"a", "b"}[i%2]}
	}
	spec := func(team string, rounds int) JobSpec {
		return JobSpec{
			Model: "logreg", Rounds: rounds, Fraction: 1, MinClients: 3, Seed: 3, Selector: map[string]string{"team": team},
			Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
			Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
		}
	}
	now := time.Now()
	createJob(t, h, "old", now.Add(-time.Hour), spec("a", 5))
	createJob(t, h, "new", now, spec("b", 2))
	h.runUntil("both jobs done", 120*time.Second, func(s *State) bool {
		return s.Jobs["old"].State == JobDone && s.Jobs["new"].State == JobDone
	})
	old, young := trainRounds(h, "old"), trainRounds(h, "new")
	if len(old) != 5 || len(young) != 2 {
		t.Fatalf("%d and %d training rounds, want 5 and 2", len(old), len(young))
	}
	all := append(slices.Clone(old), young...)
	for i, a := range all {
		if a.State != RoundCommitted {
			t.Fatalf("round %d of %s: %s %s", a.ID, a.Job, a.State, a.Error)
		}
		for _, b := range all[i+1:] {
			if overlap(a, b) {
				t.Fatalf("rounds %d (%s) and %d (%s) overlapped with one slot", a.ID, a.Job, b.ID, b.Job)
			}
		}
	}
	if last := young[len(young)-1]; !last.EndedAt.Before(old[len(old)-1].StartedAt) {
		t.Fatalf("the younger job's last round ended %v, after the older job's last round started (%v): it waited for the older job",
			last.EndedAt, old[len(old)-1].StartedAt)
	}
}

// TestEngineJobsShareAgentsNotAtOnce: two jobs over the same agents,
// each round picking half of them, run rounds at the same time on
// disjoint agents, and both finish.
func TestEngineJobsShareAgentsNotAtOnce(t *testing.T) {
	h := newEngineHarness(t, 6, 100)
	// Each job's agents hold their update until the other job has a round
	// in progress (or has ended), so the jobs' rounds overlap however fast
	// this machine runs them: on an idle one, one job's three rounds could
	// end before the other's loop began. The wait is bounded, so a loop
	// that never runs the other job's round fails on the overlap count.
	hold := func(roundID uint64) {
		var job string
		h.fsm.Read(func(s *State) {
			if r, ok := s.Rounds[roundID]; ok {
				job = r.Job
			}
		})
		other := map[string]string{"j1": "j2", "j2": "j1"}[job]
		_ = wait.Until(context.Background(), 20*time.Second, func() bool {
			seen := false
			h.fsm.Read(func(s *State) {
				if j, ok := s.Jobs[other]; ok && j.State != JobRunning {
					seen = true
				}
				for _, r := range s.Rounds {
					seen = seen || (r.Job == other && r.State == RoundRunning)
				}
			})
			return seen
		})
	}
	for _, a := range h.agents {
		a.hold = hold
	}
	spec := JobSpec{
		Model: "logreg", Rounds: 3, Fraction: 0.5, MinClients: 3, Seed: 3,
		Plan:     LocalPlan{Epochs: 1, BatchSize: 10, LR: 0.1},
		Deadline: Deadlines{Train: Duration(30 * time.Second), Stage: Duration(3 * time.Second)},
	}
	now := time.Now()
	createJob(t, h, "j1", now.Add(-time.Minute), spec)
	createJob(t, h, "j2", now, spec)
	h.runUntil("both jobs done", 120*time.Second, func(s *State) bool {
		return s.Jobs["j1"].State == JobDone && s.Jobs["j2"].State == JobDone
	})
	a, b := trainRounds(h, "j1"), trainRounds(h, "j2")
	overlaps := 0
	for _, x := range a {
		for _, y := range b {
			if !overlap(x, y) {
				continue
			}
			overlaps++
			for _, p := range x.Participants {
				if slices.Contains(y.Participants, p) {
					t.Fatalf("agent %s took part in rounds %d and %d at once", p, x.ID, y.ID)
				}
			}
		}
	}
	if overlaps == 0 {
		t.Fatalf("no round of j1 overlapped one of j2: %d and %d rounds ran one at a time", len(a), len(b))
	}
	t.Logf("%d pairs of overlapping rounds", overlaps)
}

// TestRoundsInProgressByJob: status and metrics count the running round
// records per job, rollout or kind, with a 0 for a running job between
// rounds, and leave ended rounds out.
func TestRoundsInProgressByJob(t *testing.T) {
	s := &State{
		Jobs: map[string]*JobRecord{"a": {ID: "a", State: JobRunning}, "b": {ID: "b", State: JobRunning}, "c": {ID: "c", State: JobDone}},
		Rounds: map[uint64]*RoundRecord{
			1: {ID: 1, Job: "a", Kind: RoundTrain, State: RoundCommitted},
			2: {ID: 2, Job: "a", Kind: RoundTrain, Number: 2, State: RoundRunning},
			3: {ID: 3, Rollout: "r1", Kind: RoundEval, State: RoundRunning},
			4: {ID: 4, Kind: RoundExplain, State: RoundRunning},
			5: {ID: 5, Job: "c", Kind: RoundTrain, State: RoundFailed},
		},
	}
	got := s.roundsRunningByOwner()
	want := map[string]int{"a": 1, "b": 0, "rollout/r1": 1, "explain": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("rounds by owner %v, want %v", got, want)
	}
	var ids []uint64
	for _, r := range s.roundsInProgress() {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []uint64{2, 3, 4}) {
		t.Fatalf("rounds in progress %v, want [2 3 4]", ids)
	}
}

// BenchmarkEngineConcurrentJobs: two jobs of 5 SecAgg+ rounds on disjoint
// sets of 4 synthetic agents whose local training takes 200 ms on their
// own hosts, through the engine with the in-memory transport; the wall
// time of both jobs with one round at a time (max_concurrent_rounds 1)
// and with the default bound.
//
//	go test -run '^$' -bench EngineConcurrentJobs -benchtime 3x ./coordinator/
func BenchmarkEngineConcurrentJobs(b *testing.B) {
	const rounds, perJob = 5, 4
	for _, max := range []int{1, DefaultMaxConcurrentRounds} {
		b.Run(fmt.Sprintf("max_concurrent_rounds=%d", max), func(b *testing.B) {
			var total time.Duration
			for range b.N {
				total += twoJobsWall(b, max, rounds, perJob, 200*time.Millisecond)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/two-jobs")
		})
	}
}

// twoJobsWall runs two jobs of rounds rounds, each on perJob synthetic
// agents of its own, and returns the wall time until both are done.
func twoJobsWall(b *testing.B, max, rounds, perJob int, hostTime time.Duration) time.Duration {
	fsm, rep := benchState(b)
	ctx := context.Background()
	agents := synthAgents(fsm, 2*perJob, func(i int, a *simAgent) *AgentRecord {
		a.hostTime = hostTime
		return &AgentRecord{ID: a.id, Labels: map[string]string{"team": fmt.Sprint(i % 2)}}
	})
	links := make([]AgentLink, len(agents))
	for i, a := range agents {
		links[i] = a
	}
	eng := newEngine(discardLogger(), EngineConfig{Idle: 10 * time.Millisecond, MaxRounds: max}, fsm, rep, func() []AgentLink { return links }, nil)
	for _, a := range agents {
		a.eng = eng
	}
	now := time.Now()
	for i := range 2 {
		spec := JobSpec{Model: "logreg", Rounds: rounds, Fraction: 1, MinClients: perJob, Selector: map[string]string{"team": fmt.Sprint(i)},
			SecAgg:   SecAggSpec{Enabled: true},
			Deadline: Deadlines{Train: Duration(time.Minute), Stage: Duration(time.Minute)}}
		if err := spec.Normalize(); err != nil {
			b.Fatal(err)
		}
		if _, err := rep.apply(ctx, cmdJobCreate, JobRecord{ID: fmt.Sprint("job", i), Spec: spec, CreatedAt: now.Add(time.Duration(i))}, nil); err != nil {
			b.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() { eng.run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := wait.Until(ctx, 2*time.Minute, func() bool {
		finished := true
		fsm.Read(func(s *State) { finished = s.Jobs["job0"].State == JobDone && s.Jobs["job1"].State == JobDone })
		return finished
	}); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
