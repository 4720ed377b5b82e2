package data

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Formats ReadText reads.
const (
	// TextCSV is a CSV table with a header row naming its columns.
	TextCSV = "csv"
	// TextJSONL is JSON Lines: one JSON object per line, blank lines
	// skipped.
	TextJSONL = "jsonl"
)

// Defaults of TextOptions.
const (
	DefaultTextColumn  = "text"
	DefaultLabelColumn = "label"
	// DefaultTextMaxDocBytes bounds one document, and one JSON line.
	DefaultTextMaxDocBytes = 1 << 20
)

// TextOptions configure ReadText. Zero values mean the documented
// defaults.
type TextOptions struct {
	// Format is TextCSV or TextJSONL. Required.
	Format string
	// TextColumn names the column (CSV header, or JSON key) holding the
	// document. If empty, DefaultTextColumn ("text").
	TextColumn string
	// LabelColumn names the class column (or key). If empty,
	// DefaultLabelColumn ("label"). A JSON label may be a string or a
	// number (taken as written: 1 is class "1").
	LabelColumn string
	// Classes fixes the class names: class i is Classes[i], and a label
	// not in the list is an error. If nil, the distinct labels of the file,
	// ordered as ReadCSV orders them. Federated clients must fix Classes.
	Classes []string
	// Comma is the CSV field separator. If zero, ','.
	Comma rune
	// MaxRows, MaxClasses and MaxBytes bound the input as in CSVOptions (if
	// zero, DefaultCSVMaxRows, DefaultCSVMaxClasses, DefaultCSVMaxBytes);
	// MaxDocBytes bounds one document and one JSON line (if zero,
	// DefaultTextMaxDocBytes).
	MaxRows, MaxClasses, MaxDocBytes int
	MaxBytes                         int64
}

// TextTable is a labelled text dataset as read: documents, their classes
// and the class names.
type TextTable struct {
	Texts   []string // documents, in file order
	Labels  []int32  // class of each document
	Classes []string // class names; label i means Classes[i]
}

// ReadText reads labelled documents from a CSV or JSON Lines input.
// Every row needs a text and a label; a missing label, a text that is not
// valid UTF-8 or longer than MaxDocBytes, a label outside Classes or a
// malformed line is an error with its line and column (LineError,
// wrapping ErrFormat, ErrMissingValue or ErrLimit). An empty text is a
// document without words.
func ReadText(r io.Reader, opts TextOptions) (*TextTable, error) {
	t, err := readText(r, opts)
	if err != nil {
		return nil, fmt.Errorf("data.ReadText: %w", err)
	}
	return t, nil
}

// textReader collects documents and labels.
type textReader struct {
	opts        TextOptions
	input       string
	classOf     map[string]int
	labels      []string // distinct labels, first-seen order (or opts.Classes)
	maxClasses  int
	maxRows     int
	maxDoc      int
	texts       []string
	idx         []int
	textCol     string
	labelColumn string
}

func readText(r io.Reader, opts TextOptions) (*TextTable, error) {
	tr := &textReader{opts: opts, input: opts.Format, classOf: map[string]int{},
		maxClasses: orDefault(opts.MaxClasses, DefaultCSVMaxClasses), maxRows: orDefault(opts.MaxRows, DefaultCSVMaxRows),
		maxDoc: orDefault(opts.MaxDocBytes, DefaultTextMaxDocBytes), textCol: opts.TextColumn, labelColumn: opts.LabelColumn}
	if tr.textCol == "" {
		tr.textCol = DefaultTextColumn
	}
	if tr.labelColumn == "" {
		tr.labelColumn = DefaultLabelColumn
	}
	if tr.textCol == tr.labelColumn {
		return nil, fmt.Errorf("text and label are the same column %q", tr.textCol)
	}
	if opts.Classes != nil {
		for i, name := range opts.Classes {
			if _, dup := tr.classOf[name]; dup {
				return nil, fmt.Errorf("TextOptions.Classes lists %q twice", name)
			}
			tr.classOf[name] = i
		}
		tr.labels = opts.Classes
	}
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultCSVMaxBytes
	}
	lr := &limitedReader{r: r, left: maxBytes}
	var err error
	switch opts.Format {
	case TextCSV:
		err = tr.readCSV(lr)
	case TextJSONL:
		err = tr.readJSONL(lr)
	default:
		return nil, fmt.Errorf("format %q is not %q or %q", opts.Format, TextCSV, TextJSONL)
	}
	if err != nil {
		if lr.exceeded {
			return nil, fmt.Errorf("input over the %d-byte limit: %w", lr.limit(), ErrLimit)
		}
		return nil, err
	}
	classes, remap := orderClasses(tr.labels, opts.Classes != nil)
	y := make([]int32, len(tr.idx))
	for i, li := range tr.idx {
		y[i] = int32(remap[li])
	}
	texts := tr.texts
	if texts == nil {
		texts = []string{}
	}
	return &TextTable{Texts: texts, Labels: y, Classes: classes}, nil
}

