package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// namedModel is a small model whose spec carries name: its model line.
func namedModel(t testing.TB, name string, seed uint64) (*tensor.Model, []byte) {
	t.Helper()
	spec := tensor.Spec{Name: name, Input: []int{12}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 3}}}
	m, err := tensor.NewModel(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m, modelBlob(t, m)
}

// TestAgentModelLines: announces of two model lines are served side by
// side — the first line as the default, the other beside it — each with
// its own served and previous version in the store, a rollback comes
// from the store, and a line the configuration does not accept is
// declined without a download.
func TestAgentModelLines(t *testing.T) {
	m1, b1 := namedModel(t, "small", 1)
	m2, b2 := namedModel(t, "other", 2)
	m3, b3 := namedModel(t, "other", 3)
	_, b4 := namedModel(t, "third", 4)
	h := newHub(map[uint64][]byte{1: b1, 2: b2, 3: b3, 4: b4})
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	a.cfg.Jobs.Models = []string{"small", "oth*"}
	tw := &twin{agent: a.ID(), hub: h}
	sync := func(v uint64, m *tensor.Model, line string) {
		t.Helper()
		if err := a.syncModel(context.Background(), tw, &protocol.ModelAnnounce{Version: v, Hash: m.Hash(), Name: line}); err != nil {
			t.Fatalf("rollout of %d on %q: %v", v, line, err)
		}
	}
	sync(1, m1, "small")
	sync(2, m2, "other")
	sync(3, m3, "other")
	if a.ModelVersion() != 1 {
		t.Fatalf("default line serves %d, want 1", a.ModelVersion())
	}
	if sm := a.lines.get("other"); sm == nil || sm.version != 3 {
		t.Fatalf("line other serves %v, want 3", sm)
	}
	cur, _ := a.st.lineModel("other", keyCurrent)
	prev, _ := a.st.lineModel("other", keyPrevious)
	if cur == nil || prev == nil || cur.version != 3 || prev.version != 2 {
		t.Fatalf("stored line: current %v previous %v", cur, prev)
	}
	// A rollback on the line comes from the store, not the network.
	n := len(tw.frames())
	sync(2, m2, "other")
	if sm := a.lines.get("other"); sm.version != 2 || len(tw.frames()) != n {
		t.Fatalf("rollback: serving %d, %d new frames", sm.version, len(tw.frames())-n)
	}
	// A line the configuration does not take is declined, not fetched.
	a.startSync(context.Background(), tw, &protocol.ModelAnnounce{Version: 4, Name: "third"})
	waitIdle(t, a)
	if a.lines.get("third") != nil || len(tw.frames()) != n {
		t.Fatal("a declined line was fetched or served")
	}
	want := []protocol.ServedLine{{Name: "small", Version: 1}, {Name: "other", Version: 2}, {Name: "third", Declined: true}}
	if got := a.servedLineReport(); !reflect.DeepEqual(got, want) {
		t.Fatalf("heartbeat lines %+v, want %+v", got, want)
	}
	// A restart serves the stored lines again.
	b := &Agent{st: a.st, log: a.log, m: newMetrics()}
	if err := b.load(); err != nil {
		t.Fatal(err)
	}
	if b.ModelVersion() != 1 || b.lines.get("other") == nil || b.lines.get("other").version != 2 {
		t.Fatalf("after a restart: default %d, other %v", b.ModelVersion(), b.lines.get("other"))
	}
}

