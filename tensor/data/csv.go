package data

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/fedge/fedge/tensor"
)

// MissingPolicy says what ReadCSV does with a missing feature value.
type MissingPolicy int

const (
	// MissingReject fails with ErrMissingValue and the line number (default).
	MissingReject MissingPolicy = iota
	// MissingDrop drops every row that has a missing value.
	MissingDrop
	// MissingMean fills a missing value with the mean of its column.
	MissingMean
	// MissingMedian fills a missing value with the median of its column.
	MissingMedian
	// MissingConstant fills a missing value with CSVOptions.Fill.
	MissingConstant
)

// String returns the policy name, as written in configurations.
func (p MissingPolicy) String() string {
	switch p {
	case MissingReject:
		return "reject"
	case MissingDrop:
		return "drop"
	case MissingMean:
		return "mean"
	case MissingMedian:
		return "median"
	case MissingConstant:
		return "constant"
	}
	return fmt.Sprintf("MissingPolicy(%d)", int(p))
}

// Defaults of CSVOptions' limits.
const (
	DefaultCSVMaxRows    = 10_000_000
	DefaultCSVMaxColumns = 10_000
	DefaultCSVMaxClasses = 65_536
	DefaultCSVMaxBytes   = 1 << 30
)

// DefaultMissingTokens returns the cell values ReadCSV treats as missing
// when CSVOptions.MissingTokens is nil: "", "NA", "NaN" and "?". Cells are
// compared after trimming spaces.
func DefaultMissingTokens() []string { return []string{"", "NA", "NaN", "?"} }

// CSVOptions configure ReadCSV. The zero value of every field but Label
// means the documented default.
type CSVOptions struct {
	// Label is the header name of the class column. Required.
	Label string
	// Features lists the feature columns, in the order they take in each
	// example. If nil, every column but Label and Ignore, in file order.
	// Listing them makes the layout independent of the file's column order,
	// which federated clients need.
	Features []string
	// Ignore lists columns to skip (ids, free text). Unused when Features
	// is set.
	Ignore []string
	// Classes fixes the class names: class i is Classes[i], and a label not
	// in the list is an error. If nil, the distinct labels of the file,
	// sorted numerically if they are all numbers, else lexicographically.
	// Federated clients must fix Classes, since one client may lack a class.
	Classes []string
	// Comma is the field separator. If zero, ','.
	Comma rune
	// Missing is the policy for missing feature values; a row whose label
	// is missing is rejected under MissingReject and dropped otherwise.
	Missing MissingPolicy
	// Fill is the value MissingConstant puts in missing cells.
	Fill float32
	// MissingTokens are the cell values that mean "missing". If nil,
	// DefaultMissingTokens(). A number that parses as NaN is also missing.
	MissingTokens []string
	// MaxRows, MaxColumns, MaxClasses and MaxBytes bound the input; if zero,
	// DefaultCSVMaxRows, DefaultCSVMaxColumns, DefaultCSVMaxClasses and
	// DefaultCSVMaxBytes.
	MaxRows, MaxColumns, MaxClasses int
	MaxBytes                        int64
	// MaxLineBytes bounds one line of the file (ReadRawCSV); if zero,
	// DefaultCSVMaxLineBytes.
	MaxLineBytes int
}

// Table is a CSV file read into a Dataset, with the names that give its
// numbers meaning.
type Table struct {
	Data     *tensor.Dataset // Shape [len(Features)]
	Features []string        // feature column names, in example order
	Classes  []string        // class names; label i means Classes[i]
	Dropped  int             // rows dropped for missing values
	Imputed  int             // cells filled by imputation
}

// ReadCSV reads a CSV table with a header row into a Dataset: the Label
// column gives the classes, the feature columns must be numbers (finite,
// float32 range). Errors carry the line number (see LineError).
func ReadCSV(r io.Reader, opts CSVOptions) (*Table, error) {
	t, err := readCSV(r, opts)
	if err != nil {
		return nil, fmt.Errorf("data.ReadCSV: %w", err)
	}
	return t, nil
}

type csvReader struct {
	opts    CSVOptions
	missing map[string]bool
	cols    []int    // file column of each feature
	names   []string // feature names
	label   int      // file column of the label
}

// startCSV reads the header of a CSV file through lr and lays out its
// columns by opts (at most maxCols); errWrap turns a read error into the
// caller's error (with its line and the byte limit).
func startCSV(lr *limitedReader, opts CSVOptions, maxCols int, errWrap func(error, *limitedReader) error) (*csv.Reader, *csvReader, error) {
	cr := csv.NewReader(lr)
	if opts.Comma != 0 {
		cr.Comma = opts.Comma
	}
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("no header row: %w", ErrFormat)
		}
		return nil, nil, errWrap(err, lr)
	}
	if len(header) > maxCols {
		return nil, nil, fmt.Errorf("%d columns over the limit of %d: %w", len(header), maxCols, ErrLimit)
	}
	c := &csvReader{opts: opts, missing: map[string]bool{}}
	if err := c.layout(header); err != nil {
		return nil, nil, err
	}
	tokens := opts.MissingTokens
	if tokens == nil {
		tokens = DefaultMissingTokens()
	}
	for _, tok := range tokens {
		c.missing[strings.TrimSpace(tok)] = true
	}
	return cr, c, nil
}

