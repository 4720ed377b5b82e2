package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
)

func postTensor(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/predict", contentTypeTensor, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestPredictTensorBody: a binary tensor body (little-endian float32
// rows) gets the answer its JSON twin gets; a body that is not whole
// rows, an empty one and a non-finite value get 400.
func TestPredictTensorBody(t *testing.T) {
	s, srv := newTestInference(t)
	serve(s, 3, batchModel(t, 1))
	code, jsonAnswer := post(t, srv.URL, predictBody(input(1), input(2)))
	if code != http.StatusOK {
		t.Fatalf("JSON: %d %s", code, jsonAnswer)
	}
	code, binAnswer := postTensor(t, srv.URL, tensorBody(input(1), input(2)))
	if code != http.StatusOK || !bytes.Equal(binAnswer, jsonAnswer) {
		t.Fatalf("binary: %d %s, want the JSON answer %s", code, binAnswer, jsonAnswer)
	}
	var resp PredictResponse
	if err := json.Unmarshal(binAnswer, &resp); err != nil || len(resp.Predictions) != 2 || resp.ModelVersion != 3 {
		t.Fatalf("binary answer %s: %v", binAnswer, err)
	}
	nan := input(0)
	nan[5] = float32(math.NaN())
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"partial row", tensorBody(input(1))[:784*4-2], "not a whole number of rows of 3136 bytes"},
		{"empty", nil, "empty body: send rows of 784"},
		{"not finite", tensorBody(nan), "input 0 feature 5 is not finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postTensor(t, srv.URL, tt.body)
			if code != http.StatusBadRequest || !strings.Contains(string(body), tt.want) {
				t.Fatalf("%d %s, want 400 %q", code, body, tt.want)
			}
		})
	}
}
