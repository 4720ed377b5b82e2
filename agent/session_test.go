package agent

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
)

// enrolledAgent starts an agent against c and waits for its session.
func enrolledAgent(t *testing.T, c *testCoord, dir string, edit func(*Config)) *runningAgent {
	t.Helper()
	cfg := agentConfig(t, filepath.Join(dir, "state"), writeSynthCSV(t, dir, 40, 1), c.token(nil), c.addr())
	if edit != nil {
		edit(&cfg)
	}
	ra := startAgent(t, cfg)
	testutil.WaitFor(t, 20*time.Second, "agent connected", func() bool { return ra.ID() != "" && c.session(ra.ID()) != nil })
	return ra
}

// TestRestartDeclinesInterruptedRound restarts an agent whose store says
// it was in a round: the round's secrets died with the process, so the
// agent tells the coordinator at once that it abandons that round.
func TestRestartDeclinesInterruptedRound(t *testing.T) {
	c := newTestCoord(t, nil, newHub(nil))
	dir := t.TempDir()
	ra := enrolledAgent(t, c, dir, nil)
	cfg := ra.cfg
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}
	// What a kill -9 in the middle of round 42 leaves behind.
	st, err := openStore(cfg.DataDir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.setProgress(progress{roundID: 42, kind: uint8(protocol.RoundTrain), stage: uint8(protocol.StageShareKeys), updated: time.Now()}, true); err != nil {
		t.Fatal(err)
	}
	st.close()
	startAgent(t, cfg)
	testutil.WaitFor(t, 10*time.Second, "the restarted agent declines round 42", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.declined) == 1 && c.declined[0] == 42
	})
}

// TestRoundEndsWithItsSession: when the session a round came on ends (the
// coordinator died or dropped the agent), the agent leaves the round at
// once instead of declining every new invite until the round's deadlines.
func TestRoundEndsWithItsSession(t *testing.T) {
	c := newTestCoord(t, nil, newHub(nil))
	ra := enrolledAgent(t, c, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.session(ra.ID()).Request(ctx, invite(7, protocol.RoundTrain, time.Hour))
	if j, ok := resp.(*protocol.RoundJoin); err != nil || !ok || !j.Accept {
		t.Fatalf("invite: %v %v", resp, err)
	}
	busy := func() bool {
		ra.mu.Lock()
		defer ra.mu.Unlock()
		return len(ra.rounds) > 0
	}
	if !busy() {
		t.Fatal("the agent joined no round")
	}
	c.kick(ra.ID())
	testutil.WaitFor(t, 2*time.Second, "the agent to leave the round", func() bool { return !busy() })
}

// TestCoordinatorFrozenIsLeft: a coordinator that stops answering (frozen
// with SIGSTOP, or killed without a close) is left within the session
// timeout, and the agent finds the leader through the other configured
// coordinators.
func TestCoordinatorFrozenIsLeft(t *testing.T) {
	c := newTestCoord(t, nil, newHub(nil))
	leader := newTestCoord(t, c.ca, newHub(nil))
	relay := testutil.NewUDPProxy(t, "127.0.0.1:0", c.addr())
	dir := t.TempDir()
	timeout := time.Second
	ra := enrolledAgent(t, c, dir, nil) // enrolls directly
	cfg := ra.cfg
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}
	// c, reached through the relay, leads; the other follows until c
	// freezes.
	cfg.Coordinators = []string{relay.Addr(), leader.addr()}
	cfg.SessionTimeout = Duration(timeout)
	leader.setRedirect(relay.Addr())
	ra = startAgent(t, cfg)
	testutil.WaitFor(t, 10*time.Second, "session through the relay", func() bool { return c.session(ra.ID()) != nil })
	frozen := time.Now()
	relay.Drop(true)
	leader.setRedirect("")
	testutil.WaitFor(t, 3*timeout, "session moved to the other coordinator", func() bool { return leader.session(ra.ID()) != nil })
	t.Logf("left the frozen coordinator after %v", time.Since(frozen).Round(time.Millisecond))
}
