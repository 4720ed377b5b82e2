package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// runCLI runs the binary's dispatch and returns exit code, stdout, stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunVerbs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"help", nil, 0, "usage: fedge"},
		{"help lists exit codes", []string{"-h"}, 0, "4 cluster unreachable"},
		{"version", []string{"version"}, 0, "fedge "},
		{"version extra arg", []string{"version", "x"}, 2, "unexpected argument"},
		{"unknown", []string{"frobnicate"}, 2, "unknown command"},
		{"group without verb", []string{"jobs"}, 2, "missing verb"},
		{"group unknown verb", []string{"models", "frob"}, 2, "unknown verb"},
		{"group help", []string{"rollout", "-h"}, 0, "rollback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errs)
			}
			if !strings.Contains(out+errs, tt.contains) {
				t.Fatalf("output %q lacks %q", out+errs, tt.contains)
			}
		})
	}
}

// leafCommands are every verb of the binary, as command-line prefixes.
var leafCommands = [][]string{
	{"init"}, {"coordinator"}, {"agent"}, {"admin-cert"}, {"version"},
	{"cluster", "status"}, {"cluster", "join"}, {"cluster", "remove"},
	{"tokens", "create"}, {"tokens", "list"}, {"tokens", "revoke"},
	{"admins", "list"}, {"admins", "revoke"}, {"admins", "audit"},
	{"agents", "list"}, {"agents", "show"}, {"agents", "revoke"}, {"agents", "label"},
	{"jobs", "start"}, {"jobs", "list"}, {"jobs", "status"}, {"jobs", "stop"},
	{"rounds", "list"}, {"rounds", "show"},
	{"models", "list"}, {"models", "show"}, {"models", "export"}, {"models", "pin"},
	{"models", "explain"},
	{"rollout", "start"}, {"rollout", "status"}, {"rollout", "pause"}, {"rollout", "resume"},
	{"rollout", "promote"}, {"rollout", "rollback"},
	{"console", "login"},
	{"dev"},
	{"simulate"},
}

func TestEveryVerbHasHelpWithExample(t *testing.T) {
	for _, path := range leafCommands {
		t.Run(strings.Join(path, "_"), func(t *testing.T) {
			for _, h := range []string{"-h", "--help"} {
				code, out, _ := runCLI(t, append(path, h)...)
				if code != 0 {
					t.Fatalf("%s: exit %d, want 0", h, code)
				}
				want := "Usage: fedge " + strings.Join(path, " ")
				_, example, _ := strings.Cut(out, "\nExample:\n")
				if !strings.Contains(out, want) || !strings.Contains(example, "fedge "+path[0]) {
					t.Fatalf("%s: help lacks %q or an example:\n%s", h, want, out)
				}
			}
		})
	}
	// Every top-level command appears in the table tested above.
	for _, c := range commands() {
		found := false
		for _, p := range leafCommands {
			found = found || p[0] == c.name
		}
		if !found {
			t.Errorf("command %q has no help test", c.name)
		}
	}
}

