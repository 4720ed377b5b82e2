package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/fedge/fedge/coordinator/api"
)

func clusterCommands() []command {
	return []command{
		{"status", "show the Raft peers, leader, term, indexes and fleet size", runClusterStatus},
		{"join", "add a coordinator to the cluster as a voter", runClusterJoin},
		{"remove", "remove a coordinator from the cluster", runClusterRemove},
	}
}

var clusterStatusSpec = cmdSpec{
	path: "cluster status",
	help: `Show the cluster as the answering coordinator sees it: each Raft server with
the leader marked, the current term, the last and applied log indexes, the
number of agents connected to the answering node, the stable model
version every agent outside a rollout serves, and the rounds in progress
(at most one per job or rollout; several jobs' rounds run at once, up to
the coordinators' max_concurrent_rounds).`,
	example: "fedge cluster status -coordinators 127.0.0.1:7001",
}

func runClusterStatus(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, clusterStatusSpec, true)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	fleet := -1 // agents connected to the cluster (its leader), if known
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.ClusterStatus, error) {
		st, err := cl.Cluster().Status(ctx, q)
		if err != nil {
			return st, err
		}
		// Agents hold their sessions with the leader: ask it (a follower
		// forwards the question) rather than count the answering node's.
		if agents, err := cl.Agents().List(ctx, q); err == nil {
			fleet = 0
			for _, a := range agents {
				if a.Connected {
					fleet++
				}
			}
		}
		return st, nil
	}, func(w io.Writer, st api.ClusterStatus) error {
		connected := fmt.Sprintf("%d (on %s)", st.ConnectedAgents, st.Node)
		if fleet >= 0 && st.LeaderID != "" {
			connected = fmt.Sprintf("%d (to the leader %s)", fleet, st.LeaderID)
		}
		leader := "none elected"
		if st.LeaderID != "" {
			leader = fmt.Sprintf("%s (%s)", st.LeaderID, st.LeaderAddr)
		}
		if err := kv(w,
			"Cluster", dash(st.Cluster),
			"Answered by", st.Node,
			"Leader", leader,
			"Term", st.Term,
			"Last index", st.LastIndex,
			"Applied index", st.AppliedIndex,
			"Connected agents", connected,
			"Stable model", version(st.Stable),
		); err != nil {
			return err
		}
		if len(st.Lines) > 1 {
			if err := kv(w, "Model lines", modelLines(st.Lines)); err != nil {
				return err
			}
		}
		fmt.Fprintln(w)
		t := newTable(w, "ID", "ADDRESS", "SUFFRAGE", "LEADER")
		for _, s := range st.Servers {
			mark := ""
			if s.Leader {
				mark = "*"
			}
			t.row(s.ID, s.Addr, s.Suffrage, mark)
		}
		if err := t.flush(); err != nil {
			return err
		}
		return roundsInProgress(w, st.RoundsInProgress)
	})
}

// roundsInProgress writes the running rounds, one per job or rollout.
func roundsInProgress(w io.Writer, rounds []api.RoundInProgress) error {
	fmt.Fprintf(w, "\nRounds in progress: %d\n", len(rounds))
	if len(rounds) == 0 {
		return nil
	}
	t := newTable(w, "ROUND", "JOB", "KIND", "NUMBER", "STARTED")
	now := time.Now()
	for _, r := range rounds {
		owner := r.Job
		if r.Rollout != "" {
			owner = "rollout/" + r.Rollout
		}
		number := "-"
		if r.Number > 0 {
			number = fmt.Sprint(r.Number)
		}
		t.row(r.ID, dash(owner), r.Kind, number, ago(now, r.StartedAt))
	}
	return t.flush()
}

var clusterJoinSpec = cmdSpec{
	path: "cluster join",
	args: "ID ADDR",
	help: `Add a coordinator to the Raft cluster as a voter. Start the new node first
(with credentials for ID issued by the cluster's CA and no -peers), then join
it; the leader replicates its log to the new voter.`,
	example: "fedge cluster join c4 10.0.0.4:7001",
}

func runClusterJoin(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, clusterJoinSpec, true)
	pos, code, ok := c.parse(args, 2, 2)
	if !ok {
		return code
	}
	if _, _, err := net.SplitHostPort(pos[1]); err != nil {
		return c.usageFail(usagef("ADDR %q is not host:port", pos[1]))
	}
	req := api.JoinRequest{ID: pos[0], Addr: pos[1]}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (struct{}, error) {
		return noAnswer(cl.Cluster().Join(ctx, req))
	}, func(w io.Writer, _ struct{}) error {
		_, err := fmt.Fprintf(w, "Added %s (%s) as a voter.\n", req.ID, req.Addr)
		return err
	})
}

var clusterRemoveSpec = cmdSpec{
	path: "cluster remove",
	args: "ID",
	help: `Remove a coordinator from the Raft cluster. Keep an odd number of voters;
removing the leader makes the others elect a new one.`,
	example: "fedge cluster remove c3",
}

func runClusterRemove(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, clusterRemoveSpec, true)
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (struct{}, error) {
		return noAnswer(cl.Cluster().Remove(ctx, pos[0]))
	}, func(w io.Writer, _ struct{}) error {
		_, err := fmt.Fprintf(w, "Removed %s from the cluster.\n", pos[0])
		return err
	})
}

// modelLines lists each model line's stable version, "2nn v3, logreg v6".
func modelLines(lines map[string]uint64) string {
	names := make([]string, 0, len(lines))
	for name := range lines {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = dash(name) + " " + version(lines[name])
	}
	return strings.Join(parts, ", ")
}
