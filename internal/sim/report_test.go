package sim

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestCSVRoundTrip(t *testing.T) {
	jobs := []JobResult{
		{ID: "a", Rounds: []RoundLine{{Round: 1, Model: 2, Participants: 3, TestAccuracy: 0.5, TestLoss: 1.25, TrainLoss: 2, Epsilon: 0.75,
			BytesIn: 100, BytesOut: 50, Seconds: 1.5, CoordSeconds: 0.25}, {Round: 2, Model: 3, TestAccuracy: 0.625}}},
		{ID: "b", Rounds: []RoundLine{{Round: 1, Model: 5, Epsilon: 8}}},
	}
	path := filepath.Join(t.TempDir(), "rounds.csv")
	if err := WriteCSV(path, jobs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, jobs) {
		t.Errorf("read back\n%+v\nwrote\n%+v", got, jobs)
	}
	bad := filepath.Join(t.TempDir(), "other.csv")
	if err := os.WriteFile(bad, []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCSV(bad); !errors.Is(err, ErrNotRounds) {
		t.Errorf("a foreign CSV: got %v, want ErrNotRounds", err)
	}
	if err := os.WriteFile(bad, []byte(`{"model": "2nn"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCSV(bad); !errors.Is(err, ErrNotRounds) {
		t.Errorf("a job file: got %v, want ErrNotRounds", err)
	}
}
