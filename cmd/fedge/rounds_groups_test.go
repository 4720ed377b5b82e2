package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
)

func TestRoundGroupsPrinted(t *testing.T) {
	r := api.Round{ID: 7, Number: 2, Kind: api.RoundTrain, State: api.RoundCommitted, Groups: []api.RoundGroup{
		{Group: 0, Coordinator: "c1", Agents: 3, Survivors: 3, BusySeconds: 0.25},
		{Group: 1, Coordinator: "c3", Agents: 4, Error: "coordinator: group coordinator lost"},
	}}
	if got, want := groupsBrief(r), "c1 3/3, c3 0/4 lost"; got != want {
		t.Errorf("groupsBrief = %q, want %q", got, want)
	}
	if line := progressLine(r, 5); !strings.HasSuffix(line, "groups c1 3/3, c3 0/4 lost") {
		t.Errorf("progress line %q does not end with the groups", line)
	}
	var b bytes.Buffer
	if err := groupsTable(&b, r.Groups); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "COORDINATOR") || !strings.Contains(out, "group coordinator lost") || !strings.Contains(out, "0.250") {
		t.Errorf("groups table:\n%s", out)
	}
	b.Reset()
	if err := latestGroups(&b, []api.Round{{ID: 6}, r}); err != nil || !strings.Contains(b.String(), "Groups of round 7: c1 3/3") {
		t.Errorf("latest groups %q, %v", b.String(), err)
	}
	if groupsBrief(api.Round{}) != "" {
		t.Error("an unsharded round has a groups summary")
	}
}