func readCSV(r io.Reader, opts CSVOptions) (*Table, error) {
	if opts.Label == "" {
		return nil, errors.New("CSVOptions.Label is empty")
	}
	if opts.Missing < MissingReject || opts.Missing > MissingConstant {
		return nil, fmt.Errorf("unknown %v", opts.Missing)
	}
	maxRows := orDefault(opts.MaxRows, DefaultCSVMaxRows)
	maxCols := orDefault(opts.MaxColumns, DefaultCSVMaxColumns)
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultCSVMaxBytes
	}
	lr := &limitedReader{r: r, left: maxBytes}
	cr, c, err := startCSV(lr, opts, maxCols, csvErr)
	if err != nil {
		return nil, err
	}

	nf := len(c.cols)
	var (
		x        []float32 // rows × nf; NaN marks a missing cell
		labelIdx []int     // per kept row: index into labels
		classOf  = map[string]int{}
		labels   []string // distinct labels, first-seen order
		dropped  int
		rows     int
	)
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
	row := make([]float32, nf)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvErr(err, lr)
		}
		line, _ := cr.FieldPos(0)
		if rows++; rows > maxRows {
			return nil, &LineError{Input: "csv", Line: line, Err: fmt.Errorf("more than %d rows: %w", maxRows, ErrLimit)}
		}
		lab := strings.TrimSpace(rec[c.label])
		if c.missing[lab] {
			if opts.Missing == MissingReject {
				return nil, &LineError{Input: "csv", Line: line, Column: opts.Label, Err: ErrMissingValue}
			}
			dropped++
			continue
		}
		hasMissing, err := c.parseRow(row, rec, line)
		if err != nil {
			return nil, err
		}
		if hasMissing && opts.Missing == MissingDrop {
			dropped++
			continue
		}
		ci, ok := classOf[lab]
		if !ok {
			if opts.Classes != nil {
				return nil, &LineError{Input: "csv", Line: line, Column: opts.Label, Err: fmt.Errorf("label %q not in CSVOptions.Classes: %w", lab, ErrFormat)}
			}
			if len(labels) >= maxClasses {
				return nil, &LineError{Input: "csv", Line: line, Column: opts.Label, Err: fmt.Errorf("more than %d distinct labels: %w", maxClasses, ErrLimit)}
			}
			ci = len(labels)
			classOf[lab] = ci
			labels = append(labels, lab)
		}
		labelIdx = append(labelIdx, ci)
		x = append(x, row...)
	}

	imputed, err := impute(x, nf, c.names, opts)
	if err != nil {
		return nil, err
	}
	classes, remap := orderClasses(labels, opts.Classes != nil)
	y := make([]int32, len(labelIdx))
	for i, li := range labelIdx {
		y[i] = int32(remap[li])
	}
	if x == nil {
		x = []float32{}
	}
	return &Table{
		Data:     &tensor.Dataset{X: x, Y: y, Shape: []int{nf}, Classes: len(classes)},
		Features: c.names,
		Classes:  classes,
		Dropped:  dropped,
		Imputed:  imputed,
	}, nil
}

// layout maps the header to the label and feature columns.
func (c *csvReader) layout(header []string) error {
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // UTF-8 byte order mark
	}
	pos := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.TrimSpace(h)
		if _, dup := pos[h]; dup {
			return &LineError{Input: "csv", Line: 1, Column: h, Err: fmt.Errorf("duplicate column name: %w", ErrFormat)}
		}
		pos[h] = i
	}
	li, ok := pos[c.opts.Label]
	if !ok {
		return &LineError{Input: "csv", Line: 1, Err: fmt.Errorf("no label column %q: %w", c.opts.Label, ErrFormat)}
	}
	c.label = li
	if c.opts.Features != nil {
		for _, name := range c.opts.Features {
			i, ok := pos[name]
			if !ok || i == li {
				return &LineError{Input: "csv", Line: 1, Err: fmt.Errorf("no feature column %q: %w", name, ErrFormat)}
			}
			if slices.Contains(c.cols, i) {
				return fmt.Errorf("CSVOptions.Features lists %q twice", name)
			}
			c.cols = append(c.cols, i)
			c.names = append(c.names, name)
		}
	} else {
		for i, h := range header {
			h = strings.TrimSpace(h)
			if i == li || slices.Contains(c.opts.Ignore, h) {
				continue
			}
			c.cols = append(c.cols, i)
			c.names = append(c.names, h)
		}
	}
	if len(c.cols) == 0 {
		return &LineError{Input: "csv", Line: 1, Err: fmt.Errorf("no feature columns: %w", ErrFormat)}
	}
	return nil
}

