package data

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// DefaultCSVMaxLineBytes is the longest line ReadRawCSV accepts when
// CSVOptions.MaxLineBytes is zero.
const DefaultCSVMaxLineBytes = 1 << 20

// RawTable is a CSV table read as it is, before any cleaning: missing
// cells are NaN and counted, cells that are not numbers are kept as text
// (a categorical column's values), and nothing is dropped or filled. A
// job's rules (CleanTable) turn it into a Dataset, so the same raw data
// serves jobs with different rules.
type RawTable struct {
	// Columns are the feature columns in CSVOptions.Features order (or
	// file order).
	Columns []RawColumn
	// Labels is each row's class (an index into Classes), -1 where the
	// label is missing.
	Labels  []int32
	Classes []string
	// Lines is each row's line in the file (for messages).
	Lines []int
}

// RawColumn is one feature column of a RawTable.
type RawColumn struct {
	Name string
	// Values holds each row's number, NaN where the cell is missing or
	// is not a number.
	Values []float32
	// Text holds each row's cell as written, trimmed ("" where missing),
	// for a column with at least one cell that is not a number; nil for
	// a numeric column.
	Text []string
	// Missing counts the missing cells.
	Missing int
}

// Rows returns the number of rows.
func (t *RawTable) Rows() int { return len(t.Labels) }

// Column returns the column named name, or nil.
func (t *RawTable) Column(name string) *RawColumn {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// Numeric reports whether every present cell of the column is a number.
func (c *RawColumn) Numeric() bool { return c.Text == nil }

// missingAt reports whether row i's cell is missing.
func (c *RawColumn) missingAt(i int) bool {
	if c.Text != nil {
		return c.Text[i] == ""
	}
	return c.Values[i] != c.Values[i]
}

// firstText returns the first row whose cell is not a number, or -1.
func (c *RawColumn) firstText() int {
	if c.Text == nil {
		return -1
	}
	for i, s := range c.Text {
		if s != "" && c.Values[i] != c.Values[i] {
			return i
		}
	}
	return -1
}

// ReadRawCSV reads a CSV table with a header row without cleaning it (see
// RawTable). It uses opts' Label, Features, Ignore, Classes, Comma,
// MissingTokens and limits; Missing and Fill play no part. The input is
// refused whole, with the line and column (LineError), if a row has the
// wrong number of cells, a line is longer than MaxLineBytes, a number is
// infinite, a label is not in Classes, or a limit is passed: nothing is
// half loaded.
func ReadRawCSV(r io.Reader, opts CSVOptions) (*RawTable, error) {
	t, err := readRawCSV(r, opts)
	if err != nil {
		return nil, fmt.Errorf("data.ReadRawCSV: %w", err)
	}
	return t, nil
}

func readRawCSV(r io.Reader, opts CSVOptions) (*RawTable, error) {
	if opts.Label == "" {
		return nil, errors.New("CSVOptions.Label is empty")
	}
	maxRows := orDefault(opts.MaxRows, DefaultCSVMaxRows)
	maxCols := orDefault(opts.MaxColumns, DefaultCSVMaxColumns)
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultCSVMaxBytes
	}
	lr := &limitedReader{r: &lineLimiter{r: r, max: orDefault(opts.MaxLineBytes, DefaultCSVMaxLineBytes), line: 1}, left: maxBytes}
	cr, c, err := startCSV(lr, opts, maxCols, rawErr)
	if err != nil {
		return nil, err
	}
	t := &RawTable{Columns: make([]RawColumn, len(c.cols))}
	for j, name := range c.names {
		t.Columns[j].Name = name
	}
	classOf := map[string]int{}
	var labels []string
	if opts.Classes != nil {
		for i, name := range opts.Classes {
			if _, dup := classOf[name]; dup {
				return nil, fmt.Errorf("CSVOptions.Classes lists %q twice", name)
			}
			classOf[name] = i
		}
		labels = opts.Classes
	}
	maxClasses := orDefault(opts.MaxClasses, DefaultCSVMaxClasses)
	intern := map[string]string{}
	var labelIdx []int
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, rawErr(err, lr)
		}
		line, _ := cr.FieldPos(0)
		if len(t.Lines) >= maxRows {
			return nil, &LineError{Input: "csv", Line: line, Err: fmt.Errorf("more than %d rows: %w", maxRows, ErrLimit)}
		}
		row := len(t.Lines)
		t.Lines = append(t.Lines, line)
		for j, col := range c.cols {
			rc := &t.Columns[j]
			cell := strings.TrimSpace(rec[col])
			v := math.NaN()
			if c.missing[cell] {
				cell = ""
			} else if f, err := strconv.ParseFloat(cell, 32); err == nil {
				if math.IsInf(f, 0) {
					return nil, &LineError{Input: "csv", Line: line, Column: c.names[j], Err: fmt.Errorf("not finite: %q: %w", clip(cell), ErrFormat)}
				}
				v = f
				if math.IsNaN(f) {
					cell = ""
				}
			} else if rc.Text == nil {
				// The first cell that is not a number: keep the column's text
				// from here on, and rebuild the rows before.
				rc.Text = make([]string, row, max(row+1, cap(rc.Values)))
				for i, x := range rc.Values[:row] {
					if x == x {
						rc.Text[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
					}
				}
			}
			if cell == "" {
				rc.Missing++
			}
			rc.Values = append(rc.Values, float32(v))
			if rc.Text != nil {
				if s, ok := intern[cell]; ok {
					cell = s
				} else if len(intern) < 1<<16 {
					cell = strings.Clone(cell)
					intern[cell] = cell
				} else {
					cell = strings.Clone(cell)
				}
				rc.Text = append(rc.Text, cell)
			}
		}
		lab := strings.TrimSpace(rec[c.label])
		if c.missing[lab] {
			labelIdx = append(labelIdx, -1)
			continue
		}
		ci, ok := classOf[lab]
		if !ok {
			if opts.Classes != nil {
				return nil, &LineError{Input: "csv", Line: line, Column: opts.Label, Err: fmt.Errorf("label %q not in the classes %q: %w", clip(lab), opts.Classes, ErrFormat)}
			}
			if len(labels) >= maxClasses {
				return nil, &LineError{Input: "csv", Line: line, Column: opts.Label, Err: fmt.Errorf("more than %d distinct labels: %w", maxClasses, ErrLimit)}
			}
			ci = len(labels)
			classOf[strings.Clone(lab)] = ci
			labels = append(labels, strings.Clone(lab))
		}
		labelIdx = append(labelIdx, ci)
	}
	classes, remap := orderClasses(labels, opts.Classes != nil)
	t.Classes = classes
	t.Labels = make([]int32, len(labelIdx))
	for i, li := range labelIdx {
		t.Labels[i] = -1
		if li >= 0 {
			t.Labels[i] = int32(remap[li])
		}
	}
	return t, nil
}

