package console

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// twin is an in-memory Backend: it answers the admin verbs the pages
// read with fixed data and records every call.
type twin struct {
	mu      sync.Mutex
	calls   []string // "who verb body"
	revoked map[string]bool
}

var (
	t0      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	twinJob = api.Job{ID: "mnist-1", State: api.JobRunning, RoundsDone: 2, Model: 2, CreatedAt: t0,
		Spec:    api.JobSpec{Name: "mnist", Model: "logreg", Rounds: 5, SecAgg: api.SecAggSpec{Enabled: true}, Strategy: api.StrategySpec{Name: "fedavg"}},
		Privacy: &api.Privacy{Epsilon: 1.5, Delta: 1e-5, Rounds: 2}, Eval: &api.JobEval{AfterRound: 2, Accuracy: 0.8, Examples: 300, Agents: 3}}
	twinRounds = []api.Round{
		{ID: 1, Job: "mnist-1", Kind: api.RoundTrain, Number: 1, State: api.RoundCommitted, StartedAt: t0, EndedAt: t0.Add(2 * time.Second),
			Participants: []string{"a1", "a2", "a3"}, BytesIn: 3000, BytesOut: 9000, ModelIn: 0, ModelOut: 1,
			Stages:  []api.Stage{{Name: "advertise_keys", Expected: 3, Survivors: 3, Duration: 20 * time.Millisecond}, {Name: "masked_input", Expected: 3, Survivors: 2, Dropped: 1, Duration: time.Second}},
			Metrics: map[string]float64{"train_loss": 1.2, "train_accuracy": 0.6}},
		{ID: 2, Job: "mnist-1", Kind: api.RoundTrain, Number: 2, State: api.RoundCommitted, StartedAt: t0, EndedAt: t0.Add(2 * time.Second),
			Participants: []string{"a1", "a2"}, ModelIn: 1, ModelOut: 2, Metrics: map[string]float64{"train_loss": 0.7, "train_accuracy": 0.75}},
		{ID: 3, Job: "mnist-1", Kind: api.RoundEval, Number: 2, State: api.RoundCommitted, StartedAt: t0, EndedAt: t0.Add(time.Second),
			Metrics: map[string]float64{"eval_accuracy": 0.8, "eval_loss": 0.6}},
	}
	twinModels = []api.Model{
		{Version: 1, Hash: "aa11", Job: "mnist-1", Round: 1, Size: 31000, Name: "logreg", Metrics: map[string]float64{"train_loss": 1.2}},
		{Version: 2, Parent: 1, Hash: "bb22", Job: "mnist-1", Round: 2, Size: 31000, Name: "logreg"},
	}
	twinRollout = api.Rollout{ID: "ro-2-ab", Model: 2, Baseline: 1, Gate: "accuracy>=baseline-0.5", State: api.RolloutRunning, Stage: 1,
		Cohorts: []api.Cohort{{Name: "canary", Selector: map[string]string{"tier": "canary"}, Percent: 100}, {Name: "all", Percent: 100}},
		Decisions: []api.Decision{{At: t0, Stage: 0, Action: "advance", By: "gate", Evidence: &api.Evidence{Agents: 3,
			CandidateCorrect: 80, CandidateTotal: 100, CandidateLossSum: 50, BaselineCorrect: 78, BaselineTotal: 100, BaselineLossSum: 60,
			CandidateAccuracy: 80, BaselineAccuracy: 78}}}}
)

