//go:build ui

package testcluster_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
)

// chromium finds a Chromium (or Chrome) binary: $FEDGE_CHROMIUM, else
// the usual names on PATH. Without one the test fails under CI and skips
// locally, saying how to get it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FEDGE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Missing(t, "no Chromium to drive: run make test-ui (it installs Debian's chromium), or apt-get install chromium, or set FEDGE_CHROMIUM")
	return ""
}

// TestConsoleInBrowser drives a real headless Chromium through the web
// console of a follower in a 3-node cluster with 3 agents: it logs in
// with a link from the admin API, opens every page, watches a running
// job's round count rise on the page (the page refreshes itself), filters
// the agents, and rolls back a rollout through its confirmation page;
// the rollback is committed as the operator via the console. Screenshots
// of the pages go to $FEDGE_UI_SCREENSHOTS (make test-ui-screenshots
// sets docs/console), else to a temporary folder.
func TestConsoleInBrowser(t *testing.T) {
	chrome := chromium(t)
	shots := os.Getenv("FEDGE_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, testcluster.Options{Agents: 3, Canaries: 2, Shards: 200, Node: func(i int, cfg *coordinator.Config) {
		cfg.UIListen = "127.0.0.1:0"
	}})
	li, _ := c.Leader()
	follower := c.Nodes[(li+1)%len(c.Nodes)]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := api.Load(filepath.Join(c.Dir, "admin"), []string{follower.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.WindowSize(1280, 860),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-gpu", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses root without it (CI containers)
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// The first call starts the browser; it must not carry a timeout of
	// its own (the browser lives as long as that call's context).
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", chrome, err)
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	value := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
		defer scancel()
		v, err := chromedp.Run(sctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return strings.TrimSpace(v)
	}
	shot := func(name string) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
		defer scancel()
		png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot %s is not a PNG", name)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := follower.UIURL()
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	open := func(path, sel string) {
		t.Helper()
		run("open "+path, chromedp.Navigate(base+path), chromedp.WaitVisible(css(sel)))
	}
	text := func(sel string) string {
		t.Helper()
		return value("read "+sel, chromedp.Text(css(sel)))
	}

	// Without a session: the 401 page.
	open("/jobs", "h1")
	if h := text("h1"); h != "Log in" {
		t.Fatalf("the jobs page without a session shows %q, want the log-in page", h)
	}
	login, err := admin.Console().Login(ctx, api.ConsoleLoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	run("log in", chromedp.Navigate(login.URL), chromedp.WaitVisible(css("#cluster-name")))
	if op := text("#operator"); op != "admin" {
		t.Fatalf("logged in as %q, want admin", op)
	}
	if name := text("#cluster-name"); name != "testcluster" {
		t.Errorf("cluster page names %q", name)
	}
	shot("cluster")

	// The job's page refreshes itself: the round count rises without a reload.
	deadline := api.Duration(60 * time.Second)
	job := c.StartJob(api.JobSpec{
		Name: "mnist-logreg", Model: "logreg", Rounds: 20, Fraction: 1, MinClients: 3, Seed: 1, EvalEvery: 3,
		Data:     api.DataSchema{Kind: "mnist"},
		Plan:     api.LocalPlan{Epochs: 1, BatchSize: 20, LR: 0.1},
		SecAgg:   api.SecAggSpec{Enabled: true},
		Deadline: api.Deadlines{Download: deadline, Train: deadline, Stage: deadline},
	})

	open("/jobs/"+job, "#rounds-done")
	first, err := strconv.Atoi(text("#rounds-done"))
	if err != nil {
		t.Fatal(err)
	}
	var now int
	testutil.WaitFor(t, 90*time.Second, "the job page's round count to rise", func() bool {
		now, _ = strconv.Atoi(text("#rounds-done"))
		return now > first
	})
	sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
	mark, err := chromedp.Run(sctx, chromedp.AttributeValue(css("#live"), "data-updated"))
	scancel()
	if err != nil || !mark.Exists {
		t.Error("the round count rose, but not through the page's own refresh")
	}
	t.Logf("rounds on the page: %d -> %d", first, now)
	c.WaitCommitted(job, 20, 120*time.Second)
	testutil.WaitFor(t, 30*time.Second, "the job page to show it done", func() bool { return text("#job-state") == "done" })
	run("charts", chromedp.WaitVisible(css("#chart-accuracy circle.pt")))
	shot("job")
	open("/jobs", "#jobs")
	shot("jobs")

	// A training round with its stages.
	rounds := c.Rounds(job)
	open("/rounds/"+strconv.FormatUint(rounds[len(rounds)-1].ID, 10), "#stages")
	shot("round")

	// Agents, filtered by label.
	open("/agents", "#agents")
	run("filter", chromedp.SetValue(css(`#agent-filter input[name="label"]`), "tier=prod"),
		chromedp.Submit(css(`#agent-filter input[name="label"]`)), chromedp.WaitVisible(css(`#agents`)))
	sctx, scancel = context.WithTimeout(bctx, 30*time.Second)
	rows, err := chromedp.Run(sctx, chromedp.Evaluate[int](`document.querySelectorAll("#agents tbody a").length`))
	scancel()
	if err != nil || rows != 1 {
		t.Errorf("agents with tier=prod: %d rows (%v), want 1", rows, err)
	}
	shot("agents")

	// Models and lineage.
	js, err := admin.Jobs().Status(ctx, job, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	open("/models", "#models")
	shot("models")
	open("/models/"+strconv.FormatUint(js.Model, 10), "#lineage")
	shot("model")

	// A rollout to the whole fleet passes the gate at once; a rollout to
	// the canaries waits (2 of them, 3 needed to hide each one's
	// accuracy): roll that one back from the console.
	ro, err := admin.Rollouts().Start(ctx, api.RolloutRequest{Model: js.Model, Gate: "accuracy>=baseline-5",
		Cohorts: []api.Cohort{{Name: "fleet", Percent: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 90*time.Second, "the fleet rollout's gate decision", func() bool {
		ros, err := admin.Rollouts().Status(ctx, api.QueryOptions{})
		return err == nil && len(ros) == 1 && ros[0].State == api.RolloutPromoted
	})
	open("/rollouts/"+ro.ID, "#decisions")
	if d := text("#decisions tbody tr"); !strings.Contains(d, "pass") || !strings.Contains(d, "3 agents") {
		t.Errorf("the gate's decision row %q: want a pass on 3 agents' aggregated evidence", d)
	}
	shot("rollout")
	ms, err := admin.Models().List(ctx, api.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var older uint64 // a version retention kept, other than the stable one
	for _, m := range ms {
		if m.Size > 0 && m.Version != js.Model {
			older = m.Version
		}
	}
	ro, err = admin.Rollouts().Start(ctx, api.RolloutRequest{Model: older, Gate: "accuracy>=baseline-5",
		Cohorts: []api.Cohort{{Name: "canary", Selector: map[string]string{"tier": "canary"}, Percent: 100}, {Name: "fleet", Percent: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	open("/rollouts/"+ro.ID, "#action-rollback")
	run("rollback", chromedp.Click(css("#action-rollback")), chromedp.WaitVisible(css("#confirm-button")),
		chromedp.SetValue(css(`input[name="reason"]`), "browser test"))
	shot("confirm")
	run("confirm", chromedp.Click(css("#confirm-button")), chromedp.WaitVisible(css("#flash")))
	if st := text("#rollout-state"); st != api.RolloutRolledBack {
		t.Errorf("rollout page after the rollback shows %q", st)
	}
	ros, err := c.Admin.Rollouts().Status(ctx, api.QueryOptions{Consistent: true})
	if err != nil || len(ros) != 2 || len(ros[1].Decisions) == 0 {
		t.Fatalf("rollouts %+v, %v", ros, err)
	}
	last := ros[1].Decisions[len(ros[1].Decisions)-1]
	if ros[1].State != api.RolloutRolledBack || last.Action != api.ActionRollback || !strings.HasPrefix(last.By, "operator:admin (console)") || last.Reason != "browser test" {
		t.Errorf("rollout %s, last decision %+v: want rolled back by operator:admin (console) for \"browser test\"", ros[1].State, last)
	}
	open("/rollouts", "#rollouts")
	shot("rollouts")
	open("/audit", "#audit")
	if a := text("#audit tbody tr"); !strings.Contains(a, "rollout.rollback") || !strings.Contains(a, "operator:admin (console)") {
		t.Errorf("newest audit record %q: want the console's rollback", a)
	}
	shot("audit")
}