// rawErr is csvErr, with the line of a too-long line.
func rawErr(err error, lr *limitedReader) error {
	var le *LineError
	if errors.As(err, &le) {
		return le
	}
	return csvErr(err, lr)
}

// lineLimiter fails with a LineError once a line is longer than max
// bytes, so one huge line cannot make the CSV reader buffer it whole.
type lineLimiter struct {
	r    io.Reader
	max  int
	cur  int // bytes of the current line so far
	line int
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			l.line++
			l.cur = 0
			continue
		}
		if l.cur++; l.cur > l.max {
			return i, &LineError{Input: "csv", Line: l.line, Err: fmt.Errorf("line longer than %d bytes: %w", l.max, ErrLimit)}
		}
	}
	return n, err
}

// HoldOutRows splits rows at random into kept and held-out rows, with
// round(fraction·len(rows)) held out, each part in the order of rows; the
// split depends only on (len(rows), fraction, seed), as HoldOut's does.
// It panics unless 0 <= fraction <= 1.
func HoldOutRows(rows []int, fraction float64, seed uint64) (kept, held []int) {
	if !(fraction >= 0 && fraction <= 1) {
		panic(fmt.Sprintf("data.HoldOutRows: fraction %v outside [0,1]", fraction))
	}
	n := len(rows)
	k := int(math.Round(fraction * float64(n)))
	perm := newRand(seed).Perm(n)
	h, kp := perm[:k], perm[k:]
	slices.Sort(h)
	slices.Sort(kp)
	for _, i := range kp {
		kept = append(kept, rows[i])
	}
	for _, i := range h {
		held = append(held, rows[i])
	}
	return kept, held
}
