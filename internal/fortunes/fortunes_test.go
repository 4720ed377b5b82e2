package fortunes

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"computers": "First cookie,\ntwo lines.\n%\n%\nB\bBold and caf\xe9\n%\n  \n%\nLast\n",
		"science":   "E = mc^2\n%\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	docs, err := Read(dir, []string{"computers", "science"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Doc{{"First cookie,\ntwo lines.", "computers"}, {"Bold and caf\uFFFD", "computers"}, {"Last", "computers"}, {"E = mc^2", "science"}}
	if !slices.Equal(docs, want) {
		t.Fatalf("Read = %q, want %q", docs, want)
	}
	train, test := Split(docs, 0.25, 1)
	if len(train) != 3 || len(test) != 1 {
		t.Fatalf("split %d/%d", len(train), len(test))
	}
	var b bytes.Buffer
	if err := WriteJSONL(&b, docs[:1]); err != nil || b.String() != `{"text":"First cookie,\ntwo lines.","label":"computers"}`+"\n" {
		t.Fatalf("WriteJSONL = %q, %v", b.String(), err)
	}
	t.Setenv("FEDGE_FORTUNES_DIR", dir)
	if _, err := Dir(); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "apt-get install fortunes") {
		t.Fatalf("Dir without politics: %v", err)
	}
}
