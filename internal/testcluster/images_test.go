package testcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedge/fedge/agent"
	"github.com/fedge/fedge/coordinator/api"
	"github.com/fedge/fedge/internal/testcluster"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/data"
)

// digitClasses are the class folder names of the MNIST image folders.
var digitClasses = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// digitPNG encodes example i of ds (a [1 28 28] MNIST set scaled to
// [0, 1]) as the gray PNG it was decoded from.
func digitPNG(t testing.TB, ds *tensor.Dataset, i int) []byte {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, 28, 28))
	for j, v := range ds.Row(i) {
		m.Pix[j] = uint8(v*255 + 0.5)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeDigits writes examples idx of ds as root/<digit>/<index>.png.
func writeDigits(t testing.TB, root string, ds *tensor.Dataset, idx []int) {
	t.Helper()
	for _, i := range idx {
		dir := filepath.Join(root, digitClasses[ds.Y[i]])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.png", i)), digitPNG(t, ds, i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestImageFolderFederated: three agents each hold 1,000 MNIST training
// digits as PNG folders (agent 2 has no zeros: the classes the agents are
// configured with keep its numbering), train the 2nn for 5 rounds under
// SecAgg+, and the model reaches 85% on 1,000 held-out test digits read
// back from PNG folders. An agent then serves an uploaded PNG as the
// model predicts it.
func TestImageFolderFederated(t *testing.T) {
	heavy(t)
	train, test, err := data.LoadMNIST(testutil.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const agents, perAgent = 3, 1000
	roots := make([]string, agents)
	for a := range agents {
		roots[a] = filepath.Join(dir, fmt.Sprintf("agent%d", a))
		var idx []int
		for i := a; i < agents*perAgent; i += agents {
			if a == 2 && train.Y[i] == 0 {
				continue
			}
			idx = append(idx, i)
		}
		writeDigits(t, roots[a], train, idx)
	}
	heldOut := filepath.Join(dir, "test")
	testIdx := make([]int, 1000)
	for i := range testIdx {
		testIdx[i] = i
	}
	writeDigits(t, heldOut, test, testIdx)

	c := testcluster.New(t, testcluster.Options{Agents: agents, Agent: func(i int, cfg *agent.Config) {
		cfg.Dataset = agent.DatasetConfig{Kind: agent.DatasetImages, Path: roots[i], Classes: digitClasses, HeldOut: 0.1, Seed: 1}
	}})
	job := fedAvgJob(5)
	job.Data = api.DataSchema{Kind: agent.DatasetImages}
	id := c.StartJob(job)
	rounds := c.WaitCommitted(id, 5, 180*time.Second)
	for _, r := range rounds {
		if r.State != api.RoundCommitted || r.Metrics["survivors"] != agents {
			t.Fatalf("round %d: %s %q survivors %v", r.Number, r.State, r.Error, r.Metrics["survivors"])
		}
	}
	last := rounds[len(rounds)-1]

	ds, classes, err := data.ReadImageFolder(heldOut, data.ImageOptions{Classes: digitClasses})
	if err != nil {
		t.Fatal(err)
	}
	if len(classes) != 10 || ds.Len() != 1000 {
		t.Fatalf("%d held-out digits of %d classes", ds.Len(), len(classes))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.Admin.FetchModel(ctx, last.ModelOut)
	if err != nil {
		t.Fatal(err)
	}
	met, err := tensor.Evaluate(m, ds)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("5 rounds on PNG folders: held-out accuracy %.2f%%", 100*met.Accuracy())
	if met.Accuracy() < 0.85 {
		t.Fatalf("held-out accuracy after 5 rounds: %.4f, want >= 0.85", met.Accuracy())
	}

	// Agent 0 serves uploaded PNGs with the model it holds: the classes
	// that model predicts on the digits' values, and the digit names as
	// labels.
	addr := c.Fleet[0].Daemon().InferenceAddr()
	var info agent.ModelInfo
	testutil.WaitFor(t, 30*time.Second, "agent 0 to serve a model", func() bool {
		resp, err := http.Get("http://" + addr + "/v1/model")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&info) == nil
	})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	const uploads = 20
	for i := range uploads {
		w, err := mw.CreateFormFile("image", fmt.Sprintf("%d.png", i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(digitPNG(t, test, i))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/v1/predict", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var pr agent.PredictResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &pr) != nil || len(pr.Predictions) != uploads {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	served, err := c.Admin.FetchModel(ctx, pr.ModelVersion)
	if err != nil {
		t.Fatal(err)
	}
	// The PNGs hold the IDX bytes exactly, so the test set's values are
	// what the agent must have decoded.
	probs, err := served.Predict(test.Subset(testIdx[:uploads]).X, uploads)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pr.Predictions {
		want := 0
		for k, v := range probs[i*10 : (i+1)*10] {
			if v > probs[i*10+want] {
				want = k
			}
		}
		if p.Class != want || p.Label != digitClasses[want] {
			t.Fatalf("upload %d: class %d label %q, model %d predicts %d", i, p.Class, p.Label, pr.ModelVersion, want)
		}
	}
}
