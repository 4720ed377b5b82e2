package fortunes

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDir is where Debian's fortunes package installs the cookie files.
const DefaultDir = "/usr/share/games/fortunes"

// Topics are the cookie files the example and the tests classify: four
// topics of 600 to 1,050 cookies each, 3,098 in all.
var Topics = []string{"computers", "politics", "science", "songs-poems"}

// ErrMissing reports that the cookie files are not installed.
var ErrMissing = errors.New("fortunes: cookie files missing")

// Dir returns the folder of the cookie files: $FEDGE_FORTUNES_DIR if set,
// else DefaultDir. It fails with ErrMissing, saying how to install them,
// when the folder lacks the files of Topics.
func Dir() (string, error) {
	dir := os.Getenv("FEDGE_FORTUNES_DIR")
	if dir == "" {
		dir = DefaultDir
	}
	for _, t := range Topics {
		if _, err := os.Stat(filepath.Join(dir, t)); err != nil {
			return "", fmt.Errorf("fortunes.Dir: %w: %s has no %q cookie file; install Debian's fortunes package (apt-get install fortunes) or set FEDGE_FORTUNES_DIR", ErrMissing, dir, t)
		}
	}
	return dir, nil
}

// Doc is one cookie and its topic.
type Doc struct {
	Text  string `json:"text"`
	Label string `json:"label"`
}

// Read returns the cookies of the topic files in dir, in file order: each
// cookie is the text between lines holding a single "%", trimmed, with
// invalid UTF-8 replaced and backspace overstrikes (x\bx) removed.
// Empty cookies are skipped.
func Read(dir string, topics []string) ([]Doc, error) {
	var docs []Doc
	for _, t := range topics {
		f, err := os.Open(filepath.Join(dir, t))
		if err != nil {
			return nil, fmt.Errorf("fortunes.Read: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var cur strings.Builder
		flush := func() {
			if s := clean(cur.String()); s != "" {
				docs = append(docs, Doc{Text: s, Label: t})
			}
			cur.Reset()
		}
		for sc.Scan() {
			if line := sc.Text(); line == "%" {
				flush()
			} else {
				cur.WriteString(line)
				cur.WriteByte('\n')
			}
		}
		flush()
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fortunes.Read: %s: %w", t, err)
		}
	}
	return docs, nil
}

// clean removes overstrikes, replaces invalid UTF-8 and trims s.
func clean(s string) string {
	if strings.IndexByte(s, '\b') >= 0 {
		var b []byte
		for i := 0; i < len(s); i++ {
			if s[i] == '\b' {
				if len(b) > 0 {
					b = b[:len(b)-1]
				}
				continue
			}
			b = append(b, s[i])
		}
		s = string(b)
	}
	return strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
}

// Split shuffles docs with seed and returns the last share of them (a
// fraction in [0, 1)) as the test set, the rest as the training set.
func Split(docs []Doc, share float64, seed uint64) (train, test []Doc) {
	d := append([]Doc(nil), docs...)
	r := rand.New(rand.NewPCG(seed, 0x666f7274))
	r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	k := len(d) - int(share*float64(len(d)))
	return d[:k], d[k:]
}

// WriteJSONL writes docs as JSON Lines ({"text": ..., "label": ...}), the
// format of an agent's text dataset.
func WriteJSONL(w io.Writer, docs []Doc) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("fortunes.WriteJSONL: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("fortunes.WriteJSONL: %w", err)
	}
	return nil
}
