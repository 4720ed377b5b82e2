package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// TestVersion6Trailers checks the trailers version 6 adds to Hello and
// RoundPlan: they round-trip when set, leave the older layout byte for
// byte when not, and a written trailer cannot be empty.
func TestVersion6Trailers(t *testing.T) {
	tests := []struct {
		name     string
		without  Message
		with     Message
		badTrail []byte
	}{
		{"Hello", &Hello{MinVersion: 1, Version: 6, AgentID: "a1"}, &Hello{MinVersion: 1, Version: 6, AgentID: "a1", Round: 42}, []byte{0}},
		{"RoundPlan", &RoundPlan{RoundID: 7, SecAgg: []byte("cfg")},
			&RoundPlan{RoundID: 7, SecAgg: []byte("cfg"), GroupNode: "coord-b", GroupAddr: "127.0.0.1:7443"}, []byte{1, 'x', 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, err := Marshal(nil, tt.without, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			full, err := Marshal(nil, tt.with, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(full, old) || len(full) == len(old) {
				t.Fatalf("the trailer does not follow the older layout: %x vs %x", full, old)
			}
			got, err := Unmarshal(tt.with.Type(), full, Limits{})
			if err != nil || !reflect.DeepEqual(got, tt.with) {
				t.Fatalf("round trip: %#v, %v", got, err)
			}
			got, err = Unmarshal(tt.with.Type(), old, Limits{})
			if err != nil || !reflect.DeepEqual(got, tt.without) {
				t.Fatalf("older layout: %#v, %v", got, err)
			}
			if _, err := Unmarshal(tt.with.Type(), append(old, tt.badTrail...), Limits{}); !errors.Is(err, ErrMalformed) {
				t.Fatalf("empty trailer: %v, want ErrMalformed", err)
			}
		})
	}
}

// TestGroupResultSizeMatchesElements refuses a result whose blob is not
// the size of its sum.
func TestGroupResultSizeMatchesElements(t *testing.T) {
	m := &GroupResult{RoundID: 1, Elements: 2499, Blob: sampleBlobInfo()}
	b, err := Marshal(nil, m, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(TypeGroupResult, b, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	failed := &GroupResult{RoundID: 1, Group: 3, Error: "too few survivors"}
	b, err = Marshal(nil, failed, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(TypeGroupResult, b, Limits{})
	if err != nil || !reflect.DeepEqual(got, failed) {
		t.Fatalf("failed group: %#v, %v", got, err)
	}
}