// parseRow parses the feature cells of rec into row (NaN where missing).
func (c *csvReader) parseRow(row []float32, rec []string, line int) (hasMissing bool, err error) {
	for j, col := range c.cols {
		cell := strings.TrimSpace(rec[col])
		if c.missing[cell] {
			if c.opts.Missing == MissingReject {
				return false, &LineError{Input: "csv", Line: line, Column: c.names[j], Err: ErrMissingValue}
			}
			row[j] = float32(math.NaN())
			hasMissing = true
			continue
		}
		v, err := strconv.ParseFloat(cell, 32)
		if err != nil {
			return false, &LineError{Input: "csv", Line: line, Column: c.names[j], Err: fmt.Errorf("not a float32 number: %q: %w", clip(cell), ErrFormat)}
		}
		if math.IsNaN(v) {
			if c.opts.Missing == MissingReject {
				return false, &LineError{Input: "csv", Line: line, Column: c.names[j], Err: ErrMissingValue}
			}
			row[j] = float32(math.NaN())
			hasMissing = true
			continue
		}
		if math.IsInf(v, 0) {
			return false, &LineError{Input: "csv", Line: line, Column: c.names[j], Err: fmt.Errorf("not finite: %q: %w", clip(cell), ErrFormat)}
		}
		row[j] = float32(v)
	}
	return hasMissing, nil
}

// impute fills the NaN cells of x (rows × nf) by the policy and returns how
// many it filled.
func impute(x []float32, nf int, names []string, opts CSVOptions) (int, error) {
	if opts.Missing != MissingMean && opts.Missing != MissingMedian && opts.Missing != MissingConstant {
		return 0, nil
	}
	filled := 0
	vals := []float32{}
	for j := range nf {
		vals = vals[:0]
		nMissing := 0
		for i := j; i < len(x); i += nf {
			if v := x[i]; v != v {
				nMissing++
			} else {
				vals = append(vals, v)
			}
		}
		if nMissing == 0 {
			continue
		}
		var fill float32
		switch opts.Missing {
		case MissingConstant:
			fill = opts.Fill
		case MissingMean, MissingMedian:
			if len(vals) == 0 {
				return 0, fmt.Errorf("column %q has no value to impute a %v from: %w", names[j], opts.Missing, ErrMissingValue)
			}
			if opts.Missing == MissingMean {
				var s float64
				for _, v := range vals {
					s += float64(v)
				}
				fill = float32(s / float64(len(vals)))
			} else {
				fill = median(vals)
			}
		}
		for i := j; i < len(x); i += nf {
			if x[i] != x[i] {
				x[i] = fill
			}
		}
		filled += nMissing
	}
	return filled, nil
}

// median sorts vals and returns its median (mean of the middle two).
func median(vals []float32) float32 {
	slices.Sort(vals)
	n := len(vals)
	if n%2 == 1 {
		return vals[n/2]
	}
	return float32((float64(vals[n/2-1]) + float64(vals[n/2])) / 2)
}

// orderClasses returns the class names in their final order and, for each
// index of labels, its class. Fixed lists keep their order; discovered
// labels are sorted numerically if all are numbers, else as strings.
func orderClasses(labels []string, fixed bool) ([]string, []int) {
	remap := make([]int, len(labels))
	if fixed {
		for i := range remap {
			remap[i] = i
		}
		return labels, remap
	}
	order := make([]int, len(labels))
	for i := range order {
		order[i] = i
	}
	num := make([]float64, len(labels))
	numeric := true
	for i, l := range labels {
		v, err := strconv.ParseFloat(l, 64)
		if err != nil || math.IsNaN(v) {
			numeric = false
			break
		}
		num[i] = v
	}
	slices.SortFunc(order, func(a, b int) int {
		if numeric && num[a] != num[b] {
			if num[a] < num[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(labels[a], labels[b])
	})
	classes := make([]string, len(labels))
	for rank, i := range order {
		classes[rank] = labels[i]
		remap[i] = rank
	}
	return classes, remap
}

// csvErr converts an encoding/csv error into a LineError.
func csvErr(err error, lr *limitedReader) error {
	if lr.exceeded {
		return fmt.Errorf("input over the %d-byte limit: %w", lr.limit(), ErrLimit)
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{Input: "csv", Line: pe.Line, Err: fmt.Errorf("%v: %w", pe.Err, ErrFormat)}
	}
	return err
}

// limitedReader fails with ErrLimit once more than left bytes are read.
type limitedReader struct {
	r        io.Reader
	left     int64
	read     int64
	exceeded bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// Allow one probe byte so that input of exactly the limit is accepted.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.exceeded = true
			return 0, ErrLimit
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	l.read += int64(n)
	return n, err
}

func (l *limitedReader) limit() int64 { return l.read + l.left }

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// clip shortens a cell quoted in an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
