package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/tensor/data"
)

func TestAgentCheckData(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.csv", "age,color,label\n31,red,a\n,blue,b\n40,red,a\n25,,b\n50,green,a\n")
	bad := write("bad.csv", "age,color,label\n31,red,a\n32,blue\n")
	config := func(csv string) string {
		return write("agent-"+filepath.Base(csv)+".json", fmt.Sprintf(`{"coordinators": ["127.0.0.1:7001"], "data_dir": %q,
			"dataset": {"kind": "csv", "path": %q, "label_column": "label", "classes": ["a", "b"], "held_out": 0}}`, filepath.Join(dir, "state"), csv))
	}
	job := write("job.json", `{"name": "t", "spec": {"input": [1], "layers": [{"type": "dense", "units": 2}]}, "data": {"kind": "csv", "columns": [
		{"name": "age", "missing": "mean"}, {"name": "color", "missing": "drop", "categories": ["red", "blue"], "unknown": "other"}]}}`)
	strict := write("strict.json", `{"name": "t", "data": {"columns": [{"name": "age"}]}}`)
	docs := write("docs.csv", "text,label\nhello world,spam\nthe cat sat,ham\nbuy now,spam\n")
	textConfig := write("agent-text.json", fmt.Sprintf(`{"coordinators": ["127.0.0.1:7001"], "data_dir": %q,
		"dataset": {"kind": "text", "path": %q, "label_column": "label", "held_out": 0}}`, filepath.Join(dir, "state"), docs))
	badJob := write("badjob.json", `{"name": "t", "data": {"columns": [{"name": "age", "missing": "guess"}]}}`)
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err []string
	}{
		{"schema", []string{"-config", config(good)}, exitOK,
			[]string{"2 features, 2 classes", "rows: 5 (5 training, 0 held out)", "classes: a 3, b 2", "age     number", "color   text (3 distinct)  1", "cannot train"}, nil},
		{"preview", []string{"-config", config(good), "-job", job}, exitOK,
			[]string{"age     mean     fill 40.3333", "one-hot red, blue (unknown: an other slot)", "rows kept 4 of 5 (1 dropped); cells filled 1, clipped 0; unknown categories 1; model input width 4"}, nil},
		{"text", []string{"-config", textConfig}, exitOK,
			[]string{"text documents", "2 classes", "rows: 3 (3 training, 0 held out)", "classes: ham 1, spam 2"}, nil},
		{"malformed file", []string{"-config", config(bad)}, exitFailed, nil, []string{bad, "csv line 3", "wrong number of fields"}},
		{"rules reject a missing cell", []string{"-config", config(good), "-job", strict}, exitFailed, nil, []string{good, `csv line 3, column "age"`, "missing value"}},
		{"bad job", []string{"-config", config(good), "-job", badJob}, exitUsage, nil, []string{"guess"}},
		{"no config", nil, exitUsage, nil, []string{"-config is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"agent", "check-data"}, tt.args...), &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errb.String())
			}
			for _, s := range tt.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tt.err {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
		})
	}
}

func TestJobsStatusDataQuality(t *testing.T) {
	j := api.Job{ID: "j", Spec: api.JobSpec{Data: api.DataSchema{Columns: []data.ColumnRule{{Name: "age"}}}}}
	var b bytes.Buffer
	if err := printJob(&b, j, nil); err != nil || !strings.Contains(b.String(), "not yet summed") {
		t.Fatalf("%v\n%s", err, b.String())
	}
	j.Data = &api.DataQuality{Round: 3, Agents: 4, Rows: 2000, Kept: 1933, Dropped: 67, Filled: 393, Clipped: 34}
	b.Reset()
	if err := printJob(&b, j, nil); err != nil || !strings.Contains(b.String(), "1,933 of 2,000 rows kept (67 dropped); 393 cells filled, 34 clipped, 0 unknown categories; summed over 4 agents in round 3") {
		t.Fatalf("%v\n%s", err, b.String())
	}
}
