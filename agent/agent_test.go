package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/crypto/secagg"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
)

// predictHTTP posts one 12-feature example to an agent's inference server.
func predictHTTP(t *testing.T, addr string) (int, PredictResponse) {
	t.Helper()
	body := predictBody(synthData(1, 12, 3, 77).Row(0))
	resp, err := http.Post("http://"+addr+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr PredictResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, pr
}

func TestAgentLifecycle(t *testing.T) {
	start, blob1 := smallModel(t, 1)
	_, blob2 := smallModel(t, 2)
	h := newHub(map[uint64][]byte{1: blob1, 2: blob2})
	c := newTestCoord(t, nil, h)
	dataDir := t.TempDir()

	var mu sync.Mutex
	ups := map[string][]uint32{}
	var agents []*runningAgent
	for k := range 3 {
		cfg := agentConfig(t, filepath.Join(dataDir, fmt.Sprint(k)), writeSynthCSV(t, dataDir, 40, uint64(k)),
			c.token(map[string]string{"tier": "canary"}), c.addr())
		r := startAgentHook(t, cfg, func(a *Agent) {
			a.observeUpdate = func(_ []float32, x []uint32) {
				mu.Lock()
				ups[a.ID()] = append([]uint32(nil), x...)
				mu.Unlock()
			}
		})
		agents = append(agents, r)
	}
	testutil.WaitFor(t, 20*time.Second, "agents enrolled and connected", func() bool {
		for _, a := range agents {
			if a.ID() == "" || c.session(a.ID()) == nil {
				return false
			}
		}
		return true
	})
	if n := c.enrollments.Load(); n != 3 {
		t.Fatalf("%d enrollments", n)
	}
	var health healthResponse
	getJSON(t, "http://"+agents[0].InferenceAddr()+"/healthz", &health)
	if !health.Enrolled || !health.Connected || health.ModelVersion != 0 {
		t.Fatalf("health %+v", health)
	}
	if code, _ := predictHTTP(t, agents[0].InferenceAddr()); code != http.StatusServiceUnavailable {
		t.Fatalf("predict before any model: %d", code)
	}

	// Rollout: every agent downloads and serves version 1.
	c.setTarget(1)
	testutil.WaitFor(t, 20*time.Second, "model 1 served", func() bool {
		for _, a := range agents {
			if a.ModelVersion() != 1 {
				return false
			}
		}
		return true
	})
	if code, pr := predictHTTP(t, agents[1].InferenceAddr()); code != http.StatusOK || pr.ModelVersion != 1 {
		t.Fatalf("predict: %d %+v", code, pr)
	}

	// A training round over QUIC: invite, plan, five SecAgg+ stages.
	dim := start.NumParams() + protocol.UpdateMetrics
	q := &secagg.Quantizer{Clip: 2, Bits: 20, MaxWeight: 64}
	as := make([]*Agent, len(agents))
	for i, a := range agents {
		as[i] = a.Agent
	}
	cfgBytes := h.start(t, as, q.EncodedLen(dim), q)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inv := invite(31, protocol.RoundTrain, 5*time.Second)
	plan := &protocol.RoundPlan{RoundID: 31, ModelVersion: 1, ModelHash: start.Hash(), Epochs: 2, BatchSize: 8, LR: 0.1, SecAgg: cfgBytes}
	for _, a := range agents {
		s := c.session(a.ID())
		resp, err := s.Request(ctx, inv)
		if err != nil {
			t.Fatal(err)
		}
		if j, ok := resp.(*protocol.RoundJoin); !ok || !j.Accept || j.RoundID != 31 {
			t.Fatalf("join %+v", resp)
		}
	}
	for _, a := range agents {
		if err := c.session(a.ID()).Send(ctx, plan); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "round result", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.result != nil || h.err != nil
	})
	if h.err != nil || len(h.result.Survivors) != 3 {
		t.Fatalf("round: %v", h.err)
	}
	mu.Lock()
	for j := range h.result.Sum {
		var s uint32
		for _, x := range ups {
			s += x[j]
		}
		if s != h.result.Sum[j] {
			t.Fatalf("secure sum over QUIC differs at %d", j)
		}
	}
	mu.Unlock()
	testutil.WaitFor(t, 10*time.Second, "round bookkeeping", func() bool {
		return agents[2].m.roundsCompleted.Load() == 1
	})

	// Rollout of version 2, then a rollback to 1 served from the store.
	c.setTarget(2)
	testutil.WaitFor(t, 20*time.Second, "model 2 served", func() bool {
		for _, a := range agents {
			if a.ModelVersion() != 2 {
				return false
			}
		}
		return true
	})
	downloads := c.downloads.Load()
	c.setTarget(1)
	testutil.WaitFor(t, 20*time.Second, "rollback to model 1", func() bool {
		for _, a := range agents {
			if a.ModelVersion() != 1 {
				return false
			}
		}
		return true
	})
	if d := c.downloads.Load(); d != downloads {
		t.Fatalf("rollback downloaded %d models; the previous one is in the store", d-downloads)
	}
	resp, err := http.Get("http://" + agents[2].InferenceAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var mt bytes.Buffer
	mt.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"fedge_agent_rounds_joined_total 1\n", "fedge_agent_rounds_completed_total 1\n", "fedge_agent_model_version 1\n", "fedge_agent_connected 1\n", "fedge_agent_model_swaps_total 3\n"} {
		if !strings.Contains(mt.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Restart: same identity, serves its model before it reconnects.
	id := agents[0].ID()
	if err := agents[0].stop(t); err != nil {
		t.Fatalf("Run returned %v after its context ended", err)
	}
	cfg := agents[0].cfg
	cfg.JoinToken = "" // enrolled: not needed any more
	again, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if again.ID() != id || again.ModelVersion() != 1 {
		t.Fatalf("restarted as %q serving %d", again.ID(), again.ModelVersion())
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	r := startAgent(t, cfg)
	testutil.WaitFor(t, 20*time.Second, "restarted agent reconnects", func() bool { return c.session(id) != nil })
	if c.enrollments.Load() != 3 {
		t.Fatal("restart enrolled again")
	}

	// Disconnected: inference keeps serving.
	c.ln.Close()
	testutil.WaitFor(t, 20*time.Second, "agent notices the coordinator is gone", func() bool { return !r.m.connected.Load() })
	if code, pr := predictHTTP(t, r.InferenceAddr()); code != http.StatusOK || pr.ModelVersion != 1 {
		t.Fatalf("predict while disconnected: %d %+v", code, pr)
	}
}

func startAgentHook(t *testing.T, cfg Config, hook func(*Agent)) *runningAgent {
	t.Helper()
	a, err := New(cfg, testLogger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a.grace = 500 * time.Millisecond
	hook(a)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func TestAgentRenewsCertificate(t *testing.T) {
	h := newHub(map[uint64][]byte{})
	c := newTestCoord(t, nil, h)
	// Certificates are back-dated 5 minutes for clock skew, so a lifetime
	// of 151.5 s puts the renewal point (two thirds) 1 s after issue.
	c.agentTTL = 151500 * time.Millisecond
	dir := t.TempDir()
	r := startAgent(t, agentConfig(t, filepath.Join(dir, "a"), writeSynthCSV(t, dir, 20, 1), c.token(nil), c.addr()))
	testutil.WaitFor(t, 20*time.Second, "enrolled", func() bool { return r.ID() != "" && c.session(r.ID()) != nil })
	first, _, _ := r.st.identity()
	if n := c.renewals.Load(); n != 0 {
		t.Fatalf("renewed %d times before the certificate was due", n)
	}
	testutil.WaitFor(t, 20*time.Second, "renewal", func() bool { return c.renewals.Load() >= 1 })
	testutil.WaitFor(t, 20*time.Second, "renewed certificate stored and used", func() bool {
		cur, _, _ := r.st.identity()
		s := c.session(r.ID())
		return !bytes.Equal(cur.cert, first.cert) && s != nil && bytes.Equal(s.PeerCertificate().Raw, cur.cert)
	})
	cur, _, _ := r.st.identity()
	cert, err := x509.ParseCertificate(cur.cert)
	if err != nil || !bytes.Equal(cur.key, first.key) {
		t.Fatal("renewal changed the key or stored garbage")
	}
	if who, err := identity.VerifyCertificate(cert, c.ca.Pool(), time.Now()); err != nil || who.ID != r.ID() {
		t.Fatalf("renewed certificate: %v %v", who, err)
	}
}

func TestAgentStopsWhenRevoked(t *testing.T) {
	h := newHub(map[uint64][]byte{})
	c := newTestCoord(t, nil, h)
	dir := t.TempDir()
	r := startAgent(t, agentConfig(t, filepath.Join(dir, "a"), writeSynthCSV(t, dir, 20, 1), c.token(nil), c.addr()))
	testutil.WaitFor(t, 20*time.Second, "connected", func() bool { return r.ID() != "" && c.session(r.ID()) != nil })
	if err := c.revoked.RevokeIdentity(identity.Identity{Role: identity.RoleAgent, ID: r.ID()}); err != nil {
		t.Fatal(err)
	}
	c.kick(r.ID())
	select {
	case err := <-r.done:
		close(r.done)
		if !errors.Is(err, ErrRevoked) {
			t.Fatalf("Run returned %v, want ErrRevoked", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("revoked agent kept running")
	}
}

func TestRefusedExpiredCertificate(t *testing.T) {
	a := &Agent{log: testLogger(), now: time.Now, cert: &x509.Certificate{NotAfter: time.Now().Add(-time.Hour)}}
	if err := a.refused(errors.New("tls: bad certificate")); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("refused = %v, want ErrCertExpired", err)
	}
	a.cert.NotAfter = time.Now().Add(time.Hour)
	if err := a.refused(errors.New("x")); !errors.Is(err, ErrRevoked) {
		t.Fatalf("refused = %v, want ErrRevoked", err)
	}
}

func TestAgentFollowsRedirects(t *testing.T) {
	h := newHub(map[uint64][]byte{})
	leader := newTestCoord(t, nil, h)
	follower := newTestCoord(t, leader.ca, h)
	follower.redirectTo = leader.addr()
	dir := t.TempDir()
	r := startAgent(t, agentConfig(t, filepath.Join(dir, "a"), writeSynthCSV(t, dir, 20, 1), leader.token(nil), follower.addr()))
	testutil.WaitFor(t, 20*time.Second, "session with the leader", func() bool { return r.ID() != "" && leader.session(r.ID()) != nil })
	if follower.enrollments.Load() != 0 || leader.enrollments.Load() != 1 {
		t.Fatal("enrollment did not follow the redirect")
	}
}

func TestEnrollmentErrors(t *testing.T) {
	h := newHub(map[uint64][]byte{})
	c := newTestCoord(t, nil, h)
	dir := t.TempDir()
	csv := writeSynthCSV(t, dir, 20, 1)
	tok := c.token(nil)
	first := startAgent(t, agentConfig(t, filepath.Join(dir, "a"), csv, tok, c.addr()))
	testutil.WaitFor(t, 20*time.Second, "first agent enrolled", func() bool { return first.ID() != "" && c.session(first.ID()) != nil })

	run := func(cfg Config) error {
		a, err := New(cfg, testLogger())
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return a.Run(ctx)
	}
	if err := run(agentConfig(t, filepath.Join(dir, "b"), csv, tok, c.addr())); !errors.Is(err, ErrTokenRejected) {
		t.Fatalf("reused token: %v", err)
	}
	// The refused agent forgot its uncertified identity, and enrolls with a
	// new token under a fresh one.
	second := startAgent(t, agentConfig(t, filepath.Join(dir, "b"), csv, c.token(nil), c.addr()))
	testutil.WaitFor(t, 20*time.Second, "second agent enrolled", func() bool { return second.ID() != "" && c.session(second.ID()) != nil })
	if err := run(agentConfig(t, filepath.Join(dir, "c"), csv, "", c.addr())); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("no token: %v", err)
	}
	// A data dir enrolled in one cluster refuses a token of another.
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	other := newTestCoord(t, nil, h)
	if _, err := New(agentConfig(t, filepath.Join(dir, "a"), csv, other.token(nil), other.addr()), nil); !errors.Is(err, ErrForeignDataDir) {
		t.Fatalf("data dir of another cluster: %v", err)
	}
}

const childConfigEnv = "FEDGE_AGENT_CHILD_CONFIG"

// TestAgentProcessChild is the agent process of TestAgentSurvivesKill and
// of the RSS benchmark: it runs an agent from the JSON configuration named
// by the environment, prints its inference address, and runs until killed.
func TestAgentProcessChild(t *testing.T) {
	path := os.Getenv(childConfigEnv)
	if path == "" {
		t.Skip("child process of TestAgentSurvivesKill")
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	a, err := New(cfg, testLogger())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("listening", a.InferenceAddr())
	err = a.Run(context.Background())
	fmt.Println("error", err)
	os.Exit(3)
}

// startChild starts an agent process on the configuration file path and
// returns it with its inference address.
func startChild(t testing.TB, path string) (*exec.Cmd, string) {
	t.Helper()
	cmd, line := testutil.StartChild(t, "TestAgentProcessChild", childConfigEnv+"="+path)
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		t.Fatalf("child said %q", line)
	}
	return cmd, addr
}

// TestAgentSurvivesKill runs the agent as a process, kills it with
// SIGKILL once it serves a model, and restarts it: it comes back with the
// same identity, serves the model before reaching the coordinator, and
// reconnects without enrolling again.
func TestAgentSurvivesKill(t *testing.T) {
	_, blob := smallModel(t, 1)
	h := newHub(map[uint64][]byte{1: blob})
	c := newTestCoord(t, nil, h)
	c.setTarget(1)
	dir := t.TempDir()
	cfg := agentConfig(t, filepath.Join(dir, "state"), writeSynthCSV(t, dir, 20, 1), c.token(nil), c.addr())
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, addr := startChild(t, path)
	var id string
	testutil.WaitFor(t, 20*time.Second, "child serves model 1", func() bool {
		code, pr := predictHTTP(t, addr)
		return code == http.StatusOK && pr.ModelVersion == 1
	})
	c.mu.Lock()
	for k := range c.sessions {
		id = k
	}
	c.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	c.kick(id)

	c.setTarget(0)
	_, addr = startChild(t, path)
	if code, pr := predictHTTP(t, addr); code != http.StatusOK || pr.ModelVersion != 1 {
		t.Fatalf("restarted child: %d %+v", code, pr)
	}
	testutil.WaitFor(t, 20*time.Second, "restarted child reconnects", func() bool { return c.session(id) != nil })
	if n := c.enrollments.Load(); n != 1 {
		t.Fatalf("%d enrollments: the restart enrolled again", n)
	}
}
