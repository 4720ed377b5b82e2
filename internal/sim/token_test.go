package sim

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/protocol"
)

// TestMintTokenRetriesUnansweredWrites: a token request that met a closed
// session or an election is asked again; a refusal is not.
func TestMintTokenRetriesUnansweredWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fails := []error{
		fmt.Errorf("tokens.create: %w", protocol.ErrClosed),
		fmt.Errorf("tokens.create: %w", api.ErrNoLeader),
	}
	calls := 0
	tok, err := mintToken(ctx, func(context.Context) (string, error) {
		calls++
		if calls <= len(fails) {
			return "", fails[calls-1]
		}
		return "tok", nil
	})
	if err != nil || tok != "tok" || calls != 3 {
		t.Fatalf("mintToken = %q, %v after %d calls; want tok after 3", tok, err, calls)
	}

	calls = 0
	refused := &protocol.Error{Code: protocol.CodeUnauthorized, Message: "not an admin"}
	_, err = mintToken(ctx, func(context.Context) (string, error) {
		calls++
		return "", fmt.Errorf("tokens.create: %w", refused)
	})
	if !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("a refusal: %v after %d calls; want it returned after 1", err, calls)
	}

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	_, err = mintToken(short, func(context.Context) (string, error) {
		return "", protocol.ErrClosed
	})
	if !errors.Is(err, protocol.ErrClosed) {
		t.Fatalf("an unanswered call until the deadline: %v; want the last error", err)
	}
}