// add records one row read at line.
func (tr *textReader) add(line int, doc, label string) error {
	if len(tr.texts) >= tr.maxRows {
		return &LineError{Input: tr.input, Line: line, Err: fmt.Errorf("more than %d rows: %w", tr.maxRows, ErrLimit)}
	}
	if len(doc) > tr.maxDoc {
		return &LineError{Input: tr.input, Line: line, Column: tr.textCol, Err: fmt.Errorf("text of %d bytes, more than %d: %w", len(doc), tr.maxDoc, ErrLimit)}
	}
	if !utf8.ValidString(doc) {
		return &LineError{Input: tr.input, Line: line, Column: tr.textCol, Err: fmt.Errorf("text is not valid UTF-8: %w", ErrFormat)}
	}
	label = strings.TrimSpace(label)
	if label == "" {
		return &LineError{Input: tr.input, Line: line, Column: tr.labelColumn, Err: ErrMissingValue}
	}
	ci, ok := tr.classOf[label]
	if !ok {
		if tr.opts.Classes != nil {
			return &LineError{Input: tr.input, Line: line, Column: tr.labelColumn, Err: fmt.Errorf("label %q not in the classes %q: %w", clip(label), tr.opts.Classes, ErrFormat)}
		}
		if len(tr.labels) >= tr.maxClasses {
			return &LineError{Input: tr.input, Line: line, Column: tr.labelColumn, Err: fmt.Errorf("more than %d distinct labels: %w", tr.maxClasses, ErrLimit)}
		}
		ci = len(tr.labels)
		tr.classOf[label] = ci
		tr.labels = append(tr.labels, label)
	}
	tr.texts = append(tr.texts, doc)
	tr.idx = append(tr.idx, ci)
	return nil
}

func (tr *textReader) readCSV(r io.Reader) error {
	cr := csv.NewReader(r)
	if tr.opts.Comma != 0 {
		cr.Comma = tr.opts.Comma
	}
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("no header row: %w", ErrFormat)
	}
	if err != nil {
		return tr.csvErr(err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // UTF-8 byte order mark
	}
	ti, li := -1, -1
	for i, h := range header {
		switch strings.TrimSpace(h) {
		case tr.textCol:
			ti = i
		case tr.labelColumn:
			li = i
		}
	}
	if ti < 0 || li < 0 {
		return &LineError{Input: "csv", Line: 1, Err: fmt.Errorf("the header %q lacks the text column %q or the label column %q: %w", header, tr.textCol, tr.labelColumn, ErrFormat)}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return tr.csvErr(err)
		}
		line, _ := cr.FieldPos(0)
		if err := tr.add(line, rec[ti], rec[li]); err != nil {
			return err
		}
	}
}

func (tr *textReader) csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{Input: "csv", Line: pe.Line, Err: fmt.Errorf("%v: %w", pe.Err, ErrFormat)}
	}
	return err
}

func (tr *textReader) readJSONL(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), tr.maxDoc+64<<10) // the document plus its key, label and escapes
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\ufeff"))
		}
		if len(b) == 0 {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return &LineError{Input: "jsonl", Line: line, Err: fmt.Errorf("not a JSON object: %v: %w", err, ErrFormat)}
		}
		raw, ok := obj[tr.textCol]
		if !ok {
			return &LineError{Input: "jsonl", Line: line, Column: tr.textCol, Err: fmt.Errorf("no such key: %w", ErrMissingValue)}
		}
		var doc string
		if err := json.Unmarshal(raw, &doc); err != nil {
			return &LineError{Input: "jsonl", Line: line, Column: tr.textCol, Err: fmt.Errorf("not a string: %w", ErrFormat)}
		}
		label, err := jsonLabel(obj[tr.labelColumn])
		if err != nil {
			return &LineError{Input: "jsonl", Line: line, Column: tr.labelColumn, Err: err}
		}
		if err := tr.add(line, doc, label); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &LineError{Input: "jsonl", Line: line + 1, Err: fmt.Errorf("line longer than %d bytes: %w", tr.maxDoc+64<<10, ErrLimit)}
		}
		return err
	}
	return nil
}

// jsonLabel returns a JSON label as text: a string's value or a number as
// written; a missing or null label is ErrMissingValue.
func jsonLabel(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", ErrMissingValue
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("label %s is neither a string nor a number: %w", clip(string(raw)), ErrFormat)
}
