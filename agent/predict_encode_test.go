package agent

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAppendPredictResponseMatchesJSON: the hand-written answer is byte
// for byte encoding/json's, for probabilities of every magnitude and for
// labels that need escaping.
func TestAppendPredictResponseMatchesJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, 1e-6, 9.999999e-7, 1e-7, 1.2e-30, 1e-45, 1e21, 9.99999e20, 3.4028235e38, -2.5e-9, 0.1}
	tests := []struct {
		name  string
		names []string
	}{
		{"no labels", nil},
		{"plain labels", []string{"a", "b", "c", "d", "e"}},
		{"escaped labels", []string{`qu"ote`, "back\\slash", "<html>&", "ünï", "\x01ctl"}},
		{"labels of another model", []string{"x", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const c = 5
			for n := range 8 {
				probs := make([]float32, n*c)
				for i := range probs {
					if rng.IntN(3) == 0 {
						probs[i] = special[rng.IntN(len(special))]
					} else {
						probs[i] = math.Float32frombits(rng.Uint32() & 0x7f7fffff) // finite
					}
				}
				version := rng.Uint64()
				checkResponseJSON(t, version, probs, n, c, tt.names)
			}
		})
	}
}

// FuzzAppendPredictResponse: for any finite probabilities, the
// hand-written answer is encoding/json's.
func FuzzAppendPredictResponse(f *testing.F) {
	f.Add(uint64(7), []byte{0, 0, 128, 63, 0, 0, 0, 0}, "seven")
	f.Add(uint64(1), []byte{1, 0, 0, 0, 0, 0, 0, 128}, "<&>")
	f.Fuzz(func(t *testing.T, version uint64, raw []byte, label string) {
		probs := make([]float32, len(raw)/4)
		for i := range probs {
			v := math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				v = 0.5
			}
			probs[i] = v
		}
		c := 2
		names := []string{label, label + "2"}
		checkResponseJSON(t, version, probs, len(probs)/c, c, names)
	})
}

func checkResponseJSON(t *testing.T, version uint64, probs []float32, n, c int, names []string) {
	t.Helper()
	resp := PredictResponse{ModelVersion: version, Predictions: make([]Prediction, n)}
	for i := range n {
		p := probs[i*c : (i+1)*c]
		k := argmax(p)
		resp.Predictions[i] = Prediction{Class: k, Probabilities: p}
		if len(names) == c {
			resp.Predictions[i].Label = names[k]
		}
	}
	want, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if got := appendPredictResponse(nil, version, probs, n, c, names); string(got) != string(want) {
		t.Fatalf("hand-written answer\n%s\nencoding/json\n%s", got, want)
	}
}
