package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

func TestDecodePredict(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		features int
		fast     bool // taken by the fast scanner
		rows     int
		err      bool
	}{
		{"plain", `{"inputs": [[1, 2.5, -3e2], [0, 0.125, 1E-3]]}`, 3, true, 2, false},
		{"compact", `{"inputs":[[1,2],[3,4]]}`, 2, true, 2, false},
		{"whitespace", "\n{ \"inputs\" :\t[ [ 1 , 2 ] ]\r\n}\n", 2, true, 1, false},
		{"empty list", `{"inputs": []}`, 2, true, 0, false},
		{"escaped key", `{"\u0069nputs": [[1, 2]]}`, 2, false, 1, false},
		{"key twice", `{"inputs": [[9, 9]], "inputs": [[1, 2]]}`, 2, false, 1, false},
		{"null inputs", `{"inputs": null}`, 2, false, 0, false},
		{"wrong width", `{"inputs": [[1, 2], [3]]}`, 2, false, 0, true},
		{"leading plus", `{"inputs": [[+1, 2]]}`, 2, false, 0, true},
		{"leading zero", `{"inputs": [[01, 2]]}`, 2, false, 0, true},
		{"bare dot", `{"inputs": [[.5, 2]]}`, 2, false, 0, true},
		{"hex", `{"inputs": [[0x10, 2]]}`, 2, false, 0, true},
		{"overflow", `{"inputs": [[1e39, 2]]}`, 2, false, 0, true},
		{"string", `{"inputs": [["1", 2]]}`, 2, false, 0, true},
		{"unknown key", `{"inputs": [[1, 2]], "x": 1}`, 2, false, 0, true},
		{"trailing", `{"inputs": [[1, 2]]} {}`, 2, false, 0, true},
		{"truncated", `{"inputs": [[1, 2]`, 2, false, 0, true},
		{"trailing comma", `{"inputs": [[1, 2,]]}`, 2, false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, ferr := scanPredict(nil, []byte(tt.body), tt.features)
			if (ferr == nil) != tt.fast {
				t.Fatalf("fast path err = %v, want taken=%v", ferr, tt.fast)
			}
			x, n, err := decodePredict(nil, []byte(tt.body), tt.features)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error=%v", err, tt.err)
			}
			if err == nil && (n != tt.rows || len(x) != n*tt.features) {
				t.Fatalf("decoded %d rows, %d values", n, len(x))
			}
		})
	}
	var w *rowWidthError
	if _, _, err := decodePredict(nil, []byte(`{"inputs": [[1, 2], [3]]}`), 2); !errors.As(err, &w) || w.row != 1 || w.got != 1 {
		t.Fatalf("width error = %v", err)
	}
	x, _, _ := decodePredict(nil, []byte(`{"inputs": [[0.1, 3.4028234e38, -1.17549435e-38, 5e-324]]}`), 4)
	if x[0] != float32(0.1) || x[1] != math.MaxFloat32 || x[2] != -1.17549435e-38 || x[3] != 0 {
		t.Fatalf("values %v", x)
	}
}

