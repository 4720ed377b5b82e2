package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fedge/fedge/tensor"
)

// TestDeclaredCalibrationSet: a quantized model whose spec declares a
// calibration file is calibrated on that file's rows (its activation
// scales are those tensor.Quantize gives for them, and differ from the
// held-out data's), a relative path is in the data directory, "held-out"
// is the default, and a file of partial rows is refused.
func TestDeclaredCalibrationSet(t *testing.T) {
	ds := synthData(40, 12, 3, 5)
	a := roundAgent(t, ds, 0.5)
	a.cfg.DataDir = t.TempDir()
	m, _ := smallModel(t, 1)
	m.Spec.Quantize = tensor.QuantizeInt8
	// Rows unlike the held-out data: ten times its range.
	calib := make([]float32, 0, 20*12)
	for i := range 20 {
		for _, v := range ds.Row(i) {
			calib = append(calib, 10*v+3)
		}
	}
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, "calib.f32"), tensorBody(calib), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := tensor.Quantize(m, calib, 20)
	if err != nil {
		t.Fatal(err)
	}
	scales := func(calibration string) []float32 {
		t.Helper()
		c := m.Clone()
		c.Spec.Calibration = calibration
		q, err := a.quantize(1, c)
		if err != nil {
			t.Fatalf("calibration %q: %v", calibration, err)
		}
		return q.ActivationScales()
	}
	heldOut := scales("")
	if got := scales(tensor.CalibrationHeldOut); !slices.Equal(got, heldOut) {
		t.Fatalf("%q calibrates with scales %v, the default %v", tensor.CalibrationHeldOut, got, heldOut)
	}
	for _, path := range []string{"calib.f32", filepath.Join(a.cfg.DataDir, "calib.f32")} {
		got := scales(path)
		if !slices.Equal(got, want.ActivationScales()) || slices.Equal(got, heldOut) {
			t.Fatalf("declared %s: scales %v, want the file's %v (held-out data gives %v)", path, got, want.ActivationScales(), heldOut)
		}
	}
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, "short.f32"), tensorBody(calib)[:13*4], 0o600); err != nil {
		t.Fatal(err)
	}
	c := m.Clone()
	c.Spec.Calibration = "short.f32"
	if _, err := a.quantize(1, c); !errors.Is(err, tensor.ErrShape) {
		t.Fatalf("a file of partial rows: %v, want ErrShape", err)
	}
}
