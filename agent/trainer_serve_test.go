package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor/safetensors"
)

// TestServeExternalModel rolls an external model out: the agent writes it
// as safetensors to the serve path, runs the reload hook with its version,
// reports it on /v1/model and answers /v1/predict with a clear 409.
func TestServeExternalModel(t *testing.T) {
	start, blob := externalModel(t)
	h := newHub(map[uint64][]byte{6: blob})
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	a.cfg.DataDir = t.TempDir()
	dir := t.TempDir()
	a.cfg.Trainer.ServePath = filepath.Join(dir, "live.safetensors")
	marker := filepath.Join(dir, "reloaded")
	a.cfg.Trainer.ReloadHook = []string{"/bin/sh", "-c", `echo "$FEDGE_MODEL_VERSION $FEDGE_MODEL_PATH" > ` + marker}
	tw := &twin{agent: a.ID(), hub: h}
	if err := a.syncModel(context.Background(), tw, &protocol.ModelAnnounce{Version: 6, Hash: start.Hash()}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(a.cfg.Trainer.ServePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, params, err := safetensors.Read(f, 1<<20)
	if err != nil || !reflect.DeepEqual(st.Layout, start.Spec.External) || !reflect.DeepEqual(params, start.Params) || st.Metadata["fedge_version"] != "6" {
		t.Fatalf("served file: %v %+v", err, st)
	}
	got, _ := os.ReadFile(marker)
	if want := "6 " + a.cfg.Trainer.ServePath + "\n"; string(got) != want {
		t.Fatalf("reload hook saw %q, want %q", got, want)
	}

	s := &inferenceServer{served: &a.served, m: newMetrics()}
	rec := httptest.NewRecorder()
	s.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/predict", strings.NewReader(`{"inputs":[[1,2,3]]}`)))
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "served by your reload hook") {
		t.Fatalf("predict: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	s.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/model", nil))
	var info ModelInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || !info.External || info.Version != 6 || info.Params != 8 || len(info.Spec.External) != 2 {
		t.Fatalf("model info: %v %+v", err, info)
	}
}

// TestServeExternalHookFailure: a failing reload hook fails the rollout,
// which keeps the previous model.
func TestServeExternalHookFailure(t *testing.T) {
	start, blob := externalModel(t)
	h := newHub(map[uint64][]byte{6: blob})
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	a.cfg.DataDir = t.TempDir()
	a.cfg.Trainer.ReloadHook = []string{"/bin/sh", "-c", `echo "serving stack is down" >&2; exit 3`}
	err := a.syncModel(context.Background(), &twin{agent: a.ID(), hub: h}, &protocol.ModelAnnounce{Version: 6, Hash: start.Hash()})
	if err == nil || !strings.Contains(err.Error(), "serving stack is down") || a.ModelVersion() != 0 {
		t.Fatalf("err %v, serving %d", err, a.ModelVersion())
	}
}
