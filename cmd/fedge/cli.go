package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// Exit codes every verb uses; scripts may rely on them.
const (
	exitOK          = 0 // success
	exitFailed      = 1 // the operation failed (the cluster refused it, or a local step failed)
	exitUsage       = 2 // bad flags, arguments or input files
	exitNotFound    = 3 // the named object does not exist
	exitUnreachable = 4 // no coordinator answered, or the cluster has no leader
)

// exitCodesHelp is appended to the help of every admin verb.
const exitCodesHelp = `Exit codes: 0 success, 1 operation failed, 2 usage error,
3 not found, 4 cluster unreachable (or without a leader).`

// Environment variables the admin verbs read.
const (
	envCoordinators = "FEDGE_COORDINATORS"
	envAdminDir     = "FEDGE_ADMIN_DIR"
)

// usageError is a bad invocation: the caller prints it with the usage and
// exits with exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// inputError is input the command cannot act on that is not a misuse of
// its flags (a job file's content, a request the cluster's state makes
// pointless): reported in one line with a pointer to -h, exit code 2.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func inputf(format string, a ...any) error { return &inputError{fmt.Sprintf(format, a...)} }

// cmdSpec describes one leaf command for its help text.
type cmdSpec struct {
	path    string // "jobs status"
	args    string // positional arguments, e.g. "ID"
	help    string // one paragraph
	example string // one or more example lines
}

// cli is what every command shares: where output goes, the flags of the
// command being run and, for admin verbs, the global admin flags and the
// client built from them (Nomad's command.Meta).
type cli struct {
	stdout, stderr io.Writer
	spec           cmdSpec
	fs             *flag.FlagSet   // the command's own flags
	admin          *adminFlags     // nil for commands that do not talk to the cluster
	set            map[string]bool // flags given on the command line
}

// newCLI starts a command: its own flags are added to c.fs by the caller,
// the admin flags too when admin is true.
func newCLI(stdout, stderr io.Writer, spec cmdSpec, admin bool) *cli {
	c := &cli{stdout: stdout, stderr: stderr, spec: spec, fs: flag.NewFlagSet("fedge "+spec.path, flag.ContinueOnError)}
	if admin {
		c.admin = newAdminFlags()
	}
	return c
}

// printUsage writes the command's help: usage line, paragraph, flags,
// example and, for admin verbs, the global flags and exit codes.
func (c *cli) printUsage(w io.Writer) {
	line := "fedge " + c.spec.path
	if hasFlags(c.fs) || c.admin != nil {
		line += " [flags]"
	}
	if c.spec.args != "" {
		line += " " + c.spec.args
	}
	fmt.Fprintf(w, "Usage: %s\n\n", line)
	fmt.Fprintf(w, "%s\n", indent(c.spec.help, "  "))
	if hasFlags(c.fs) {
		fmt.Fprintln(w, "\nFlags:")
		c.fs.SetOutput(w)
		c.fs.PrintDefaults()
	}
	if c.admin != nil {
		fmt.Fprintln(w, "\nAdmin flags (every admin verb):")
		c.admin.fs.SetOutput(w)
		c.admin.fs.PrintDefaults()
	}
	if c.spec.example != "" {
		fmt.Fprintf(w, "\nExample:\n%s\n", indent(c.spec.example, "  "))
	}
	if c.admin != nil {
		fmt.Fprintf(w, "\n%s\n", indent(exitCodesHelp, "  "))
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// parse parses args, flags and positional arguments in any order (a "--"
// ends the flags), and checks that between min and max positional
// arguments remain (max < 0: no limit). It returns the positional
// arguments and ok; when ok is false the command must return code: 0
// after -h, exitUsage after an error (already reported with the usage).
func (c *cli) parse(args []string, min, max int) (pos []string, code int, ok bool) {
	all := flag.NewFlagSet(c.fs.Name(), flag.ContinueOnError)
	all.SetOutput(io.Discard)
	c.fs.VisitAll(func(f *flag.Flag) { all.Var(f.Value, f.Name, f.Usage) })
	if c.admin != nil {
		c.admin.fs.VisitAll(func(f *flag.Flag) { all.Var(f.Value, f.Name, f.Usage) })
	}
	for {
		err := all.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.printUsage(c.stdout)
			return nil, exitOK, false
		}
		if err != nil {
			return nil, c.usageFail(err), false
		}
		rest := all.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	c.set = map[string]bool{}
	all.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	switch {
	case len(pos) < min:
		return nil, c.usageFail(usagef("missing argument: want %s", c.spec.args)), false
	case max >= 0 && len(pos) > max:
		return nil, c.usageFail(usagef("unexpected argument %q", pos[max])), false
	}
	return pos, exitOK, true
}

// visit calls fn for each of the command's own flags given on the command
// line, in lexical order.
func (c *cli) visit(fn func(*flag.Flag)) {
	c.fs.VisitAll(func(f *flag.Flag) {
		if c.set[f.Name] {
			fn(f)
		}
	})
}

// usageFail reports a usage error with the command's usage.
func (c *cli) usageFail(err error) int {
	fmt.Fprintf(c.stderr, "fedge %s: %v\n\n", c.spec.path, err)
	c.printUsage(c.stderr)
	return exitUsage
}

// inputFail reports bad input that is not a misuse of the command line (a
// job or configuration file's content, a value the flags carry): one line
// and a pointer to the help, exit code 2, without the whole usage.
func (c *cli) inputFail(err error) int {
	fmt.Fprintf(c.stderr, "fedge %s: %v\nRun `fedge %s -h` for the fields and an example.\n", c.spec.path, err, c.spec.path)
	return exitUsage
}

// fail reports err and returns the exit code it maps to.
func (c *cli) fail(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return c.usageFail(err)
	}
	var ie *inputError
	if errors.As(err, &ie) {
		return c.inputFail(ie)
	}
	code := exitCode(err)
	fmt.Fprintf(c.stderr, "fedge %s: %v\n", c.spec.path, err)
	if protocol.HandshakeRefused(err) && c.admin != nil {
		fmt.Fprintf(c.stderr, "(the coordinator refused the operator credential in %s: revoked, expired, or of another cluster)\n", c.admin.adminDir)
	}
	if code == exitUnreachable && c.admin != nil {
		fmt.Fprintf(c.stderr, "(no answer from %s within %s; check -coordinators and that the cluster is up)\n", c.admin.coordinators, c.admin.timeout)
	}
	return code
}

// exitCode maps an error to the documented exit codes: a remote
// not-found is 3; any other remote answer, a refused certificate included,
// is 1; a transport failure or
// timeout before the cluster answered, or a cluster without a leader, is 4.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var ie *inputError
	if errors.As(err, &ue) || errors.As(err, &ie) {
		return exitUsage
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.Code == protocol.CodeNotFound {
			return exitNotFound
		}
		return exitFailed
	}
	if errors.Is(err, api.ErrNoLeader) {
		return exitUnreachable
	}
	var re *protocol.Redirect
	if errors.As(err, &re) {
		return exitUnreachable
	}
	// Transport failures of a call to the cluster: dial and handshake
	// timeouts, the -timeout deadline, socket errors, a connection the peer
	// closed. Local failures (reading credentials) stay exit 1, even when
	// their cause also satisfies net.Error (as syscall.Errno does).
	var ce *callError
	if !errors.As(err, &ce) {
		return exitFailed
	}
	if protocol.HandshakeRefused(ce.err) {
		return exitFailed // the cluster answered: it refused our certificate
	}
	var ne net.Error
	if errors.As(ce.err, &ne) || errors.Is(ce.err, context.DeadlineExceeded) || errors.Is(ce.err, context.Canceled) {
		return exitUnreachable
	}
	return exitFailed
}

