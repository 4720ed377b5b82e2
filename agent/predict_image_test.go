package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// postImages uploads images to /v1/predict as multipart/form-data, each
// in a field of the given name.
func postImages(t *testing.T, url, field string, images ...[]byte) (int, []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i, img := range images {
		w, err := mw.CreateFormFile(field, fmt.Sprintf("img%d.png", i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(img)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return postAs(t, url, mw.FormDataContentType(), body.Bytes())
}

func postAs(t *testing.T, url, contentType string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/v1/predict", contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func decodeResponse(t *testing.T, b []byte) PredictResponse {
	t.Helper()
	var r PredictResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return r
}

// TestPredictImageUpload serves a model taking [1 4 4] gray images: a PNG
// uploaded (raw or as a form field) is predicted from exactly the values
// the agent's image folder loader makes of the same file.
func TestPredictImageUpload(t *testing.T) {
	s, srv := newTestInference(t)
	s.classNames = []string{"a", "b", "c"}
	spec := tensor.Spec{Name: "img", Input: []int{1, 4, 4}, Layers: []tensor.LayerSpec{{Type: tensor.LayerFlatten}, {Type: tensor.LayerDense, Units: 3}}}
	m, err := tensor.NewModel(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	serve(s, 5, m)
	img := pngOf(t, 9, 7, func(x, y int) uint8 { return uint8(30*x + 7*y) })
	other := pngOf(t, 4, 4, func(x, y int) uint8 { return uint8(60 * y) })

	// What training sees: the folder loader's values for the file.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a", "x.png"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	ds, _, err := data.ReadImageFolder(root, data.ImageOptions{Width: 4, Height: 4})
	if err != nil {
		t.Fatal(err)
	}
	code, body := post(t, srv.URL, predictBody(ds.Row(0)))
	if code != http.StatusOK {
		t.Fatalf("JSON predict: %d %s", code, body)
	}
	want := decodeResponse(t, body).Predictions[0]

	code, body = postAs(t, srv.URL, "image/png", img)
	if code != http.StatusOK {
		t.Fatalf("raw PNG: %d %s", code, body)
	}
	got := decodeResponse(t, body)
	if got.ModelVersion != 5 || len(got.Predictions) != 1 || !slices.Equal(got.Predictions[0].Probabilities, want.Probabilities) {
		t.Fatalf("raw PNG: %+v, want %+v (the loader's preprocessing)", got, want)
	}
	if p := got.Predictions[0]; p.Label != s.classNames[p.Class] {
		t.Fatalf("label %q for class %d", p.Label, p.Class)
	}
	code, body = postImages(t, srv.URL, "image", img, other)
	if code != http.StatusOK {
		t.Fatalf("multipart: %d %s", code, body)
	}
	got = decodeResponse(t, body)
	if len(got.Predictions) != 2 || !slices.Equal(got.Predictions[0].Probabilities, want.Probabilities) ||
		slices.Equal(got.Predictions[1].Probabilities, want.Probabilities) {
		t.Fatalf("multipart of two images: %+v", got)
	}

	// A PNG header that declares 5000×4000 pixels (over the bound).
	bomb := slices.Clone(pngOf(t, 1, 1, func(int, int) uint8 { return 0 }))
	binary.BigEndian.PutUint32(bomb[16:], 5000)
	binary.BigEndian.PutUint32(bomb[20:], 4000)
	binary.BigEndian.PutUint32(bomb[29:], crc32.ChecksumIEEE(bomb[12:29]))
	tests := []struct {
		name string
		send func() (int, []byte)
		code int
		msg  string
	}{
		{"not an image", func() (int, []byte) { return postAs(t, srv.URL, "image/jpeg", []byte("hello")) }, http.StatusBadRequest, "not a PNG or JPEG"},
		{"bad second image", func() (int, []byte) { return postImages(t, srv.URL, "image", img, img[:50]) }, http.StatusBadRequest, `image 1 ("img1.png")`},
		{"unknown field", func() (int, []byte) { return postImages(t, srv.URL, "file", img) }, http.StatusBadRequest, `unknown form field "file"`},
		{"no image", func() (int, []byte) { return postImages(t, srv.URL, "image") }, http.StatusBadRequest, "no image"},
		{"too many images", func() (int, []byte) {
			many := make([][]byte, MaxPredictImages+1)
			for i := range many {
				many[i] = other
			}
			return postImages(t, srv.URL, "image", many...)
		}, http.StatusRequestEntityTooLarge, "split the batch"},
		{"too many pixels", func() (int, []byte) { return postAs(t, srv.URL, "image/png", bomb) }, http.StatusRequestEntityTooLarge, "5000×4000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := tt.send()
			var e errorResponse
			_ = json.Unmarshal(body, &e)
			if code != tt.code || !strings.Contains(e.Error, tt.msg) {
				t.Fatalf("%d %s, want %d with %q", code, body, tt.code, tt.msg)
			}
		})
	}

	// A model that does not take images says so.
	flat, err := tensor.NewModel(tensor.Spec{Name: "flat", Input: []int{16}, Layers: []tensor.LayerSpec{{Type: tensor.LayerDense, Units: 3}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	serve(s, 6, flat)
	if code, body := postAs(t, srv.URL, "image/png", img); code != http.StatusUnsupportedMediaType || !strings.Contains(string(body), "[16]") {
		t.Fatalf("image to a flat model: %d %s", code, body)
	}
	// JSON still works as before, whatever the content type says.
	if code, body := postAs(t, srv.URL, "application/x-www-form-urlencoded", predictBody(make([]float32, 16))); code != http.StatusOK {
		t.Fatalf("JSON body: %d %s", code, body)
	}
}
