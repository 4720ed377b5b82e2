package protocol

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		name, in string
		want     time.Duration
		wantErr  bool
	}{
		{"string", `"1m30s"`, 90 * time.Second, false},
		{"seconds", `30`, 30 * time.Second, false},
		{"fraction of a second", `0.25`, 250 * time.Millisecond, false},
		{"bad string", `"soon"`, 0, true},
		{"boolean", `true`, 0, true},
		{"null", `null`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if (err != nil) != tt.wantErr || time.Duration(d) != tt.want {
				t.Fatalf("%s: %v, %v; want %v (error %v)", tt.in, time.Duration(d), err, tt.want, tt.wantErr)
			}
		})
	}
	b, err := json.Marshal(struct {
		D Duration `json:"d"`
	}{Duration(90 * time.Second)})
	if err != nil || string(b) != `{"d":"1m30s"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
}
