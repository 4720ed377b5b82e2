package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// command is one verb of the fedge binary, or a group of verbs.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"init", "create a new cluster's CA and credentials", runInit},
		{"coordinator", "run a coordinator node", runCoordinator},
		{"agent", "run the agent daemon on an edge host", runAgent},
		{"cluster", "show and change the Raft cluster", group("cluster", "Show and change the coordinators' Raft cluster.", clusterCommands())},
		{"tokens", "create, list and revoke agent join tokens", group("tokens", "Create, list and revoke the one-time join tokens agents enroll with.", tokensCommands())},
		{"agents", "list, inspect, label and revoke agents", group("agents", "List, inspect, label and revoke enrolled agents.", agentsCommands())},
		{"jobs", "start, watch and stop training jobs", group("jobs", "Start, list, watch and stop federated training jobs.", jobsCommands())},
		{"rounds", "list and inspect training and evaluation rounds", group("rounds", "List and inspect the rounds the cluster ran.", roundsCommands())},
		{"models", "list, inspect, export and pin model versions", group("models", "List, inspect, export and pin committed model versions.", modelsCommands())},
		{"rollout", "roll a model out to the fleet in gated stages", group("rollout", "Roll a model version out to the fleet through gated cohorts.", rolloutCommands())},
		{"admin-cert", "issue a new operator credential", runAdminCert},
		{"admins", "list, revoke and audit operator credentials", group("admins", "List and revoke operator certificates; show the audit trail of credential actions.", adminsCommands())},
		{"console", "log in to a coordinator's web console", group("console", "Log in to the web console a coordinator serves (-ui-listen).", consoleCommands())},
		{"dev", "run the end-to-end demo: local cluster, fleet, training, rollout", runDev},
		{"simulate", "run many virtual agents against a cluster (load tests, research)", runSimulate},
		{"version", "print the build version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: fedge <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `fedge <command> -h` for a command's flags.")
	fmt.Fprintf(w, "\nAdmin verbs read %s and %s for -coordinators and -admin-dir.\n", envCoordinators, envAdminDir)
	fmt.Fprintf(w, "\n%s\n", exitCodesHelp)
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	fmt.Fprintf(stderr, "fedge: unknown command %q%s\nRun `fedge -h` for the commands.\n", args[0], didYouMean(args[0], names))
	return exitUsage
}

// group returns the run function of a command made of sub-verbs
// (`fedge jobs start`, `fedge jobs list`, ...).
func group(name, about string, subs []command) func(args []string, stdout, stderr io.Writer) int {
	groupUsage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: fedge %s <verb> [flags] [args]\n\n  %s\n\nverbs:\n", name, about)
		for _, s := range subs {
			fmt.Fprintf(w, "  %-10s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun `fedge %s <verb> -h` for a verb's flags and an example.\n", name)
	}
	return func(args []string, stdout, stderr io.Writer) int {
		if len(args) == 0 {
			fmt.Fprintf(stderr, "fedge %s: missing verb\n\n", name)
			groupUsage(stderr)
			return exitUsage
		}
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			groupUsage(stdout)
			return exitOK
		}
		for _, s := range subs {
			if s.name == args[0] {
				return s.run(args[1:], stdout, stderr)
			}
		}
		var names []string
		for _, s := range subs {
			names = append(names, s.name)
		}
		fmt.Fprintf(stderr, "fedge %s: unknown verb %q%s\n\n", name, args[0], didYouMean(args[0], names))
		groupUsage(stderr)
		return exitUsage
	}
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, cmdSpec{path: "version", help: "Print the version of this fedge binary.", example: "fedge version"}, false)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	fmt.Fprintln(stdout, "fedge", buildVersion())
	return exitOK
}

// didYouMean is " (did you mean X?)" for the nearest name, or "".
func didYouMean(s string, names []string) string {
	if c := closest(s, names); c != "" {
		return " (did you mean " + c + "?)"
	}
	return ""
}

// buildVersion describes this binary from its build information: the
// module version when built from a tagged module, else the VCS revision
// and time the go command recorded (make build records them), with
// "+dirty" for uncommitted changes; "devel" when neither is known.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "(devel)" {
		v = ""
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	switch {
	case v != "" && rev == "":
		return v + " " + bi.GoVersion
	case rev != "":
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out := "devel " + rev + dirty
		if v != "" {
			out = v + " (" + rev + dirty + ")"
		}
		if at != "" {
			out += " " + at
		}
		return out + " " + bi.GoVersion
	}
	return "devel " + bi.GoVersion
}
