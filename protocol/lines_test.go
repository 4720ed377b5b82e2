package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// checkFrameRoundTrip encodes in as a frame, decodes it, and wants want.
func checkFrameRoundTrip(t *testing.T, in, want Message) {
	t.Helper()
	frame, err := EncodeFrame(nil, in, 0, 0, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := DecodeMessage(frame, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %#v, want %#v", got, want)
	}
}

func TestServedLinesRoundTrip(t *testing.T) {
	t0 := time.UnixMilli(1_760_000_000_123)
	lines := []ServedLine{{Name: "2nn", Version: 7}, {Name: "fraud", Version: 0}, {Name: "logreg", Declined: true}}
	tests := []struct {
		name string
		in   Message
		want Message
	}{
		{"heartbeat with status and lines",
			&Heartbeat{Seq: 3, Sent: t0, ModelVersion: 7, Status: &AgentStatus{DataKind: "csv", Features: 4}, Lines: lines},
			&Heartbeat{Seq: 3, Sent: t0, ModelVersion: 7, Status: &AgentStatus{DataKind: "csv", Features: 4}, Lines: lines}},
		{"heartbeat with lines only writes an empty status",
			&Heartbeat{Seq: 4, Lines: lines},
			&Heartbeat{Seq: 4, Status: &AgentStatus{}, Lines: lines}},
		{"announce with a line name",
			&ModelAnnounce{Version: 9, Size: 100, Encoding: "fedge-model/1", Name: "fraud"},
			&ModelAnnounce{Version: 9, Size: 100, Encoding: "fedge-model/1", Name: "fraud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkFrameRoundTrip(t, tt.in, tt.want) })
	}
}

// An announce without a name encodes exactly as before version 5, so an
// older agent still decodes what a newer coordinator sends it.
func TestModelAnnounceWithoutNameUnchanged(t *testing.T) {
	m := &ModelAnnounce{Version: 9, Size: 100, Encoding: "fedge-model/1", BaseVersion: 8}
	b, err := Marshal(nil, m, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	named := *m
	named.Name = "fraud"
	nb, err := Marshal(nil, &named, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(nb, b) || len(nb) != len(b)+1+len("fraud") {
		t.Fatalf("named announce %x is not the unnamed one %x plus a name trailer", nb, b)
	}
}

func TestServedLinesLimit(t *testing.T) {
	hb := &Heartbeat{Seq: 1, Lines: make([]ServedLine, MaxServedLines+1)}
	if _, err := Marshal(nil, hb, Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("marshal of %d lines: %v, want ErrTooLarge", MaxServedLines+1, err)
	}
	hb.Lines = hb.Lines[:MaxServedLines]
	if _, err := Marshal(nil, hb, Limits{}); err != nil {
		t.Fatalf("marshal of %d lines: %v", MaxServedLines, err)
	}
}
