package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/fedge/fedge/coordinator/api"
)

func roundsCommands() []command {
	return []command{
		{"list", "list rounds, newest last", runRoundsList},
		{"show", "show one round with its stages", runRoundsShow},
	}
}

var roundsListSpec = cmdSpec{
	path: "rounds list",
	help: `List training and evaluation rounds, oldest first: the job or rollout each
belongs to, its outcome, participants and survivors of secure aggregation,
the model it started from and the one it committed, bytes moved and time
taken. -job keeps one job's rounds, -limit the last N.`,
	example: "fedge rounds list -job mnist-1a2b3c4d5e6f -limit 10",
}

func runRoundsList(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, roundsListSpec, true)
	job := c.fs.String("job", "", "only the rounds of this job")
	limit := c.fs.Int("limit", 0, "only the last N rounds (0: all)")
	after := c.fs.Uint64("after", 0, "only the rounds whose ID is above this one")
	withIDs := c.fs.Bool("participants", false, "with -json, each round's participant IDs (`rounds show` always has them)")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	if *limit < 0 {
		return c.usageFail(usagef("-limit must not be negative"))
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) ([]api.Round, error) {
		return cl.Rounds().List(ctx, api.RoundsRequest{Job: *job, Limit: *limit, After: *after, Participants: *withIDs}, q)
	}, func(w io.Writer, rounds []api.Round) error {
		if len(rounds) == 0 {
			_, err := fmt.Fprintln(w, "No rounds.")
			return err
		}
		return roundsTable(w, rounds)
	})
}

// roundsTable writes one line per round.
func roundsTable(w io.Writer, rounds []api.Round) error {
	t := newTable(w, "ID", "OWNER", "KIND", "N", "STATE", "PARTICIPANTS", "SURVIVORS", "MODEL", "BYTES IN/OUT", "SECONDS")
	for _, r := range rounds {
		owner := r.Job
		if r.Rollout != "" {
			owner = r.Rollout
		}
		model := version(r.ModelIn)
		if r.ModelOut != 0 {
			model += "->" + version(r.ModelOut)
		}
		t.row(r.ID, owner, r.Kind, r.Number, r.State, r.ParticipantCount, survivors(r), model,
			bytesString(r.BytesIn)+"/"+bytesString(r.BytesOut), fmt.Sprintf("%.1f", roundSeconds(r)))
	}
	return t.flush()
}

var roundsShowSpec = cmdSpec{
	path: "rounds show",
	args: "ID",
	help: `Show one round: its job or rollout, the leader and term that ran it, its
outcome, the participants, each stage (expected, survivors, dropped, time)
and the aggregate metrics. Metrics are only ever securely aggregated sums,
never one agent's figure.`,
	example: "fedge rounds show 42",
}

func runRoundsShow(args []string, stdout, stderr io.Writer) int {
	c := newCLI(stdout, stderr, roundsShowSpec, true)
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil {
		return c.usageFail(usagef("round ID %q is not a number", pos[0]))
	}
	return do(c, func(ctx context.Context, cl *api.Client, q api.QueryOptions) (api.Round, error) {
		return cl.Rounds().Show(ctx, id, q)
	}, func(w io.Writer, r api.Round) error {
		owner := "job " + r.Job
		if r.Rollout != "" {
			owner = "rollout " + r.Rollout
		}
		state := r.State
		if r.Error != "" {
			state += ": " + r.Error
		}
		if err := kv(w,
			"ID", r.ID,
			"Owner", owner,
			"Kind", r.Kind,
			"Number", r.Number,
			"State", state,
			"Leader", fmt.Sprintf("%s (term %d)", r.Leader, r.Term),
			"Started", when(r.StartedAt),
			"Ended", when(r.EndedAt),
			"Model", fmt.Sprintf("%s -> %s", version(r.ModelIn), version(r.ModelOut)),
			"Bytes in/out", bytesString(r.BytesIn)+" / "+bytesString(r.BytesOut),
			"Participants", len(r.Participants),
			"Metrics", metricString(r.Metrics),
		); err != nil {
			return err
		}
		if err := groupsTable(w, r.Groups); err != nil {
			return err
		}
		if len(r.Stages) == 0 {
			return nil
		}
		fmt.Fprintln(w, "\nStages:")
		t := newTable(w, "STAGE", "EXPECTED", "SURVIVORS", "DROPPED", "SECONDS")
		for _, s := range r.Stages {
			t.row(s.Name, s.Expected, s.Survivors, s.Dropped, fmt.Sprintf("%.2f", s.Duration.Seconds()))
		}
		return t.flush()
	})
}