func (b *twin) Call(_ context.Context, who, verb string, body []byte) ([]byte, error) {
	b.mu.Lock()
	b.calls = append(b.calls, who+" "+verb+" "+string(body))
	b.mu.Unlock()
	var out any
	switch verb {
	case api.VerbClusterStatus:
		out = api.ClusterStatus{Cluster: "test", Node: "c1", LeaderID: "c1", LeaderAddr: "127.0.0.1:7001", Term: 3, Stable: 1,
			Servers: []api.ServerInfo{{ID: "c1", Addr: "127.0.0.1:7001", Suffrage: "Voter", Leader: true}}}
	case api.VerbAgentsList:
		out = []api.Agent{
			{ID: "a1", Labels: map[string]string{"tier": "canary"}, Connected: true, Served: 1, Serving: 2},
			{ID: "a2", Labels: map[string]string{"tier": "prod"}, Connected: true, LastError: "trainer exited 1"},
			{ID: "a3", Labels: map[string]string{"tier": "prod"}, Revoked: true},
		}
	case api.VerbAgentsShow:
		out = api.Agent{ID: "a1", Connected: true, Status: &api.AgentStatus{DataKind: "mnist", TrainExamples: 600,
			Events: []api.AgentEvent{{At: t0, Level: "warn", Message: "slow disk"}}}}
	case api.VerbJobsList:
		out = []api.Job{twinJob}
	case api.VerbJobsStatus:
		var r api.IDRequest
		json.Unmarshal(body, &r)
		if r.ID != twinJob.ID {
			return nil, &protocol.Error{Code: protocol.CodeNotFound, Message: "job " + r.ID}
		}
		out = twinJob
	case api.VerbRoundsList:
		out = twinRounds
	case api.VerbRoundsShow:
		out = twinRounds[0]
	case api.VerbModelsList:
		out = twinModels
	case api.VerbRolloutStatus:
		out = []api.Rollout{twinRollout}
	case api.VerbAuditList:
		out = []api.AuditEntry{{At: t0, By: "operator:alice (console)", Action: "job.stop", Target: "mnist-1"}}
	case api.VerbJobsStop, api.VerbAgentsRevoke, api.VerbRolloutAction:
		return []byte("null"), nil
	case api.VerbJobsStart:
		out = api.Job{ID: "new-1"}
	default:
		return nil, &protocol.Error{Code: protocol.CodeUnsupported, Message: verb}
	}
	return json.Marshal(out)
}

func (b *twin) Model(_ context.Context, v uint64) ([]byte, error) {
	if v == 2 {
		return []byte("model-file-2"), nil
	}
	return nil, &protocol.Error{Code: protocol.CodeNotFound, Message: "no model"}
}

func (b *twin) Revoked(serial string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.revoked[serial]
}

func (b *twin) callsOf(verb string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, c := range b.calls {
		if strings.Contains(c, " "+verb+" ") {
			out = append(out, c)
		}
	}
	return out
}

// newTwin starts a console on loopback over the twin; clock, if set,
// replaces the console's.
func newTwin(t *testing.T, clock func() time.Time) (*Server, *twin) {
	t.Helper()
	be := &twin{revoked: map[string]bool{}}
	s, err := New(Config{Listen: "127.0.0.1:0", Node: "c1", Now: clock}, be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, be
}

var alice = Operator{Name: "alice", Serial: "a11ce"}

// client is a browser stand-in: it keeps cookies and does not follow
// redirects.
func client(t *testing.T) *http.Client {
	t.Helper()
	jar := &simpleJar{}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type simpleJar struct {
	mu sync.Mutex
	c  []*http.Cookie
}

func (j *simpleJar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cs {
		if c.MaxAge < 0 {
			j.c = nil
			continue
		}
		j.c = append(j.c[:0], c)
	}
}

func (j *simpleJar) Cookies(*url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]*http.Cookie(nil), j.c...)
}

