package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/internal/wait"
)

// testCluster is a one-node cluster in the test's temp dir.
type testCluster struct {
	dir, addr string
	node      *coordinator.Node
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	tc := &testCluster{dir: t.TempDir(), addr: testutil.FreeUDPAddrs(t, 1)[0]}
	peers := []coordinator.Peer{{ID: "c1", Addr: tc.addr}}
	if err := coordinator.InitCluster(rand.Reader, "e2e", peers, tc.dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	n, err := coordinator.NewNode(coordinator.Config{
		NodeID: "c1", DataDir: filepath.Join(tc.dir, "c1"), Listen: tc.addr, Peers: peers, Raft: coordinator.LoopbackRaftTimings,
	})
	if err != nil {
		t.Fatal(err)
	}
	tc.node = n
	t.Cleanup(func() { n.Close() })
	testutil.WaitFor(t, 10*time.Second, "the cluster to be ready", func() bool {
		var ok bool
		n.FSM().Read(func(s *coordinator.State) { ok = s.ClusterName != "" && len(s.CA) > 0 })
		return ok && n.IsLeader()
	})
	return tc
}

// admin runs an admin verb against the cluster and returns its outcome.
func (tc *testCluster) admin(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	full := append(append([]string{}, args...), "-coordinators", tc.addr, "-admin-dir", filepath.Join(tc.dir, "admin"), "-timeout", "10s")
	return runCLI(t, full...)
}

// ok runs an admin verb that must succeed and returns its stdout.
func (tc *testCluster) ok(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := tc.admin(t, args...)
	if code != 0 {
		t.Fatalf("fedge %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// okJSON runs an admin verb with -json and decodes its output into v.
func (tc *testCluster) okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := tc.ok(t, append(args, "-json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("fedge %s -json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func contains(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

func TestEndToEnd(t *testing.T) {
	tc := startCluster(t)

	// cluster status, table and JSON.
	out := tc.ok(t, "cluster", "status")
	contains(t, "cluster status", out, "Cluster:", "e2e", "Leader:", "c1 ("+tc.addr+")", "Stable model:", "ID", "SUFFRAGE", "Rounds in progress: 0")
	var st api.ClusterStatus
	tc.okJSON(t, &st, "cluster", "status")
	if st.LeaderID != "c1" || len(st.Servers) != 1 || !st.Servers[0].Leader || st.Term == 0 || st.AppliedIndex == 0 {
		t.Errorf("cluster status -json: %+v", st)
	}
	// Flags before the verb's arguments work as well as after.
	code, _, _ := runCLI(t, "cluster", "status", "-json", "-coordinators", tc.addr, "-admin-dir", filepath.Join(tc.dir, "admin"))
	if code != 0 {
		t.Errorf("cluster status with flags first: exit %d", code)
	}

	// tokens create prints the token once and the agent command line.
	out = tc.ok(t, "tokens", "create", "-labels", "region=eu,tier=canary", "-ttl", "2h")
	contains(t, "tokens create", out, "fedge1.", "Expires:", "region=eu,tier=canary", "fedge agent -coordinators "+tc.addr+" -join-token fedge1.")
	var tok api.TokenResponse
	tc.okJSON(t, &tok, "tokens", "create", "-ttl", "1h")
	if !strings.HasPrefix(tok.Token, "fedge1.") || time.Until(tok.Expires) < 55*time.Minute || time.Until(tok.Expires) > 65*time.Minute {
		t.Errorf("tokens create -json: %+v", tok)
	}

	// agents list: empty fleet.
	contains(t, "agents list", tc.ok(t, "agents", "list"), "No agents enrolled")
	if out := tc.ok(t, "agents", "list", "-json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("agents list -json = %q, want []", out)
	}

	// fedge agent enrolls with a token; agents list, show, label, revoke.
	tc.agentLifecycle(t)

	// jobs start -f, list, status, stop, watch of a finished job.
	job := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(job, []byte(`{"name": "e2e", "model": "logreg", "data": {"kind": "csv", "features": 2, "classes": 2}, "rounds": 3, "min_clients": 2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out = tc.ok(t, "jobs", "start", "-f", job)
	contains(t, "jobs start", out, "Started job e2e-", "model logreg", "3 rounds", "fedge jobs status -watch e2e-")
	var jobs []api.Job
	tc.okJSON(t, &jobs, "jobs", "list")
	// The agent's part left a stopped job behind ("misfit").
	jobs = slices.DeleteFunc(jobs, func(j api.Job) bool { return j.Spec.Name != "e2e" })
	if len(jobs) != 1 || jobs[0].State != api.JobRunning || jobs[0].Spec.Rounds != 3 || jobs[0].Spec.Model != "logreg" {
		t.Fatalf("jobs list -json: %+v", jobs)
	}
	id := jobs[0].ID
	contains(t, "jobs list", tc.ok(t, "jobs", "list"), id, "running", "0/3", "logreg")
	contains(t, "jobs status", tc.ok(t, "jobs", "status", id), "State:", "running", "Rounds:", "0/3", "Strategy:", "fedavg")
	var jr api.Job
	tc.okJSON(t, &jr, "jobs", "status", id)
	if jr.ID != id {
		t.Errorf("jobs status -json: %+v", jr)
	}
	// With no agent connected the job waits, and its status says why.
	if wait.Until(context.Background(), 15*time.Second, func() bool {
		out = tc.ok(t, "jobs", "status", id)
		return strings.Contains(out, "waiting:")
	}) != nil {
		t.Fatalf("jobs status never says why the job waits:\n%s", out)
	}
	contains(t, "jobs status of a waiting job", out, "0 of 2 for job "+id)
	contains(t, "jobs stop", tc.ok(t, "jobs", "stop", id), "Stopped job "+id)
	out = tc.ok(t, "jobs", "status", "-watch", id)
	contains(t, "jobs status -watch", out, "Watching job "+id, "Job "+id+" stopped after 0/3 rounds")

	// rounds list: none ran (no agents).
	contains(t, "rounds list", tc.ok(t, "rounds", "list", "-job", id), "No rounds")

	// models list: no training round committed anything.
	var models []api.Model
	tc.okJSON(t, &models, "models", "list")
	if len(models) != 0 {
		contains(t, "models list", tc.ok(t, "models", "list"), "VERSION", "v1")
	} else {
		contains(t, "models list", tc.ok(t, "models", "list"), "No models")
	}

	// rollout status: empty.
	contains(t, "rollout status", tc.ok(t, "rollout", "status"), "No rollouts")
	if out := tc.ok(t, "rollout", "status", "-json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("rollout status -json = %q, want []", out)
	}

	// Not found: exit 3.
	for _, args := range [][]string{
		{"jobs", "status", "nope"},
		{"agents", "show", "nope"},
		{"rounds", "show", "999"},
		{"models", "show", "999"},
		{"models", "explain", "999"},
		{"models", "export", "999", "-o", filepath.Join(t.TempDir(), "m")},
		{"rollout", "pause"},
	} {
		code, out, errs := tc.admin(t, args...)
		if code != exitNotFound || !strings.Contains(errs, "not found") {
			t.Errorf("fedge %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, exitNotFound, out, errs)
		}
	}

	// admin-cert: a new credential that works, written privately.
	alice := filepath.Join(t.TempDir(), "alice")
	out = tc.ok(t, "admin-cert", "-name", "alice", "-out", alice)
	contains(t, "admin-cert", out, `operator credential "alice"`, alice)
	for _, f := range []string{"ca.pem", "admin.pem", "admin.key"} {
		fi, err := os.Stat(filepath.Join(alice, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if _, err := identity.LoadPEMKey(filepath.Join(alice, "admin.key")); err != nil {
		t.Errorf("admin.key is not a PKCS#8 Ed25519 key: %v", err)
	}
	code, out, errs := runCLI(t, "cluster", "status", "-coordinators", tc.addr, "-admin-dir", alice, "-timeout", "10s")
	if code != 0 || !strings.Contains(out, "e2e") {
		t.Errorf("cluster status as alice: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := tc.admin(t, "admin-cert", "-name", "alice", "-out", alice); code != exitFailed || !strings.Contains(errs, "refusing to overwrite") {
		t.Errorf("admin-cert over an existing credential: exit %d, stderr %q", code, errs)
	}

	// Environment variables stand in for the admin flags.
	t.Setenv(envCoordinators, tc.addr)
	t.Setenv(envAdminDir, filepath.Join(tc.dir, "admin"))
	if code, out, errs := runCLI(t, "cluster", "status"); code != 0 || !strings.Contains(out, "e2e") {
		t.Errorf("cluster status from the environment: exit %d\n%s%s", code, out, errs)
	}
}

func TestUnreachableCluster(t *testing.T) {
	dir := t.TempDir()
	peers := []coordinator.Peer{{ID: "c1", Addr: "127.0.0.1:7001"}}
	if err := coordinator.InitCluster(rand.Reader, "gone", peers, dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errs := runCLI(t, "cluster", "status", "-coordinators", testutil.FreeUDPAddrs(t, 1)[0], "-admin-dir", filepath.Join(dir, "admin"), "-timeout", "300ms")
	if code != exitUnreachable {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUnreachable, out, errs)
	}
	if !strings.Contains(errs, "no answer from") {
		t.Errorf("stderr lacks the hint:\n%s", errs)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v with -timeout 300ms", d)
	}
	// A missing credential is a local failure, not an unreachable cluster.
	code, _, errs = runCLI(t, "cluster", "status", "-coordinators", "127.0.0.1:9", "-admin-dir", filepath.Join(dir, "nope"))
	if code != exitFailed || !strings.Contains(errs, "fedge init") {
		t.Errorf("missing credential: exit %d, stderr %q", code, errs)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCoordinatorCommandRunsAndStops(t *testing.T) {
	dir := t.TempDir()
	addr := testutil.FreeUDPAddrs(t, 1)[0]
	if code, _, errs := runCLI(t, "init", "-cluster", "cmd", "-peers", "c1="+addr, "-out", dir); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCoordinatorContext(ctx, []string{"-config", filepath.Join(dir, "c1", coordinatorConfigFile), "-log-format", "json", "-log-level", "info"}, &out, &errb)
	}()
	code, exited, err := untilOrExit(ctx, done, func() bool { return strings.Contains(out.String(), "listening on "+addr) })
	if exited {
		t.Fatalf("coordinator exited %d early:\n%s%s", code, out.String(), errb.String())
	}
	if err != nil {
		t.Fatalf("coordinator did not start:\n%s%s", out.String(), errb.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(out.String(), "coordinator c1 stopped") {
			t.Fatalf("exit %d:\n%s%s", code, out.String(), errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("coordinator did not stop")
	}
	// -log-format json reached the logger.
	first, _, _ := strings.Cut(errb.String(), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil || rec["msg"] == nil {
		t.Errorf("first log line is not JSON: %q (%v)", first, err)
	}
}

// agentLifecycle runs `fedge agent` on a small CSV dataset with a fresh
// join token and drives the agents verbs against it.
func (tc *testCluster) agentLifecycle(t *testing.T) {
	t.Helper()
	var tok api.TokenResponse
	tc.okJSON(t, &tok, "tokens", "create", "-labels", "region=eu,tier=canary")
	dir := t.TempDir()
	var csv strings.Builder
	csv.WriteString("a,b,label\n")
	for i := range 40 {
		fmt.Fprintf(&csv, "%d,%d,%d\n", i%7, i%5, i%2)
	}
	data := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(data, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "agent.json")
	body := fmt.Sprintf(`{"coordinators": [%q], "data_dir": %q, "dataset": {"kind": "csv", "path": %q, "label_column": "label", "classes": ["0", "1"]}, "inference_listen": "127.0.0.1:0"}`,
		tc.addr, filepath.Join(dir, "state"), data)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		// Flags override the file: the token and the shutdown timeout.
		done <- runAgentContext(ctx, []string{"-config", cfg, "-join-token", tok.Token, "-shutdown-timeout", "2s", "-log-level", "warn"}, &out, &errb)
	}()
	stopAgent := func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("agent did not stop")
			return -1
		}
	}
	defer func() {
		if ctx.Err() == nil {
			stopAgent()
		}
	}()

	var agents []api.Agent
	code, exited, err := untilOrExit(ctx, done, func() bool {
		tc.okJSON(t, &agents, "agents", "list")
		return len(agents) == 1 && agents[0].Connected
	})
	if exited {
		t.Fatalf("agent exited %d:\n%s%s", code, out.String(), errb.String())
	}
	if err != nil {
		t.Fatalf("agent did not enroll and connect: %+v\n%s%s", agents, out.String(), errb.String())
	}
	a := agents[0]
	if a.Labels["region"] != "eu" || a.Labels["tier"] != "canary" {
		t.Errorf("agent labels %v, want the token's region=eu,tier=canary", a.Labels)
	}
	contains(t, "fedge agent", out.String(), "agent serving inference on http://127.0.0.1:")
	contains(t, "agents list", tc.ok(t, "agents", "list"), a.ID, "yes", "region=eu,tier=canary")
	contains(t, "agents show", tc.ok(t, "agents", "show", a.ID), "ID:", a.ID, "Connected:", "Certificate:", a.CertSerial)

	// The agent's status report: agents show prints its data schema, and
	// jobs start refuses a model that does not fit it unless -force.
	if err := wait.Until(ctx, 10*time.Second, func() bool {
		return strings.Contains(tc.ok(t, "agents", "show", a.ID), "csv, 2 features, 2 classes")
	}); err != nil {
		t.Fatalf("agents show never printed the agent's data schema:\n%s", tc.ok(t, "agents", "show", a.ID))
	}
	job := filepath.Join(dir, "2nn.json")
	if err := os.WriteFile(job, []byte(`{"name": "misfit", "model": "2nn", "rounds": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	contains(t, "agents show status", tc.ok(t, "agents", "show", a.ID), "Examples:", "~36 train, ~4 held out", "Trainer:", "engine")
	code, _, errs := tc.admin(t, "jobs", "start", "-f", job)
	if code != exitFailed || !strings.Contains(errs, "model 2nn takes 784 features and 10 classes; the connected agent holds 2 features and 2 classes") {
		t.Errorf("jobs start of a 2nn on a CSV agent: exit %d, %s", code, errs)
	}
	forced := strings.TrimSpace(tc.ok(t, "jobs", "start", "-force", "-q", "-f", job))
	contains(t, "jobs stop of the forced job", tc.ok(t, "jobs", "stop", forced), "Stopped job "+forced)

	// label merges: set one, remove one, keep the rest.
	contains(t, "agents label", tc.ok(t, "agents", "label", a.ID, "tier=gold", "zone=b", "region-"), "tier=gold,zone=b")
	var got api.Agent
	tc.okJSON(t, &got, "agents", "show", a.ID)
	if labelString(got.Labels) != "tier=gold,zone=b" {
		t.Errorf("labels after label: %v", got.Labels)
	}
	tc.ok(t, "agents", "label", "-replace", a.ID, "only=this")
	got = api.Agent{} // Unmarshal merges into a non-nil map
	tc.okJSON(t, &got, "agents", "show", a.ID)
	if labelString(got.Labels) != "only=this" {
		t.Errorf("labels after label -replace: %v", got.Labels)
	}

	contains(t, "agents revoke", tc.ok(t, "agents", "revoke", a.ID), "Revoked agent "+a.ID)
	tc.okJSON(t, &got, "agents", "show", a.ID)
	if !got.Revoked {
		t.Errorf("agent not revoked: %+v", got)
	}
	if code := stopAgent(); code != exitOK && code != exitFailed {
		t.Errorf("agent exit %d after revoke and stop", code)
	}
}

// untilOrExit polls cond for up to 10 s until it holds, or until the
// command whose exit code arrives on done exits (exited, with its code).
func untilOrExit(ctx context.Context, done <-chan int, cond func() bool) (code int, exited bool, err error) {
	err = wait.Until(ctx, 10*time.Second, func() bool {
		select {
		case code = <-done:
			exited = true
			return true
		default:
		}
		return cond()
	})
	return code, exited, err
}
