package testcluster_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
)

// consoleBrowser is an HTTP client that keeps the console's cookie.
func consoleBrowser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

func consoleGet(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consoleAct opens an action's confirmation page and confirms it.
func consoleAct(t *testing.T, c *http.Client, base, path string, form url.Values) (int, string) {
	t.Helper()
	code, page := consoleGet(t, c, base+path)
	m := consoleCSRF.FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("%s: %d, CSRF token found %v: %.400s", path, code, m != nil, page)
	}
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", m[1])
	resp, err := c.PostForm(base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestConsoleOnAFollower runs the console on a follower of a real
// 3-node cluster, logged in with a link the admin API minted there: the
// agents page shows the connections only the leader knows (forwarded),
// a job started and stopped and an agent revoked through it are written
// by the leader and recorded in the audit trail as the operator via the
// console, the link works once, a node without a console refuses to mint
// one, and revoking the operator's certificate ends the session.
func TestConsoleOnAFollower(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Agents: 3, Shards: 200, Node: func(i int, cfg *coordinator.Config) {
		if i < 2 {
			cfg.UIListen = "127.0.0.1:0"
		}
	}})
	li, _ := c.Leader()
	fi := 0
	if li == 0 {
		fi = 1
	}
	follower := c.Nodes[fi]
	if follower.UIAddr() == "" {
		t.Fatal("the follower serves no console")
	}
	adminDir := filepath.Join(c.Dir, "admin")
	viaFollower, err := api.Load(adminDir, []string{follower.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer viaFollower.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	login, err := viaFollower.Console().Login(ctx, api.ConsoleLoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if login.Node != follower.ID() || !strings.HasPrefix(login.URL, follower.UIURL()+"/login?token=") {
		t.Fatalf("login link %+v: want one to %s's console %s", login, follower.ID(), follower.UIURL())
	}
	b := consoleBrowser(t)
	base := follower.UIURL()
	if code, _ := consoleGet(t, b, base+"/agents"); code != http.StatusUnauthorized {
		t.Fatalf("the agents page before login: %d, want 401", code)
	}
	if code, page := consoleGet(t, b, login.URL); code != 200 || !strings.Contains(page, `id="operator">admin<`) {
		t.Fatalf("opening the link: %d", code)
	}
	if code, _ := consoleGet(t, consoleBrowser(t), login.URL); code != http.StatusUnauthorized {
		t.Errorf("the link opened a second session: %d", code)
	}

	// Connections are the leader's knowledge: the follower forwards.
	testutil.WaitFor(t, 30*time.Second, "3 connected agents on the follower's agents page", func() bool {
		_, page := consoleGet(t, b, base+"/agents?state=connected")
		return strings.Count(page, `class="badge ok">connected<`) == 3
	})

	// A job through the follower's console: review, confirm, stop.
	spec := `{"name":"console","model":"logreg","data":{"kind":"mnist"},"rounds":50,"fraction":1,"min_clients":3,"plan":{"epochs":1,"batch_size":20,"lr":0.1}}`
	code, page := consoleAct(t, b, base, "/jobs/new", url.Values{"spec": {spec}, "confirm": {"yes"}})
	if code != 200 || !strings.Contains(page, "started") {
		t.Fatalf("starting a job: %d: %.400s", code, page)
	}
	jobs, err := c.Admin.Jobs().List(ctx, api.QueryOptions{Consistent: true})
	if err != nil || len(jobs) != 1 || jobs[0].Spec.Name != "console" {
		t.Fatalf("jobs %+v, %v: want the console's", jobs, err)
	}
	job := jobs[0].ID
	if code, _ := consoleAct(t, b, base, "/jobs/"+job+"/stop", nil); code != 200 {
		t.Fatalf("stopping the job: %d", code)
	}
	agent := c.Fleet[2].Daemon().ID()
	if code, _ := consoleAct(t, b, base, "/agents/"+agent+"/revoke", nil); code != 200 {
		t.Fatalf("revoking %s: %d", agent, code)
	}
	st, err := c.Admin.Jobs().Status(ctx, job, api.QueryOptions{Consistent: true})
	if err != nil || st.State != api.JobStopped {
		t.Errorf("job %s: %q, %v; want stopped", job, st.State, err)
	}
	ag, err := c.Admin.Agents().Show(ctx, agent, api.QueryOptions{Consistent: true})
	if err != nil || !ag.Revoked {
		t.Errorf("agent %s revoked %v, %v", agent, ag.Revoked, err)
	}

	// The audit trail names the operator, the console and the follower.
	audit, err := c.Admin.Admins().Audit(ctx, api.AuditRequest{}, api.QueryOptions{Consistent: true})
	if err != nil {
		t.Fatal(err)
	}
	who := "operator:admin (console) via " + follower.ID()
	for _, want := range []struct{ action, target string }{
		{coordinator.AuditJobStart, job}, {coordinator.AuditJobStop, job}, {coordinator.AuditAgentRevoke, agent},
	} {
		found := false
		for _, a := range audit {
			found = found || (a.Action == want.action && a.Target == want.target && a.By == who)
		}
		if !found {
			t.Errorf("no audit record %s %s by %q in %+v", want.action, want.target, who, audit)
		}
	}
	if code, page := consoleGet(t, b, base+"/audit"); code != 200 || !strings.Contains(page, who) {
		t.Errorf("the audit page (%d) does not show %q", code, who)
	}

	// The third node serves no console.
	third, err := api.Load(adminDir, []string{c.Nodes[2].Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	_, err = third.Console().Login(ctx, api.ConsoleLoginRequest{})
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest || !strings.Contains(pe.Message, "serves no web console") {
		t.Errorf("login on a node without a console: %v", err)
	}

	// Revoking the operator's certificate ends the console session.
	if _, err := c.Admin.Admins().Revoke(ctx, api.AdminRevokeRequest{Name: "admin"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the revoked operator's console session to end", func() bool {
		code, _ := consoleGet(t, b, base+"/")
		return code == http.StatusUnauthorized
	})
}
