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
			BytesIn: 100, BytesOut: 50, Seconds: 1.5, CoordSeconds: 0.25, ClipNorm: 0.375}, {Round: 2, Model: 3, TestAccuracy: 0.625}}},
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
	// A file from before the clip_norm column reads with ClipNorm 0.
	old := filepath.Join(t.TempDir(), "old.csv")
	if err := os.WriteFile(old, []byte("job,round,model,participants,test_accuracy,test_loss,train_loss,epsilon,bytes_in,bytes_out,seconds,coordinator_seconds\n"+
		"a,1,2,3,0.5,1.25,2,0.75,100,50,1.5,0.25\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = ReadCSV(old)
	if err != nil {
		t.Fatal(err)
	}
	want := jobs[0].Rounds[0]
	want.ClipNorm = 0
	if len(got) != 1 || len(got[0].Rounds) != 1 || got[0].Rounds[0] != want {
		t.Errorf("a file without clip_norm: read %+v, want %+v", got, want)
	}
	bad := filepath.Join(t.TempDir(), "other.csv")
	if err := os.WriteFile(bad, []byte("a,b\n1,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCSV(bad); !errors.Is(err, ErrNotRounds) {
		t.Errorf("a foreign CSV: got %v, want ErrNotRounds", err)
	}
	wide := "job,round,model,participants,test_accuracy,test_loss,train_loss,epsilon,bytes_in,bytes_out,seconds,coordinator_seconds,clip_norm,more\n"
	if err := os.WriteFile(bad, []byte(wide), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCSV(bad); !errors.Is(err, ErrNotRounds) {
		t.Errorf("a CSV with a column more: got %v, want ErrNotRounds", err)
	}
	if err := os.WriteFile(bad, []byte(`{"model": "2nn"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCSV(bad); !errors.Is(err, ErrNotRounds) {
		t.Errorf("a job file: got %v, want ErrNotRounds", err)
	}
}