// TestInferenceModelLines: every line answers on its own paths, and the
// single-model paths keep answering with the default line.
func TestInferenceModelLines(t *testing.T) {
	s, srv := newTestInference(t)
	s.lines = &servedLines{}
	small, _ := namedModel(t, "small", 1)
	other := smallModelNamed(t, "other", 2)
	serve(s, 7, small)
	s.lines.swap("other", &servedModel{version: 9, hash: other.Hash(), rolledOut: time.Unix(1700000000, 0), model: other})
	var list ModelsResponse
	getJSON(t, srv.URL+"/v1/models", &list)
	if len(list.Models) != 2 || list.Models[0].Name != "small" || !list.Models[0].Default || list.Models[1].Name != "other" || list.Models[1].Version != 9 {
		t.Fatalf("/v1/models: %+v", list)
	}
	var info ModelInfo
	getJSON(t, srv.URL+"/v1/models/other", &info)
	if info.Version != 9 || info.Spec.Name != "other" {
		t.Fatalf("/v1/models/other: %+v", info)
	}
	x := make([]float32, 12)
	x[3] = 1
	for _, tt := range []struct {
		path    string
		version uint64
		probs   []float32
	}{
		{"/v1/predict", 7, predictOne(t, small, x)},
		{"/v1/models/small/predict", 7, predictOne(t, small, x)},
		{"/v1/models/other/predict", 9, predictOne(t, other, x)},
	} {
		resp, err := http.Post(srv.URL+tt.path, "application/json", bytes.NewReader(predictBody(x)))
		if err != nil {
			t.Fatal(err)
		}
		var pr PredictResponse
		decodeBody(t, resp, &pr)
		if resp.StatusCode != http.StatusOK || pr.ModelVersion != tt.version || !equalFloats(pr.Predictions[0].Probabilities, tt.probs) {
			t.Fatalf("%s: %d %+v, want version %d and %v", tt.path, resp.StatusCode, pr, tt.version, tt.probs)
		}
	}
	resp, err := http.Post(srv.URL+"/v1/models/nope/predict", "application/json", bytes.NewReader(predictBody(x)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown line: %d, want 404", resp.StatusCode)
	}
}

func smallModelNamed(t testing.TB, name string, seed uint64) *tensor.Model {
	m, _ := namedModel(t, name, seed)
	return m
}

func predictOne(t *testing.T, m *tensor.Model, x []float32) []float32 {
	t.Helper()
	p, err := m.Predict(x, 1)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInviteJobsAllow: an agent limited to some jobs declines the others'
// rounds with a reason naming its configuration, and joins its own.
func TestInviteJobsAllow(t *testing.T) {
	_, blob := smallModel(t, 1)
	h := newHub(map[uint64][]byte{1: blob})
	a := roundAgent(t, synthData(20, 12, 3, 1), 0)
	a.cfg.Jobs.Allow = []string{"fraud-*"}
	tw := &twin{agent: a.ID(), hub: h}
	join := func(id uint64, job string) *protocol.RoundJoin {
		inv := invite(id, protocol.RoundTrain, 300*time.Millisecond)
		inv.Job = job
		m, err := a.serve(tw, inv)
		if err != nil {
			t.Fatal(err)
		}
		return m.(*protocol.RoundJoin)
	}
	if j := join(1, "mnist-0123456789ab"); j.Accept || !strings.Contains(j.Reason, "job mnist-0123456789ab is not accepted by this agent") {
		t.Fatalf("job outside jobs.allow: %+v", j)
	}
	if j := join(2, "fraud-eu-0123456789ab"); !j.Accept {
		t.Fatalf("allowed job declined: %+v", j)
	}
	waitIdle(t, a)
}

func decodeBody(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentRounds: with jobs.concurrent 2 the agent joins rounds of
// two jobs at once, never two of one job nor a third; by default it runs
// one round at a time.
func TestConcurrentRounds(t *testing.T) {
	_, blob := smallModel(t, 1)
	h := newHub(map[uint64][]byte{1: blob})
	a := roundAgent(t, synthData(20, 12, 3, 1), 0)
	tw := &twin{agent: a.ID(), hub: h}
	join := func(id uint64, job string) *protocol.RoundJoin {
		inv := invite(id, protocol.RoundTrain, time.Minute)
		inv.Job = job
		m, err := a.serve(tw, inv)
		if err != nil {
			t.Fatal(err)
		}
		return m.(*protocol.RoundJoin)
	}
	abort := func(ids ...uint64) {
		for _, id := range ids {
			if _, err := a.serve(tw, &protocol.RoundAbort{RoundID: id}); err != nil {
				t.Fatal(err)
			}
		}
		waitIdle(t, a)
	}
	if j := join(1, "a"); !j.Accept {
		t.Fatalf("first round: %+v", j)
	}
	if j := join(2, "b"); j.Accept || j.Reason != "busy with round 1" {
		t.Fatalf("second job's round by default: %+v", j)
	}
	abort(1)
	a.cfg.Jobs.Concurrent = 2
	if j := join(3, "a"); !j.Accept {
		t.Fatalf("round of job a: %+v", j)
	}
	if j := join(4, "a"); j.Accept || j.Reason != "busy with round 3 of the same job" {
		t.Fatalf("second round of job a: %+v", j)
	}
	if j := join(5, "b"); !j.Accept {
		t.Fatalf("round of job b beside job a's: %+v", j)
	}
	if j := join(6, "c"); j.Accept || j.Reason != "busy with round 3" {
		t.Fatalf("third round: %+v", j)
	}
	abort(3, 5)
	if n := a.m.roundsFailed.Load(); n != 3 {
		t.Fatalf("%d rounds failed, want the 3 aborted", n)
	}
}

func TestJobsConfigMatching(t *testing.T) {
	j := JobsConfig{Allow: []string{"fraud-*", "mnist"}, Models: []string{"2nn"}, Threads: 3}
	tests := []struct {
		job  string
		want bool
	}{
		{"fraud-eu-0123456789ab", true}, // by name
		{"mnist-0123456789ab", true},    // the name without the ID's suffix
		{"mnist-2-0123456789ab", false},
		{"cifar-0123456789ab", false},
	}
	for _, tt := range tests {
		if got := j.acceptsJob(tt.job); got != tt.want {
			t.Errorf("acceptsJob(%q) = %v, want %v", tt.job, got, tt.want)
		}
	}
	if !j.acceptsModel("2nn") || j.acceptsModel("cnn") || !(&JobsConfig{}).acceptsModel("cnn") {
		t.Error("acceptsModel")
	}
	if env := strings.Join(j.threadEnv(), " "); !strings.Contains(env, "OMP_NUM_THREADS=3") || !strings.Contains(env, "FEDGE_THREADS=3") {
		t.Errorf("thread environment %q", env)
	}
}

// TestExternalModelOnOtherLine: the reload hook serves one external
// model, the default line's; an external model of another line is
// declined rather than written over it.
func TestExternalModelOnOtherLine(t *testing.T) {
	m1, b1 := namedModel(t, "small", 1)
	spec, err := tensor.ExternalSpec("ext", []tensor.ExternalTensor{{Name: "w", Shape: []int{2}}})
	if err != nil {
		t.Fatal(err)
	}
	ext, err := tensor.NewExternalModel(spec, []float32{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(map[uint64][]byte{1: b1, 2: modelBlob(t, ext)})
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	tw := &twin{agent: a.ID(), hub: h}
	if err := a.syncModel(context.Background(), tw, &protocol.ModelAnnounce{Version: 1, Hash: m1.Hash(), Name: "small"}); err != nil {
		t.Fatal(err)
	}
	if err := a.syncModel(context.Background(), tw, &protocol.ModelAnnounce{Version: 2, Hash: ext.Hash(), Name: "ext"}); err != nil {
		t.Fatal(err)
	}
	want := []protocol.ServedLine{{Name: "small", Version: 1}, {Name: "ext", Declined: true}}
	if got := a.servedLineReport(); !reflect.DeepEqual(got, want) || a.lines.get("ext") != nil {
		t.Fatalf("lines %+v, want %+v", got, want)
	}
}

// TestLineModelFilesSurviveCollection: the store removes model files no
// record names; the files of lines other than the default one are named
// by their own records and stay while the default line moves on.
func TestLineModelFilesSurviveCollection(t *testing.T) {
	st, err := openStore(filepath.Join(t.TempDir(), "state"), testLockWait)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	write := func(seed uint64) (modelData, *tensor.Model) {
		m, _ := smallModel(t, seed)
		d, err := st.files.write(m)
		if err != nil {
			t.Fatal(err)
		}
		return d, m
	}
	ld, lm := write(7)
	if err := st.promoteLine("other", &modelRecord{version: 2, hash: lm.Hash(), rolledOut: time.Now(), modelData: ld}); err != nil {
		t.Fatal(err)
	}
	for v := uint64(3); v < 6; v++ { // each promotion collects files
		d, m := write(v)
		if err := st.promote(&modelRecord{version: v, hash: m.Hash(), rolledOut: time.Now(), modelData: d}); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := st.lineModel("other", keyCurrent)
	if err != nil || rec == nil {
		t.Fatalf("line record: %v %v", rec, err)
	}
	got, err := st.files.load(rec.modelData)
	if err != nil {
		t.Fatalf("the line's model file was collected: %v", err)
	}
	if got.Hash() != lm.Hash() {
		t.Fatal("the line's model file holds another model")
	}
}
