package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/internal/wait"
)

// TestCoordinatorConsoleFlags: fedge coordinator refuses to serve the
// console over plain HTTP on a non-loopback address, serves it on
// loopback with -ui-listen, and fedge console login prints a link that
// opens it once.
func TestCoordinatorConsoleFlags(t *testing.T) {
	addr := testutil.FreeUDPAddrs(t, 1)[0]
	dir := t.TempDir()
	if code, _, errs := runCLI(t, "init", "-cluster", "k", "-peers", "c1="+addr, "-out", dir); code != exitOK {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	cfg := filepath.Join(dir, "c1", coordinatorConfigFile)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var o, e syncBuffer
	if code := runCoordinatorContext(ctx, []string{"-config", cfg, "-ui-listen", "0.0.0.0:0"}, &o, &e); code != exitFailed || !strings.Contains(e.String(), "needs TLS") {
		t.Fatalf("-ui-listen 0.0.0.0:0 without TLS: exit %d\n%s%s", code, o.String(), e.String())
	}

	o, e = syncBuffer{}, syncBuffer{}
	nctx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- runCoordinatorContext(nctx, []string{"-config", cfg, "-ui-listen", "127.0.0.1:0"}, &o, &e)
	}()
	defer func() { stop(); <-done }()
	consoleRE := regexp.MustCompile(`web console at (http://127\.0\.0\.1:\d+)`)
	if err := wait.Until(ctx, 30*time.Second, func() bool { return consoleRE.MatchString(o.String()) }); err != nil {
		t.Fatalf("no console announced: %v\n%s%s", err, o.String(), e.String())
	}
	base := consoleRE.FindStringSubmatch(o.String())[1]

	var link string
	if err := wait.Until(ctx, 30*time.Second, func() bool {
		code, out, _ := runCLI(t, "console", "login", "-coordinators", addr, "-admin-dir", filepath.Join(dir, "admin"), "-ttl", "1m")
		if m := regexp.MustCompile(`(http://\S+/login\?token=\S+)`).FindStringSubmatch(out); code == exitOK && m != nil {
			link = m[1]
		}
		return link != ""
	}); err != nil {
		t.Fatalf("fedge console login printed no link: %v", err)
	}
	if !strings.HasPrefix(link, base+"/login?token=") {
		t.Fatalf("link %s is not to the console at %s", link, base)
	}
	if code, _, errs := runCLI(t, "console", "login", "-coordinators", addr, "-admin-dir", filepath.Join(dir, "admin"), "-ttl", "1h"); code == exitOK || !strings.Contains(errs, "lifetime") {
		t.Errorf("a 1h link: exit %d: %s", code, errs)
	}
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(base + "/"); code != http.StatusUnauthorized {
		t.Errorf("the console without login: %d, want 401", code)
	}
	// The link answers with the session cookie and sends the browser on.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("opening the link: %d with %d cookies, want 303 and a session cookie", resp.StatusCode, len(resp.Cookies()))
	}
	if code, _ := get(link); code != http.StatusUnauthorized {
		t.Errorf("the link a second time: %d, want 401", code)
	}
}
