package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
)

// groupsBrief summarizes a sharded round's groups in one line:
// "c1 3/3, c2 3/3, c3 0/3 lost" (coordinator, survivors/agents), or "".
func groupsBrief(r api.Round) string {
	parts := make([]string, 0, len(r.Groups))
	for _, g := range r.Groups {
		s := fmt.Sprintf("%s %d/%d", g.Coordinator, g.Survivors, g.Agents)
		if g.Error != "" {
			s += " lost"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// groupsTable writes a sharded round's groups.
func groupsTable(w io.Writer, groups []api.RoundGroup) error {
	if len(groups) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nGroups (each aggregated by one coordinator):")
	t := newTable(w, "GROUP", "COORDINATOR", "AGENTS", "SURVIVORS", "BUSY SECONDS", "ERROR")
	for _, g := range groups {
		t.row(g.Group, g.Coordinator, g.Agents, g.Survivors, fmt.Sprintf("%.3f", g.BusySeconds), dash(g.Error))
	}
	return t.flush()
}

// latestGroups writes the groups of the most recent sharded round of
// rounds (newest first or last, whichever: the highest ID), if any.
func latestGroups(w io.Writer, rounds []api.Round) error {
	var last *api.Round
	for i := range rounds {
		if len(rounds[i].Groups) > 0 && (last == nil || rounds[i].ID > last.ID) {
			last = &rounds[i]
		}
	}
	if last == nil {
		return nil
	}
	_, err := fmt.Fprintf(w, "\nGroups of round %d: %s\n", last.ID, groupsBrief(*last))
	return err
}