// callError marks an error returned by a call to the cluster, as opposed
// to a local step.
type callError struct{ err error }

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

// adminFlags are the flags every admin verb shares.
type adminFlags struct {
	fs           *flag.FlagSet
	coordinators string
	adminDir     string
	json         bool
	consistent   bool
	timeout      time.Duration
}

func newAdminFlags() *adminFlags {
	a := &adminFlags{fs: flag.NewFlagSet("admin", flag.ContinueOnError)}
	dir := os.Getenv(envAdminDir)
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".fedge", "admin")
		}
	}
	a.fs.StringVar(&a.coordinators, "coordinators", os.Getenv(envCoordinators), "comma-separated host:port of coordinators (env "+envCoordinators+")")
	a.fs.StringVar(&a.adminDir, "admin-dir", dir, "folder of the operator credential ca.pem, admin.pem, admin.key (env "+envAdminDir+")")
	a.fs.BoolVar(&a.json, "json", false, "print the response as JSON, for scripts")
	a.fs.BoolVar(&a.consistent, "consistent", false, "read through the leader after a Raft barrier (linearizable) instead of from any node's replica")
	a.fs.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for the cluster")
	return a
}

// addrs splits -coordinators.
func (a *adminFlags) addrs() ([]string, error) {
	var out []string
	for _, s := range strings.Split(a.coordinators, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, usagef("-coordinators: %q is not host:port", s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, usagef("no coordinators: set -coordinators or %s", envCoordinators)
	}
	return out, nil
}

// client builds the admin client from the global flags.
func (c *cli) client() (*api.Client, error) {
	addrs, err := c.admin.addrs()
	if err != nil {
		return nil, err
	}
	if c.admin.adminDir == "" {
		return nil, usagef("no admin credential folder: set -admin-dir or %s", envAdminDir)
	}
	cl, err := api.Load(c.admin.adminDir, addrs)
	if err != nil {
		return nil, fmt.Errorf("%w (create one with `fedge init` or `fedge admin-cert`)", err)
	}
	return cl, nil
}

// query is the read options the flags ask for (-consistent).
func (c *cli) query() api.QueryOptions {
	return api.QueryOptions{Consistent: c.admin.consistent}
}

// call runs one admin call with the CLI's timeout; a failure is a
// callError (exit code by its kind).
func (c *cli) call(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.admin.timeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		return &callError{err}
	}
	return nil
}

// do runs one admin call through the typed client and prints its answer.
func do[T any](c *cli, fn func(ctx context.Context, cl *api.Client, q api.QueryOptions) (T, error), human func(w io.Writer, resp T) error) int {
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	var resp T
	if err := c.call(context.Background(), func(ctx context.Context) (err error) {
		resp, err = fn(ctx, cl, c.query())
		return err
	}); err != nil {
		return c.fail(err)
	}
	return render(c, resp, human)
}

// noAnswer adapts a call that answers only with an error to do.
func noAnswer(err error) (struct{}, error) { return struct{}{}, err }

// render prints resp as JSON with -json, else with human.
func render[T any](c *cli, resp T, human func(w io.Writer, resp T) error) int {
	var err error
	if c.admin != nil && c.admin.json {
		err = writeJSON(c.stdout, resp)
	} else {
		err = human(c.stdout, resp)
	}
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}
