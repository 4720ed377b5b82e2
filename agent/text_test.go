package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
	"github.com/fedge/fedge/tensor/text"
)

// writeTextData writes n labelled documents as JSON Lines (or CSV):
// "sport" documents talk of matches, "tech" ones of software.
func writeTextData(t *testing.T, dir, name string, n int) string {
	t.Helper()
	words := map[string][]string{
		"sport": {"match", "goal", "team", "coach", "league", "score"},
		"tech":  {"software", "server", "bug", "release", "cluster", "disk"},
	}
	var b strings.Builder
	csv := strings.HasSuffix(name, ".csv")
	if csv {
		b.WriteString("label,body\n")
	}
	for i := range n {
		class := "sport"
		if i%2 == 1 {
			class = "tech"
		}
		w := words[class]
		doc := fmt.Sprintf("The %s and the %s, then %s %d", w[i%6], w[(i/2)%6], strings.ToUpper(w[(i/3)%6]), i)
		if csv {
			fmt.Fprintf(&b, "%s,%q\n", class, doc)
		} else {
			fmt.Fprintf(&b, `{"text": %q, "label": %q}`+"\n", doc, class)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTextConfig(t *testing.T) {
	dir := t.TempDir()
	jl := writeTextData(t, dir, "docs.jsonl", 4)
	odd := writeTextData(t, dir, "docs.txt", 4)
	tests := []struct {
		name    string
		ds      DatasetConfig
		wantErr string
	}{
		{"jsonl by extension", DatasetConfig{Kind: DatasetText, Path: jl}, ""},
		{"format named", DatasetConfig{Kind: DatasetText, Path: odd, Format: "jsonl"}, ""},
		{"no path", DatasetConfig{Kind: DatasetText}, "dataset.path is required"},
		{"extension says nothing", DatasetConfig{Kind: DatasetText, Path: odd}, `dataset.format: ` + odd + `: name the format (csv or jsonl)`},
		{"bad format", DatasetConfig{Kind: DatasetText, Path: jl, Format: "xml"}, `dataset.format: "xml" is not csv or jsonl`},
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	cfg := DefaultConfig()
	Flags(fs, &cfg)
	if err := fs.Parse([]string{"-dataset-kind", "text", "-dataset-path", odd, "-dataset-format", "jsonl", "-text-column", "body"}); err != nil ||
		!reflect.DeepEqual(cfg.Dataset, DatasetConfig{Kind: DatasetText, Path: odd, Format: "jsonl", TextColumn: "body", HeldOut: DefaultHeldOut}) {
		t.Fatalf("flags: %+v, %v", cfg.Dataset, err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Coordinators, cfg.DataDir, cfg.Dataset = []string{"127.0.0.1:7000"}, dir, tt.ds
			cfg.Dataset.HeldOut = DefaultHeldOut
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want ErrConfig with %q", err, tt.wantErr)
			}
		})
	}
}

// TestTextDataForModel: the agent keeps documents and tokenizes them for
// each text model as its spec says, the held-out split apart; a model
// that does not read text is refused, as is text on non-text data.
func TestTextDataForModel(t *testing.T) {
	dir := t.TempDir()
	p := writeTextData(t, dir, "docs.csv", 200)
	cfg := DatasetConfig{Kind: DatasetText, Path: p, TextColumn: "body", Classes: []string{"sport", "tech"}, HeldOut: 0.25, Shards: 2, Shard: 1, Seed: 3}
	d, err := loadData(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.train.Len()+d.heldOut.Len() != 100 || d.heldOut.Len() != 25 || d.train.Classes != 2 {
		t.Fatalf("split %d + %d of 100", d.train.Len(), d.heldOut.Len())
	}
	spec := tensor.TextClassifierSpec(1<<12, 8, 12, 2, 2)
	train, held, err := d.forModel(spec)
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != d.train.Len() || held.Len() != d.heldOut.Len() || train.Features() != 12 || !slices.Equal(train.Y, d.train.Y) {
		t.Fatalf("tokenized %d×%d, held %d", train.Len(), train.Features(), held.Len())
	}
	// Row i is the tokenizer's encoding of the document it stands for.
	tok, _ := text.New(spec)
	doc := d.text.docs[int(d.train.X[0])]
	want, _ := tok.Encode(nil, doc)
	if !slices.Equal(train.Row(0), want) || !strings.HasPrefix(doc, "The ") {
		t.Fatalf("row 0 = %v, want the encoding %v of %q", train.Row(0), want, doc)
	}
	again, _, _ := d.forModel(spec)
	if again != train {
		t.Error("the same tokenizer tokenized again")
	}
	uni := tensor.TextClassifierSpec(1<<12, 8, 12, 1, 2)
	if other, _, _ := d.forModel(uni); other == train || other.Row(0)[2] == train.Row(0)[2] {
		t.Error("a model with another tokenizer got the cached ids")
	}
	logreg, _ := tensor.NamedSpec(tensor.SpecLogReg)
	if _, _, err := d.forModel(logreg); !errors.Is(err, errNotTextModel) || !errors.Is(err, text.ErrNotText) {
		t.Fatalf("logreg on text data: %v", err)
	}
	plain := &localData{train: &tensor.Dataset{Shape: []int{12}}, heldOut: &tensor.Dataset{Shape: []int{12}}}
	if _, _, err := plain.forModel(spec); !errors.Is(err, errNotTextModel) {
		t.Fatalf("text model on numeric data: %v", err)
	}

	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"text\": \"a\", \"label\": \"sport\"}\n{\"text\": 3, \"label\": \"tech\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadData(&DatasetConfig{Kind: DatasetText, Path: bad}); err == nil || !strings.Contains(err.Error(), `bad.jsonl: data.ReadText: jsonl line 2, column "text"`) {
		t.Fatalf("bad file: %v", err)
	}
}

// TestPredictText: a text model answers raw text with the predictions of
// the ids its tokenizer gives, and refuses malformed text bodies.
func TestPredictText(t *testing.T) {
	s, srv := newTestInference(t)
	spec := tensor.TextClassifierSpec(1<<10, 6, 10, 2, 3)
	m, err := tensor.NewModel(spec, 4)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := text.New(spec)
	s.served.Store(&servedModel{version: 3, hash: m.Hash(), model: m, tok: tok})
	s.classNames = []string{"a", "b", "c"}
	docs := []string{"Disk full on the build server", "", "¡Gol! El equipo gana la liga"}
	var ids [][]float32
	for _, d := range docs {
		x, _ := tok.Encode(nil, d)
		ids = append(ids, x)
	}
	answer := func(body string) PredictResponse {
		t.Helper()
		code, b := post(t, srv.URL, []byte(body))
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", body, code, b)
		}
		var pr PredictResponse
		if err := json.Unmarshal(b, &pr); err != nil {
			t.Fatal(err)
		}
		return pr
	}
	byIDs := answer(string(predictBody(ids...)))
	texts, _ := json.Marshal(map[string][]string{"texts": docs})
	byText := answer(string(texts))
	one := answer(`{"text": "Disk full on the build server"}`)
	if len(byText.Predictions) != 3 || len(one.Predictions) != 1 || byText.ModelVersion != 3 {
		t.Fatalf("answers %+v, %+v", byText, one)
	}
	for i, p := range byText.Predictions {
		if p.Class != byIDs.Predictions[i].Class || !slices.Equal(p.Probabilities, byIDs.Predictions[i].Probabilities) || p.Label != s.classNames[p.Class] {
			t.Errorf("text %d: %+v, ids gave %+v", i, p, byIDs.Predictions[i])
		}
	}
	if !slices.Equal(one.Predictions[0].Probabilities, byText.Predictions[0].Probabilities) {
		t.Error(`{"text"} and {"texts"} disagree`)
	}

	many, _ := json.Marshal(map[string][]string{"texts": make([]string, MaxPredictTexts+1)})
	for _, tt := range []struct{ body, want string }{
		{`{"text": "a", "texts": ["b"]}`, "exactly one of them"},
		{`{}`, "exactly one of them"},
		{`{"texts": []}`, `no texts: send {\"texts\"`},
		{`{"text": 5}`, "invalid text: a number where a JSON string belongs"},
		{`{"texts": ["a", 5]}`, "invalid texts"},
		{`{"prompt": "a"}`, "malformed JSON"},
		{`{"inputs": [[1, 2]]}`, "input 0 has 2 features; model 3 takes 10"},
		{string(many), "1025 texts, more than 1024; split the batch"},
	} {
		code, b := post(t, srv.URL, []byte(tt.body))
		if code != http.StatusBadRequest || !strings.Contains(string(b), tt.want) {
			t.Errorf("%.40s: %d %s, want 400 with %q", tt.body, code, b, tt.want)
		}
	}
}

// TestRolledOutTextModelServesText: a text model that reaches the agent
// by a rollout (not only one loaded from its store at start) answers raw
// text.
func TestRolledOutTextModelServesText(t *testing.T) {
	m, err := tensor.NewModel(tensor.TextClassifierSpec(64, 4, 8, 2, 3), 5)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h := newHub(map[uint64][]byte{1: blob})
	a := roundAgent(t, synthData(20, 12, 3, 3), 0)
	if err := a.syncModel(context.Background(), &twin{agent: a.ID(), hub: h}, &protocol.ModelAnnounce{Version: 1, Hash: m.Hash()}); err != nil {
		t.Fatal(err)
	}
	s := &inferenceServer{served: &a.served, m: newMetrics()}
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	if code, body := post(t, srv.URL, []byte(`{"texts": ["hello world", "bonjour"]}`)); code != http.StatusOK || !strings.Contains(string(body), `"model_version":1`) {
		t.Fatalf("predict after a rollout: %d %s", code, body)
	}
}
