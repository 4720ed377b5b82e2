package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

func agentsCommands() []command {
	return []command{
		{"list", "list enrolled agents", runAgentsList},
		{"show", "show one agent", runAgentsShow},
		{"revoke", "revoke an agent's certificate and cut it off", runAgentsRevoke},
		{"label", "set or remove an agent's labels", runAgentsLabel},
	}
}

var agentsListSpec = cmdSpec{
	path: "agents list",
	help: `List the enrolled agents: whether each is connected to the answering
coordinator, its labels, the model version it serves (SERVES, as it reported on
its session) and the one it should serve (TARGET), when it was last
seen and whether it is revoked. The cluster never holds an agent's data or
its individual metrics, so none are shown.`,
	example: "fedge agents list -json | jq -r '.[] | select(.connected) | .id'",
}

func runAgentsList(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, agentsListSpec, true)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) ([]api.Agent, error) {
		return cl.Agents().List(ctx, q)
	}, func(w io.Writer, agents []api.Agent) error {
		if len(agents) == 0 {
			_, err := fmt.Fprintln(w, "No agents enrolled. Create a join token with `fedge tokens create`.")
			return err
		}
		now := time.Now()
		t := newTable(w, "ID", "CONNECTED", "LABELS", "SERVES", "TARGET", "LAST SEEN", "REVOKED")
		for _, a := range agents {
			t.row(a.ID, yes(a.Connected), labelString(a.Labels), version(a.Served), version(a.Serving), ago(now, a.LastSeen), yes(a.Revoked))
		}
		return t.flush()
	})
}

var agentsShowSpec = cmdSpec{
	path:    "agents show",
	args:    "ID",
	help:    `Show one enrolled agent: labels, certificate serial, enrollment and renewal times, last contact, connection and revocation state, the model version it serves (as it reported on its session) and the one it should serve, and the last reason it gave for declining or leaving a round (an external trainer's failure reads "trainer exited 1: <its last stderr line>"; the leader remembers it since it took office).`,
	example: "fedge agents show agent-3f2a9c",
}

func runAgentsShow(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, agentsShowSpec, true)
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.Agent, error) {
		return cl.Agents().Show(ctx, pos[0], q)
	}, func(w io.Writer, a api.Agent) error {
		revoked := "-"
		if a.Revoked {
			revoked = "yes, at " + when(a.RevokedAt)
		}
		lastErr := "-"
		if a.LastError != "" {
			lastErr = fmt.Sprintf("%s (round %d, %s)", a.LastError, a.LastErrorRound, when(a.LastErrorAt))
		}
		pairs := []any{
			"ID", a.ID,
			"Labels", labelString(a.Labels),
			"Connected", yes(a.Connected),
			"Last error", lastErr,
			"Serves", version(a.Served),
			"Target", version(a.Serving),
		}
		pairs = append(pairs, statusPairs(a.Status)...)
		pairs = append(pairs,
			"Certificate", a.CertSerial,
			"Enrolled", when(a.EnrolledAt),
			"Renewed", when(a.RenewedAt),
			"Last seen", when(a.LastSeen),
			"Revoked", revoked,
		)
		if err := kv(w, pairs...); err != nil {
			return err
		}
		if a.Status == nil || len(a.Status.Events) == 0 {
			return nil
		}
		if _, err := fmt.Fprintln(w, "Recent warnings and errors:"); err != nil {
			return err
		}
		for _, e := range a.Status.Events {
			if _, err := fmt.Fprintf(w, "  %s  %-5s  %s\n", when(e.At), e.Level, e.Message); err != nil {
				return err
			}
		}
		return nil
	})
}

// statusPairs are the kv rows of an agent's own status report ("-" rows
// when it sent none: disconnected, or older than protocol version 3).
func statusPairs(st *api.AgentStatus) []any {
	if st == nil {
		return []any{"Data", "- (no status report)"}
	}
	data := "none"
	if st.Features > 0 {
		data = fmt.Sprintf("%s, %d features, %d classes", st.DataKind, st.Features, st.Classes)
	}
	trainer := st.Trainer
	if st.TrainerFailure != "" {
		trainer += fmt.Sprintf(", last failure %s: %s", when(st.TrainerFailureAt), st.TrainerFailure)
	}
	return []any{
		"Data", data,
		"Examples", fmt.Sprintf("~%d train, ~%d held out", st.TrainExamples, st.HeldOutExamples),
		"Trainer", trainer,
		"Reported", when(st.ReportedAt),
	}
}

var agentsRevokeSpec = cmdSpec{
	path: "agents revoke",
	args: "ID",
	help: `Revoke an agent: its certificate is added to the replicated revocation list,
its session is closed at once, and it can neither reconnect nor renew. To let
the host back in, enroll it again with a new join token and a fresh data dir.`,
	example: "fedge agents revoke agent-3f2a9c",
}

func runAgentsRevoke(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, agentsRevokeSpec, true)
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (struct{}, error) {
		return noAnswer(cl.Agents().Revoke(ctx, pos[0]))
	}, func(w io.Writer, _ struct{}) error {
		_, err := fmt.Fprintf(w, "Revoked agent %s.\n", pos[0])
		return err
	})
}

var agentsLabelSpec = cmdSpec{
	path: "agents label",
	args: "ID k=v... [k-...]",
	help: `Change an agent's labels: each k=v sets a label, each k- removes one, and
the others are kept. With -replace the labels become exactly the k=v given.
Labels select agents for rounds (a job's selector) and rollout cohorts.`,
	example: "fedge agents label agent-3f2a9c tier=canary region-",
}

func runAgentsLabel(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, agentsLabelSpec, true)
	replace := c.fs.Bool("replace", false, "replace all labels with the ones given")
	pos, code, ok := c.parse(args, 2, -1)
	if !ok {
		return code
	}
	id := pos[0]
	set, remove := map[string]string{}, []string{}
	for _, item := range pos[1:] {
		if k, found := strings.CutSuffix(item, "-"); found && !strings.Contains(item, "=") {
			if *replace {
				return c.usageFail(usagef("%q: removing a label makes no sense with -replace", item))
			}
			remove = append(remove, k)
			continue
		}
		m, err := parseLabels(item)
		if err != nil {
			return c.usageFail(err)
		}
		for k, v := range m {
			set[k] = v
		}
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	defer cl.Close()
	ctx := context.Background()
	labels := map[string]string{}
	if !*replace {
		var cur api.Agent
		if err := c.call(ctx, func(ctx context.Context) (err error) { cur, err = cl.Agents().Show(ctx, id, c.query()); return err }); err != nil {
			return c.fail(err)
		}
		for k, v := range cur.Labels {
			labels[k] = v
		}
	}
	for k, v := range set {
		labels[k] = v
	}
	for _, k := range remove {
		delete(labels, k)
	}
	req := api.LabelRequest{ID: id, Labels: labels}
	if err := c.call(ctx, func(ctx context.Context) error { return cl.Agents().Label(ctx, req) }); err != nil {
		return c.fail(err)
	}
	return render(c, req, func(w io.Writer, r api.LabelRequest) error {
		_, err := fmt.Fprintf(w, "Agent %s labels: %s\n", r.ID, labelString(r.Labels))
		return err
	})
}