// FuzzDecodePredict checks the fast scanner against encoding/json: what it
// accepts, encoding/json (strict, as the slow path runs it) accepts too,
// with the same float32 values.
func FuzzDecodePredict(f *testing.F) {
	f.Add([]byte(`{"inputs": [[1, 2.5, -3e2], [0, 0.125, 1E-3]]}`), uint8(2))
	f.Add([]byte(`{"inputs":[[1,2],[3,4]]}`), uint8(1))
	f.Add([]byte(`{"inputs": []}`), uint8(0))
	f.Add([]byte(`{"inputs": [[-0, 0.0e+0, 1e-46, 3.4028235e38]]}`), uint8(3))
	f.Add([]byte(`{"inputs": [[1e39]]}`), uint8(0))
	f.Add([]byte(`{"\u0069nputs": [[1]]}`), uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, fb uint8) {
		features := int(fb%8) + 1
		x, n, err := scanPredict(nil, body, features)
		dx, dn, derr := decodePredict(nil, body, features)
		if derr == nil && len(dx) != dn*features {
			t.Fatalf("decodePredict: %d rows of %d values", dn, len(dx))
		}
		// The whole decoder agrees with encoding/json alone on every
		// body: the same error, or the same rows.
		rx, rn, rerr := decodeJSONOnly(body, features)
		if fmt.Sprint(derr) != fmt.Sprint(rerr) || dn != rn || !slices.EqualFunc(dx, rx, sameBits) {
			t.Fatalf("%q: decodePredict = %d rows, %v; encoding/json = %d rows, %v", body, dn, derr, rn, rerr)
		}
		if err != nil {
			if !errors.Is(err, errSlowPath) {
				t.Fatalf("fast path error %v is not errSlowPath", err)
			}
			return
		}
		var req PredictRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			t.Fatalf("fast path accepted %q, encoding/json refuses: %v", body, err)
		}
		if len(req.Inputs) != n {
			t.Fatalf("rows %d vs %d", n, len(req.Inputs))
		}
		k := 0
		for _, row := range req.Inputs {
			if len(row) != features {
				t.Fatalf("fast path accepted a row of %d values, want %d", len(row), features)
			}
			for _, v := range row {
				if math.Float32bits(v) != math.Float32bits(x[k]) {
					t.Fatalf("value %d: fast %v, json %v", k, x[k], v)
				}
				k++
			}
		}
	})
}

// decodeJSONOnly is decodePredict by encoding/json alone, the reference
// of FuzzDecodePredict.
func decodeJSONOnly(body []byte, features int) ([]float32, int, error) {
	var req PredictRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, 0, err
	}
	if dec.More() {
		return nil, 0, errTrailing
	}
	var out []float32
	for i, row := range req.Inputs {
		if len(row) != features {
			return nil, 0, &rowWidthError{row: i, got: len(row)}
		}
		out = append(out, row...)
	}
	return out, len(req.Inputs), nil
}

func sameBits(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// TestScanNumberMatchesStrconv: the fast number scanner gives
// strconv.ParseFloat's float32 bits for random float32 values, random
// short decimals and exponents, and refuses what is not a JSON number.
func TestScanNumberMatchesStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cases []string
	for range 20000 {
		f := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		cases = append(cases, strconv.FormatFloat(float64(f), 'g', -1, 32))
		cases = append(cases, strconv.FormatFloat(float64(rng.Float32()), 'g', -1, 32))
		cases = append(cases, fmt.Sprintf("%d.%0*d", rng.IntN(1000), 1+rng.IntN(12), rng.Uint64N(1e12)))
		cases = append(cases, fmt.Sprintf("-%de%d", rng.IntN(100000), rng.IntN(30)-15))
	}
	cases = append(cases, "0.02745098", "0.00000000123456789012", "0.123456789012345678901", "12345678.87654321",
		"1234567890123456789.5", "0.000000000000000000000000000000000000000001401298464324817",
		"99999999.99999999", "10000000000000000", "12345678e-8")
	cases = append(cases, "0", "-0", "0.0", "1e10", "16777216", "16777217", "0.1", "3.4028235e38", "1e-45", "123456789012345678901234")
	for _, s := range cases {
		want, err := strconv.ParseFloat(s, 32)
		got, end, ok := scanNumber([]byte(s+","), 0)
		if err != nil || !ok || end != len(s) || math.Float32bits(got) != math.Float32bits(float32(want)) {
			t.Fatalf("%q: scanNumber = %v, %d, %v; strconv = %v, %v", s, got, end, ok, float32(want), err)
		}
	}
	for _, s := range []string{"", "-", "+1", ".5", "1.", "01", "1e", "1e+", "0x10", "3.5e39", "0.1234567a", "1.2345678x9"} {
		if _, end, ok := scanNumber([]byte(s), 0); ok && end == len(s) {
			t.Errorf("%q accepted as a JSON number", s)
		}
	}
}
