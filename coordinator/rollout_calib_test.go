package coordinator_test

import (
	"context"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedge/fedge/coordinator"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// TestQuantizedRolloutCalibration: a quantized rollout that declares a
// calibration file registers a version whose spec carries it (so agents
// calibrate on it) and whose record shows it, stored at int8 size;
// declaring a calibration set without quantizing is refused.
func TestQuantizedRolloutCalibration(t *testing.T) {
	c := newCluster(t, 1)
	_, leader := c.Leader()
	adm, err := api.Load(filepath.Join(c.Dir, "admin"), []string{c.Peers[0].Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var job api.Job
	if err := adm.Call(ctx, api.VerbJobsStart, api.QueryOptions{}, api.JobSpec{Name: "calib", Model: "logreg", Rounds: 1}, &job); err != nil {
		t.Fatal(err)
	}
	var v uint64
	testutil.WaitFor(t, 15*time.Second, "the job's first model", func() bool {
		leader.FSM().Read(func(s *coordinator.State) { v = s.Jobs[job.ID].Model })
		return v != 0
	})
	cohorts := []api.Cohort{{Name: "all", Percent: 100}}
	err = adm.Call(ctx, api.VerbRolloutStart, api.QueryOptions{}, api.RolloutRequest{Model: v, Cohorts: cohorts, Gate: "accuracy>=0", Calibration: "calib.f32"}, nil)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest {
		t.Fatalf("a calibration set without quantize: %v, want a bad request", err)
	}
	var ro api.Rollout
	if err := adm.Call(ctx, api.VerbRolloutStart, api.QueryOptions{}, api.RolloutRequest{Model: v, Cohorts: cohorts, Gate: "accuracy>=0",
		Quantize: tensor.QuantizeInt8, Calibration: "calib.f32"}, &ro); err != nil {
		t.Fatal(err)
	}
	m, err := adm.FetchModel(ctx, ro.Model)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Model == v || m.Spec.Quantize != tensor.QuantizeInt8 || m.Spec.Calibration != "calib.f32" {
		t.Fatalf("quantized version %d of %d: spec quantize %q calibration %q", ro.Model, v, m.Spec.Quantize, m.Spec.Calibration)
	}
	leader.FSM().Read(func(s *coordinator.State) {
		if r := s.Models[ro.Model]; r == nil || r.Calibration != "calib.f32" || r.QuantizedFrom != v {
			t.Fatalf("record %+v", r)
		}
	})
	// The int8 version is stored with int8 weights: about a quarter of
	// the float file, and read back to its announced hash.
	var floatSize, int8Size int
	var int8Hash string
	leader.FSM().Read(func(s *coordinator.State) {
		floatSize, int8Size, int8Hash = s.Models[v].Size, s.Models[ro.Model].Size, s.Models[ro.Model].Hash
	})
	if h := m.Hash(); int8Size == 0 || float64(int8Size) > 0.3*float64(floatSize) || hex.EncodeToString(h[:]) != int8Hash {
		t.Fatalf("int8 version: %d bytes (float %d), hash %s read back as %x", int8Size, floatSize, int8Hash, h)
	}
}