func TestEveryVerbRejectsUnknownFlags(t *testing.T) {
	for _, path := range leafCommands {
		t.Run(strings.Join(path, "_"), func(t *testing.T) {
			code, out, errs := runCLI(t, append(path, "-no-such-flag")...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errs, "flag provided but not defined") || !strings.Contains(errs, "Usage: fedge") {
				t.Fatalf("stderr lacks the error and the usage:\n%s", errs)
			}
			if out != "" {
				t.Fatalf("usage error wrote to stdout: %q", out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Setenv(envCoordinators, "127.0.0.1:9")
	t.Setenv(envAdminDir, t.TempDir())
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badJob := write("bad.json", `{"model": "logreg", "rounds": -1}`)
	unknownField := write("unknown.json", `{"model": "logreg", "roundz": 3}`)
	badCoord := write("coord.json", `{"node_id": "c1", "data_dir": "x", "listen": "127.0.0.1:1", "bogus": 1}`)
	tests := []struct {
		name     string
		args     []string
		contains string
	}{
		{"init without flags", []string{"init"}, "-cluster is required"},
		{"init bad peers", []string{"init", "-cluster", "x", "-peers", "c1", "-out", dir}, "id=host:port"},
		{"init reserved id", []string{"init", "-cluster", "x", "-peers", "admin=127.0.0.1:1", "-out", dir}, "reserved"},
		{"coordinator unknown config field", []string{"coordinator", "-config", badCoord}, `unknown field "bogus"`},
		{"coordinator missing config", []string{"coordinator", "-config", filepath.Join(dir, "nope.json")}, "no such file"},
		{"coordinator incomplete", []string{"coordinator", "-node-id", "c1"}, "data_dir is required"},
		{"coordinator bad log level", []string{"coordinator", "-node-id", "c1", "-data-dir", dir, "-listen", "127.0.0.1:1", "-log-level", "loud"}, "log level"},
		{"agent missing config", []string{"agent", "-config", filepath.Join(dir, "nope.json")}, "no such file"},
		{"agent incomplete", []string{"agent", "-data-dir", dir}, "coordinators"},
		{"cluster join one arg", []string{"cluster", "join", "c4"}, "missing argument"},
		{"cluster join bad addr", []string{"cluster", "join", "c4", "nowhere"}, "not host:port"},
		{"cluster remove extra", []string{"cluster", "remove", "c1", "c2"}, "unexpected argument"},
		{"tokens bad labels", []string{"tokens", "create", "-labels", "region"}, "want key=value"},
		{"tokens bad ttl", []string{"tokens", "create", "-ttl", "-1h"}, "-ttl must not be negative"},
		{"agents show no id", []string{"agents", "show"}, "missing argument"},
		{"agents label no labels", []string{"agents", "label", "a1"}, "missing argument"},
		{"agents label bad pair", []string{"agents", "label", "a1", "=x"}, "want key=value"},
		{"jobs start no file", []string{"jobs", "start"}, "-f job.json is required"},
		{"jobs start invalid", []string{"jobs", "start", "-f", badJob}, "invalid job"},
		{"jobs start unknown field", []string{"jobs", "start", "-f", unknownField}, `unknown field "roundz"`},
		{"jobs status no id", []string{"jobs", "status"}, "missing argument"},
		{"jobs stop no id", []string{"jobs", "stop"}, "missing argument"},
		{"rounds list negative limit", []string{"rounds", "list", "-limit", "-2"}, "-limit"},
		{"rounds show not a number", []string{"rounds", "show", "abc"}, "not a number"},
		{"models show bad version", []string{"models", "show", "vx"}, "model version"},
		{"models export no file", []string{"models", "export", "3"}, "-o FILE is required"},
		{"models pin no version", []string{"models", "pin"}, "missing argument"},
		{"rollout start no model", []string{"rollout", "start", "-gate", "accuracy>=baseline"}, "-model is required"},
		{"rollout start no gate", []string{"rollout", "start", "-model", "3"}, "-gate is required"},
		{"rollout start bad gate", []string{"rollout", "start", "-model", "3", "-gate", "speed>9"}, "gate"},
		{"rollout start both", []string{"rollout", "start", "-model", "3", "-gate", "accuracy>=baseline", "-canary", "5%", "-stages", "all=100%"}, "not both"},
		{"rollout start bad canary", []string{"rollout", "start", "-model", "3", "-gate", "accuracy>=baseline", "-canary", "150%"}, "-canary"},
		{"rollout pause extra", []string{"rollout", "pause", "x"}, "unexpected argument"},
		{"admin-cert no name", []string{"admin-cert", "-out", dir}, "-name is required"},
		{"admin-cert no out", []string{"admin-cert", "-name", "alice"}, "-out is required"},
		{"bad coordinators", []string{"cluster", "status", "-coordinators", "nohost"}, "not host:port"},
		{"no coordinators", []string{"cluster", "status", "-coordinators", ""}, "no coordinators"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, out, errs)
			}
			if !strings.Contains(errs, tt.contains) {
				t.Fatalf("stderr lacks %q:\n%s", tt.contains, errs)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"usage", usagef("x"), exitUsage},
		{"not found", fmt.Errorf("jobs.status: %w", &protocol.Error{Code: protocol.CodeNotFound}), exitNotFound},
		{"bad request", fmt.Errorf("jobs.start: %w", &protocol.Error{Code: protocol.CodeBadRequest}), exitFailed},
		{"no leader", fmt.Errorf("jobs.start: %w", api.ErrNoLeader), exitUnreachable},
		{"deadline", &callError{fmt.Errorf("dial: %w", context.DeadlineExceeded)}, exitUnreachable},
		{"socket", &callError{errors.Join(&net.OpError{Op: "dial", Err: errors.New("refused")})}, exitUnreachable},
		{"remote failure in a call", &callError{&protocol.Error{Code: protocol.CodeInternal}}, exitFailed},
		{"local", errors.New("open admin.pem: no such file"), exitFailed},
		{"local errno", &os.PathError{Op: "open", Path: "admin.pem", Err: syscall.ENOENT}, exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Fatalf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name string
		args []string
		pos  []string
		json bool
	}{
		{"flags first", []string{"-json", "a"}, []string{"a"}, true},
		{"flags last", []string{"a", "-json"}, []string{"a"}, true},
		{"double dash", []string{"--", "-json"}, []string{"-json"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			c := newCLI(&out, &errb, cmdSpec{path: "x", args: "A"}, true)
			pos, _, ok := c.parse(tt.args, 1, 1)
			if !ok {
				t.Fatalf("parse failed: %s", errb.String())
			}
			if strings.Join(pos, " ") != strings.Join(tt.pos, " ") || c.admin.json != tt.json {
				t.Fatalf("pos %q json %v, want %q %v", pos, c.admin.json, tt.pos, tt.json)
			}
		})
	}
}

func TestRolloutCohorts(t *testing.T) {
	fleet := func(n, canaries int) []api.Agent {
		var out []api.Agent
		for i := 0; i < n; i++ {
			a := api.Agent{ID: fmt.Sprintf("a%d", i), Connected: true, Labels: map[string]string{"tier": "prod"}}
			if i < canaries {
				a.Labels["tier"] = "canary"
			}
			out = append(out, a)
		}
		return out
	}
	tests := []struct {
		canary, stages string
		agents         []api.Agent
		want           string
		refused        bool // the canary would be too small
	}{
		{"", "", fleet(100, 0), "canary=5% -> all=100%", false},
		{"10%", "", fleet(100, 0), "canary=10% -> all=100%", false},
		{"2.5", "", fleet(200, 0), "canary=2.5% -> all=100%", false},
		// A 100% canary is still a canary stage before all.
		{"100%", "", fleet(5, 0), "canary=100% -> all=100%", false},
		{"", "a=5%,b=50%,c=100%", fleet(100, 0), "a=5% -> b=50% -> c=100%", false},
		{"", "canary[tier=canary]=100%,all=100%", fleet(10, 4), "canary[tier=canary]=100% -> all=100%", false},
		// Labelled canaries are the canary cohort by default.
		{"", "", fleet(10, 4), "canary[tier=canary]=100% -> all=100%", false},
		{"50%", "", fleet(20, 8), "canary[tier=canary]=50% -> all=100%", false},
		// The default 5% of a small fleet would wait forever: refused.
		{"", "", fleet(10, 0), "canary=5% -> all=100%", true},
		{"", "", fleet(10, 2), "canary[tier=canary]=100% -> all=100%", true},
	}
	for _, tt := range tests {
		cs, err := rolloutCohorts(tt.canary, tt.stages, tt.agents)
		if err != nil {
			t.Fatalf("%q %q: %v", tt.canary, tt.stages, err)
		}
		if got := cohortsString(cs, -1); got != tt.want {
			t.Errorf("%q %q: got %q, want %q", tt.canary, tt.stages, got, tt.want)
		}
		err = canaryLargeEnough(cs, tt.agents, tt.canary)
		if (err != nil) != tt.refused {
			t.Errorf("%q %q over %d agents: refused %v, want %v", tt.canary, tt.stages, len(tt.agents), err, tt.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "at least 3") {
			t.Errorf("refusal does not say what a canary needs: %v", err)
		}
	}
}

func TestInitWritesClusterAndRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	args := []string{"init", "-cluster", "demo", "-peers", "c1=127.0.0.1:7101,c2=127.0.0.1:7102,c3=127.0.0.1:7103", "-out", dir}
	code, out, errs := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		cfgPath := filepath.Join(dir, id, coordinatorConfigFile)
		if !strings.Contains(out, "fedge coordinator -config "+cfgPath) {
			t.Errorf("output lacks the command line of %s:\n%s", id, out)
		}
		f, err := loadCoordinatorFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if f.NodeID != id || f.DataDir != filepath.Join(dir, id) || len(f.Peers) != 3 || f.Validate() != nil {
			t.Errorf("%s: config %+v", id, f.Config)
		}
		if _, err := os.Stat(filepath.Join(dir, id, "tls", coordinator.FileCert)); err != nil {
			t.Error(err)
		}
	}
	for _, f := range []string{"ca.pem", "admin.pem", "admin.key"} {
		st, err := os.Stat(filepath.Join(dir, "admin", f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode().Perm())
		}
	}
	if !strings.Contains(out, envCoordinators+"=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103") {
		t.Errorf("output lacks the coordinators export:\n%s", out)
	}
	if code, _, errs := runCLI(t, args...); code != exitFailed || !strings.Contains(errs, "refusing to overwrite") {
		t.Fatalf("second init: exit %d, stderr %q", code, errs)
	}
}

// TestREADMEJobFilesLoad checks that every JSON job file in the README
// (and the heredoc of the quick start) is a valid job, as users copy them.
func TestREADMEJobFilesLoad(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)(?:```json\n|cat > job.json <<'EOF'\n)(.*?)(?:```|\nEOF)")
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if !strings.Contains(m[1], `"name"`) {
			continue
		}
		n++
		f := filepath.Join(t.TempDir(), "job.json")
		if err := os.WriteFile(f, []byte(m[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := loadJobFile(f); err != nil {
			t.Errorf("README job %d: %v\n%s", n, err, m[1])
		}
	}
	if n < 2 {
		t.Fatalf("found %d job files in the README", n)
	}
}
