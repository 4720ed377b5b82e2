package protocol

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestHeartbeatConcurrentRoundTrip: the agent's jobs.concurrent travels
// after the lines, with or without lines and status, and decodes as sent.
func TestHeartbeatConcurrentRoundTrip(t *testing.T) {
	t0 := time.UnixMilli(1_760_000_000_123)
	lines := []ServedLine{{Name: "2nn", Version: 7}, {Name: "logreg", Declined: true}}
	tests := []struct {
		name string
		in   *Heartbeat
		want *Heartbeat
	}{
		{"with status and lines",
			&Heartbeat{Seq: 3, Sent: t0, Status: &AgentStatus{DataKind: "csv", Features: 4}, Lines: lines, Concurrent: 3},
			&Heartbeat{Seq: 3, Sent: t0, Status: &AgentStatus{DataKind: "csv", Features: 4}, Lines: lines, Concurrent: 3}},
		{"alone writes an empty status and no lines",
			&Heartbeat{Seq: 4, Concurrent: 2},
			&Heartbeat{Seq: 4, Status: &AgentStatus{}, Concurrent: 2}},
		{"largest",
			&Heartbeat{Seq: 5, Status: &AgentStatus{}, Concurrent: 1<<32 - 1},
			&Heartbeat{Seq: 5, Status: &AgentStatus{}, Concurrent: 1<<32 - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkFrameRoundTrip(t, tt.in, tt.want) })
	}
}

// A heartbeat without Concurrent encodes exactly as at version 5, and one
// with it is that encoding plus the trailer; a written zero is refused.
func TestHeartbeatConcurrentTrailer(t *testing.T) {
	hb := &Heartbeat{Seq: 1, Status: &AgentStatus{DataKind: "csv"}, Lines: []ServedLine{{Name: "2nn", Version: 7}}}
	b, err := Marshal(nil, hb, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	withC := *hb
	withC.Concurrent = 2
	cb, err := Marshal(nil, &withC, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cb, append(bytes.Clone(b), 2)) {
		t.Fatalf("heartbeat with Concurrent 2 is %x, want %x then 02", cb, b)
	}
	zero := append(bytes.Clone(b), 0)
	if _, err := Unmarshal(TypeHeartbeat, zero, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a written Concurrent 0: %v, want ErrMalformed", err)
	}
	big := append(bytes.Clone(b), 0x80, 0x80, 0x80, 0x80, 0x10) // 2^32
	if _, err := Unmarshal(TypeHeartbeat, big, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a Concurrent of 2^32: %v, want ErrMalformed", err)
	}
}
