package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// TestRoundsListOfLargeRounds: 60 rounds of 1,000 participants each (what
// a 10,000-agent job at fraction 0.1 records) list in one answer, with each
// round's participant count; asked with the IDs, the answer is too large,
// and the node says so and what to ask instead.
func TestRoundsListOfLargeRounds(t *testing.T) {
	c := startNodes(t, 1)
	_, n := c.leader(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("agent-%018d", i)
	}
	const rounds = 60
	for i := range rounds {
		rec := RoundRecord{Rollout: "big", Kind: RoundEval, Leader: "c1", StartedAt: time.Now(), Participants: ids}
		if _, err := n.rep.apply(ctx, cmdRoundStart, rec, nil); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}

	out, err := n.answerAdmin(ctx, "operator:test", api.VerbRoundsList, []byte(`{}`))
	if err != nil {
		t.Fatalf("rounds.list: %v", err)
	}
	var list []api.Round
	if err := json.Unmarshal(out.(*protocol.AdminResponse).Body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != rounds {
		t.Fatalf("%d rounds listed, want %d", len(list), rounds)
	}
	for _, r := range list {
		if r.ParticipantCount != 1000 || r.Participants != nil {
			t.Fatalf("round %d: count %d, %d IDs; want 1000 and none", r.ID, r.ParticipantCount, len(r.Participants))
		}
	}

	out, err = n.answerAdmin(ctx, "operator:test", api.VerbRoundsList, []byte(`{"after":`+fmt.Sprint(list[rounds-3].ID)+`,"participants":true}`))
	if err != nil {
		t.Fatalf("rounds.list after: %v", err)
	}
	if err := json.Unmarshal(out.(*protocol.AdminResponse).Body, &list); err != nil || len(list) != 2 || len(list[0].Participants) != 1000 {
		t.Fatalf("the last 2 rounds with IDs: %d rounds, err %v", len(list), err)
	}

	_, err = n.answerAdmin(ctx, "operator:test", api.VerbRoundsList, []byte(`{"participants":true}`))
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeTooLarge || !strings.Contains(pe.Message, "ask for less") {
		t.Fatalf("every round with its IDs: %v; want a too-large error saying what to ask", err)
	}
}