// logIn opens a session for op and returns the browser.
func logIn(t *testing.T, s *Server, op Operator) *http.Client {
	t.Helper()
	link, _, err := s.Login(op, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t)
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values, origin string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// samplePath fills a route pattern's wildcards.
func samplePath(pattern string) string {
	p := strings.TrimSuffix(pattern, "{$}")
	return regexp.MustCompile(`\{[a-z]+\}`).ReplaceAllStringFunc(p, func(w string) string {
		switch w {
		case "{version}":
			return "2"
		case "{action}":
			return "rollback"
		case "{file}":
			return "console.css"
		}
		return "x1"
	})
}

// TestEveryPathIs401WithoutSession asks every route of the table (and
// paths that are none) without a cookie, with a made-up cookie, and with
// a spent login link: each answer is 401, and the backend is never
// called.
func TestEveryPathIs401WithoutSession(t *testing.T) {
	s, be := newTwin(t, nil)
	link, _, err := s.Login(alice, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client(t).Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spent := link // the same link again

	paths := []struct{ method, path string }{{"GET", "/nope"}, {"POST", "/"}, {"GET", "/api/nope"}, {"DELETE", "/jobs/x1"}}
	for _, rt := range routeTable {
		paths = append(paths, struct{ method, path string }{rt.method, samplePath(rt.pattern)})
	}
	if len(paths) < 30 {
		t.Fatalf("only %d paths: the route table shrank?", len(paths))
	}
	for _, p := range paths {
		for _, cookie := range []string{"", "made-up"} {
			req, _ := http.NewRequest(p.method, s.URL()+p.path, nil)
			if cookie != "" {
				req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s (cookie %q): %d, want 401", p.method, p.path, cookie, resp.StatusCode)
			}
			if strings.Contains(string(b), "mnist-1") {
				t.Errorf("%s %s: the 401 page shows cluster data", p.method, p.path)
			}
		}
	}
	if code, _ := get(t, client(t), spent); code != http.StatusUnauthorized {
		t.Errorf("a spent login link: %d, want 401", code)
	}
	if code, _ := get(t, client(t), s.URL()+"/login?token=guess"); code != http.StatusUnauthorized {
		t.Errorf("a made-up login link: %d, want 401", code)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.calls) != 0 {
		t.Errorf("the backend was called without a session: %v", be.calls)
	}
}

// TestLoginLinkOnceAndCookie: a link opens one session with a cookie
// that scripts cannot read and other sites cannot send; the link is
// spent; an expired link and a revoked certificate open nothing; a
// session ends when its certificate is revoked, at its end, and on
// logout.
func TestLoginLinkOnceAndCookie(t *testing.T) {
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s, be := newTwin(t, clock)

	link, exp, err := s.Login(alice, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(t0.Add(DefaultLoginTTL)) {
		t.Errorf("link expires %v, want %v", exp, t0.Add(DefaultLoginTTL))
	}
	c := client(t)
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == cookieName {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Secure || sc.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, Path /", sc)
	}
	if code, body := get(t, c, s.URL()+"/"); code != 200 || !strings.Contains(body, `id="operator">alice<`) {
		t.Fatalf("cluster page with the session: %d, operator alice shown %v", code, strings.Contains(body, "alice"))
	}
	if code, _ := get(t, client(t), link); code != http.StatusUnauthorized {
		t.Errorf("the link opened a second session: %d", code)
	}

	// Expired links.
	link2, _, _ := s.Login(alice, time.Minute)
	advance(2 * time.Minute)
	if code, _ := get(t, client(t), link2); code != http.StatusUnauthorized {
		t.Errorf("an expired link: %d, want 401", code)
	}
	if _, _, err := s.Login(alice, MaxLoginTTL+time.Second); !errors.Is(err, ErrLoginTTL) {
		t.Errorf("a link longer than MaxLoginTTL: %v, want ErrLoginTTL", err)
	}

	// The session ends at the certificate's expiry, before SessionTTL.
	short := Operator{Name: "bob", Serial: "b0b", Expires: now.Add(time.Hour)}
	cb := logIn(t, s, short)
	advance(61 * time.Minute)
	if code, _ := get(t, cb, s.URL()+"/"); code != http.StatusUnauthorized {
		t.Errorf("a session past its certificate's expiry: %d, want 401", code)
	}
	// A session past SessionTTL.
	if code, _ := get(t, c, s.URL()+"/"); code != 200 {
		t.Fatalf("alice's session ended early: %d", code)
	}
	advance(DefaultSessionTTL)
	if code, _ := get(t, c, s.URL()+"/"); code != http.StatusUnauthorized {
		t.Errorf("a session past SessionTTL: %d, want 401", code)
	}

	// Revocation ends a live session and spoils unspent links.
	c = logIn(t, s, alice)
	link3, _, _ := s.Login(alice, 0)
	be.mu.Lock()
	be.revoked[alice.Serial] = true
	be.mu.Unlock()
	if code, _ := get(t, c, s.URL()+"/jobs"); code != http.StatusUnauthorized {
		t.Errorf("a session of a revoked certificate: %d, want 401", code)
	}
	if code, _ := get(t, client(t), link3); code != http.StatusUnauthorized {
		t.Errorf("a link of a revoked certificate: %d, want 401", code)
	}
	be.mu.Lock()
	be.revoked[alice.Serial] = false
	be.mu.Unlock()

	// Logout.
	c = logIn(t, s, alice)
	_, body := get(t, c, s.URL()+"/")
	csrf := csrfOf(t, body)
	if code, _ := post(t, c, s.URL()+"/logout", url.Values{"csrf": {csrf}}, ""); code != 200 {
		t.Fatalf("logout: %d", code)
	}
	if code, _ := get(t, c, s.URL()+"/"); code != http.StatusUnauthorized {
		t.Errorf("after logout: %d, want 401", code)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the page")
	}
	return m[1]
}

// TestActionsNeedCSRFAndConfirm: an action without the session's CSRF
// token, or from another origin, is refused before any call; the
// confirmation page carries the token; the confirmed action is one admin
// call made as the operator.
func TestActionsNeedCSRFAndConfirm(t *testing.T) {
	s, be := newTwin(t, nil)
	c := logIn(t, s, alice)
	code, page := get(t, c, s.URL()+"/rollouts/ro-2-ab/rollback")
	if code != 200 || !strings.Contains(page, `id="confirm-button"`) {
		t.Fatalf("confirmation page: %d", code)
	}
	csrf := csrfOf(t, page)
	if len(be.callsOf(api.VerbRolloutAction)) != 0 {
		t.Fatal("the confirmation page acted")
	}
	for _, tc := range []struct {
		name, csrf, origin string
	}{
		{"no token", "", ""},
		{"wrong token", "x" + csrf, ""},
		{"other origin", csrf, "https://evil.example"},
		{"opaque origin", csrf, "null"},
	} {
		if code, _ := post(t, c, s.URL()+"/rollouts/ro-2-ab/rollback", url.Values{"csrf": {tc.csrf}}, tc.origin); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, code)
		}
	}
	if n := len(be.callsOf(api.VerbRolloutAction)); n != 0 {
		t.Fatalf("%d rollout actions made by refused requests", n)
	}
	code, _ = post(t, c, s.URL()+"/rollouts/ro-2-ab/rollback", url.Values{"csrf": {csrf}, "reason": {"canary looks off"}}, s.URL())
	if code != http.StatusSeeOther {
		t.Fatalf("confirmed rollback: %d, want 303", code)
	}
	if _, page := get(t, c, s.URL()+"/rollouts/ro-2-ab"); !strings.Contains(page, `id="flash">rollout ro-2-ab: rollback committed<`) {
		t.Error("the page after the rollback does not say it was committed")
	}
	if _, page := get(t, c, s.URL()+"/rollouts/ro-2-ab?done=pwned"); strings.Contains(page, "flash") {
		t.Error("a message shown twice, or taken from the URL")
	}
	calls := be.callsOf(api.VerbRolloutAction)
	if len(calls) != 1 || !strings.HasPrefix(calls[0], "operator:alice (console) ") ||
		!strings.Contains(calls[0], `"action":"rollback"`) || !strings.Contains(calls[0], `"id":"ro-2-ab"`) || !strings.Contains(calls[0], "canary looks off") {
		t.Fatalf("rollout calls %q: want one rollback of ro-2-ab as operator:alice (console) with the reason", calls)
	}
	// The other actions, each through its confirmation.
	for _, a := range []struct{ page, verb string }{
		{"/jobs/mnist-1/stop", api.VerbJobsStop},
		{"/agents/a1/revoke", api.VerbAgentsRevoke},
	} {
		code, page := get(t, c, s.URL()+a.page)
		if code != 200 || !strings.Contains(page, `id="confirm-button"`) {
			t.Fatalf("%s: %d", a.page, code)
		}
		if code, _ := post(t, c, s.URL()+a.page, url.Values{"csrf": {csrfOf(t, page)}}, ""); code != http.StatusSeeOther {
			t.Errorf("POST %s: %d", a.page, code)
		}
		if n := len(be.callsOf(a.verb)); n != 1 {
			t.Errorf("%s: %d calls of %s, want 1", a.page, n, a.verb)
		}
	}
	// Starting a job: the first POST only shows the normalized spec.
	_, page = get(t, c, s.URL()+"/jobs/new")
	csrf = csrfOf(t, page)
	spec := `{"name":"new","model":"logreg","data":{"kind":"mnist"},"rounds":3}`
	code, page = post(t, c, s.URL()+"/jobs/new", url.Values{"csrf": {csrf}, "spec": {spec}}, "")
	if code != 200 || !strings.Contains(page, "min_clients") || len(be.callsOf(api.VerbJobsStart)) != 0 {
		t.Fatalf("job review: %d, started %d", code, len(be.callsOf(api.VerbJobsStart)))
	}
	code, _ = post(t, c, s.URL()+"/jobs/new", url.Values{"csrf": {csrf}, "spec": {spec}, "confirm": {"yes"}}, "")
	if code != http.StatusSeeOther || len(be.callsOf(api.VerbJobsStart)) != 1 {
		t.Fatalf("confirmed start: %d, started %d", code, len(be.callsOf(api.VerbJobsStart)))
	}
	if code, _ := post(t, c, s.URL()+"/jobs/new", url.Values{"csrf": {csrf}, "spec": {`{"modle":"x"}`}}, ""); code != http.StatusBadRequest {
		t.Errorf("a spec with an unknown field: %d, want 400", code)
	}
}

// TestPagesRender opens every page over the twin's answers and finds
// what each must show; a template error would answer 5xx.
func TestPagesRender(t *testing.T) {
	s, _ := newTwin(t, nil)
	c := logIn(t, s, alice)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{"Cluster", "c1", "2 / 3", "1 running"}},
		{"/agents", []string{"a1", "a2", "a3", "trainer exited 1", "3 of 3"}},
		{"/agents?label=tier%3Dprod&state=connected", []string{"a2", "1 of 3"}},
		{"/agents/a1", []string{"slow disk", "mnist"}},
		{"/jobs", []string{"mnist-1", "2/5"}},
		{"/jobs/mnist-1", []string{`id="rounds-done">2<`, "<polyline", "held-out accuracy", "ε = 1.5", `data-live="/jobs/mnist-1/live"`}},
		{"/jobs/mnist-1/live", []string{`id="rounds-done">2<`, "<svg"}},
		{"/rounds/1", []string{"masked_input", "2/3 kept, 1 dropped", "train_loss", "a3"}},
		{"/models", []string{"v2", "v1", "/models/2/export", "stable"}},
		{"/models/2", []string{"Lineage", "v1", "bb22"}},
		{"/rollouts", []string{"ro-2-ab", "all (2/2)"}},
		{"/rollouts/ro-2-ab", []string{"canary (1/2)", "80.00%", "78.00%", "pass", `id="action-rollback"`}},
		{"/audit", []string{"operator:alice (console)", "job.stop"}},
		{"/api/jobs/mnist-1", []string{`"rounds_done":2`}},
		{"/static/console.js", []string{"data-live"}},
	} {
		code, body := get(t, c, s.URL()+tc.path)
		if code != 200 {
			t.Errorf("%s: %d: %.300s", tc.path, code, body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %q missing", tc.path, w)
			}
		}
	}
	if code, _ := get(t, c, s.URL()+"/jobs/nope"); code != http.StatusNotFound {
		t.Errorf("an unknown job: %d, want 404", code)
	}
	if code, body := get(t, c, s.URL()+"/agents?label=tier%3Dnone"); code != 200 || strings.Contains(body, `href="/agents/a1"`) {
		t.Errorf("a filter that matches nothing still shows a1 (%d)", code)
	}
	resp, err := c.Get(s.URL() + "/models/2/export")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "model-file-2" || !strings.Contains(resp.Header.Get("Content-Disposition"), "fedge-model-2") {
		t.Errorf("export: %q, %q", b, resp.Header.Get("Content-Disposition"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
}

// TestNonLoopbackNeedsTLS: plain HTTP only on loopback unless allowed;
// over TLS the cookie is Secure.
func TestNonLoopbackNeedsTLS(t *testing.T) {
	be := &twin{revoked: map[string]bool{}}
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		if _, err := New(Config{Listen: addr}, be); !errors.Is(err, ErrInsecure) {
			t.Errorf("%s without TLS: %v, want ErrInsecure", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		s, err := New(Config{Listen: addr}, be)
		if err != nil {
			if addr == "[::1]:0" && strings.Contains(err.Error(), "assign") {
				continue // no IPv6 loopback on this host
			}
			t.Errorf("%s: %v", addr, err)
			continue
		}
		s.Close()
	}
	s, err := New(Config{Listen: "0.0.0.0:0", AllowInsecureHTTP: true, URL: "http://127.0.0.1"}, be)
	if err != nil {
		t.Fatalf("allowed insecure: %v", err)
	}
	s.Close()

	// TLS on every address, and a Secure cookie.
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	ts.Close()
	s, err = New(Config{Listen: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, be)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s over TLS", s.URL())
	}
	link, _, _ := s.Login(alice, 0)
	c := client(t)
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the test's own self-signed server
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Errorf("cookies over TLS %+v: want one Secure cookie", resp.Cookies())
	}
}

// TestLineChart draws the points it is given and says so when there are none.
func TestLineChart(t *testing.T) {
	svg := string(lineChart("c", "Loss", []series{{Name: "loss", Color: colorBlue, Points: []point{{1, 2}, {2, 1.5}, {3, 1}}}}))
	if n := strings.Count(svg, `<circle class="pt"`); n != 3 {
		t.Errorf("%d points drawn, want 3", n)
	}
	if !strings.Contains(svg, "<polyline") || !strings.Contains(svg, "round 3: 1<") {
		t.Errorf("no line or no point title: %s", svg)
	}
	if empty := string(lineChart("c", "Loss", []series{{Name: "loss"}})); !strings.Contains(empty, "no committed round yet") || strings.Contains(empty, "<polyline") {
		t.Errorf("empty chart: %s", empty)
	}
	if s := string(lineChart("c", `<script>`, nil)); strings.Contains(s, "<script>") {
		t.Error("the title is not escaped")
	}
}

// BenchmarkJobPage renders a job's page (two charts, the rounds table)
// over the twin's answers, session check included.
func BenchmarkJobPage(b *testing.B) {
	be := &twin{revoked: map[string]bool{}}
	s, err := New(Config{Listen: "127.0.0.1:0"}, be)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	link, _, _ := s.Login(alice, 0)
	tok := strings.TrimPrefix(link, s.URL()+"/login?token=")
	cookie, _, ok := s.redeem(tok)
	if !ok {
		b.Fatal("no session")
	}
	req := httptest.NewRequest("GET", "/jobs/mnist-1", nil)
	req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
