package data

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/fedge/fedge/tensor"
)

// Defaults of GraphOptions' limits.
const (
	DefaultGraphMaxNodes    = 1 << 22
	DefaultGraphMaxEdges    = 1 << 26
	DefaultGraphMaxFeatures = 1 << 16
	DefaultGraphMaxValues   = 1 << 28 // nodes × features: 1 GiB of float32
	DefaultGraphMaxLine     = 4 << 20
)

// GraphOptions configure ReadGraph. The zero value means the defaults.
type GraphOptions struct {
	// Classes fixes the class names (class i is Classes[i]); a label not in
	// the list is an error. If nil, the distinct labels, sorted numerically
	// if all are numbers, else lexicographically.
	Classes []string
	// SkipUnknownEdges drops edges that name a node absent from the
	// features file (and counts them) instead of failing.
	SkipUnknownEdges bool
	// Limits; if zero, the DefaultGraph* constants. MaxLine is in bytes.
	MaxNodes, MaxEdges, MaxFeatures, MaxValues, MaxLine int
}

// GraphTable is a graph read by ReadGraph, with the names of its nodes and
// classes.
type GraphTable struct {
	Graph        *tensor.Graph
	IDs          []int64  // file id of node i (the features file's row order)
	Classes      []string // class names; label i means Classes[i]
	Edges        int      // edge lines read (before merging duplicates)
	SkippedEdges int      // edges dropped under SkipUnknownEdges
}

// ReadGraph reads a node-classification graph from three text inputs, in
// which blank lines and everything after '#' are ignored and fields are
// separated by whitespace, or by commas (then no field may be empty):
//
//   - features: one row per node, "id f1 f2 ... fF"; the ids are any
//     distinct integers and the row order numbers the nodes 0..N-1; every
//     row has the same number F >= 1 of finite features.
//   - edges: "a b" per line, the ids of an undirected edge's ends.
//   - labels: "id label" per line, exactly one for every node; labels are
//     names mapped to classes as GraphOptions.Classes says.
//
// The adjacency is normalized by tensor.NormalizeAdjacency. Errors carry
// the input and line (see LineError).
func ReadGraph(edges, features, labels io.Reader, opts GraphOptions) (*GraphTable, error) {
	g, err := readGraph(edges, features, labels, opts)
	if err != nil {
		return nil, fmt.Errorf("data.ReadGraph: %w", err)
	}
	return g, nil
}

// ReadGraphFiles is ReadGraph on three files.
func ReadGraphFiles(edgesPath, featuresPath, labelsPath string, opts GraphOptions) (*GraphTable, error) {
	var files [3]*os.File
	for i, p := range []string{edgesPath, featuresPath, labelsPath} {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("data.ReadGraphFiles: %w", err)
		}
		defer f.Close()
		files[i] = f
	}
	return ReadGraph(files[0], files[1], files[2], opts)
}

func readGraph(edgesR, featuresR, labelsR io.Reader, opts GraphOptions) (*GraphTable, error) {
	maxNodes := orDefault(opts.MaxNodes, DefaultGraphMaxNodes)
	maxEdges := orDefault(opts.MaxEdges, DefaultGraphMaxEdges)
	maxFeat := orDefault(opts.MaxFeatures, DefaultGraphMaxFeatures)
	maxValues := orDefault(opts.MaxValues, DefaultGraphMaxValues)
	maxLine := orDefault(opts.MaxLine, DefaultGraphMaxLine)
	// The normalized adjacency holds N + 2E entries indexed by int32.
	if maxNodes+2*maxEdges > math.MaxInt32 || maxNodes+2*maxEdges < 0 {
		return nil, fmt.Errorf("MaxNodes %d + 2·MaxEdges %d exceed int32 indexing: %w", maxNodes, maxEdges, ErrLimit)
	}

	// Features: node ids, numbering, feature matrix.
	node := map[int64]int32{}
	var (
		ids []int64
		x   []float32
		nf  int
	)
	err := scanLines(featuresR, "features", maxLine, func(line int, f []string) error {
		if len(f) < 2 {
			return fmt.Errorf("want a node id and at least one feature, got %d fields: %w", len(f), ErrFormat)
		}
		if nf == 0 {
			nf = len(f) - 1
			if nf > maxFeat {
				return fmt.Errorf("%d features over the limit of %d: %w", nf, maxFeat, ErrLimit)
			}
		} else if len(f)-1 != nf {
			return fmt.Errorf("%d features, earlier rows have %d: %w", len(f)-1, nf, ErrFormat)
		}
		id, err := parseID(f[0])
		if err != nil {
			return err
		}
		if _, dup := node[id]; dup {
			return fmt.Errorf("node %d listed twice: %w", id, ErrFormat)
		}
		if len(ids) >= maxNodes || (len(ids)+1)*nf > maxValues {
			return fmt.Errorf("more than %d nodes or %d feature values: %w", maxNodes, maxValues, ErrLimit)
		}
		for _, s := range f[1:] {
			v, err := strconv.ParseFloat(s, 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("feature %q is not a finite float32: %w", clip(s), ErrFormat)
			}
			x = append(x, float32(v))
		}
		node[id] = int32(len(ids))
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	n := len(ids)
	if n == 0 {
		return nil, fmt.Errorf("features: no nodes: %w", ErrFormat)
	}

	// Edges.
	var edges [][2]int32
	read, skipped := 0, 0
	err = scanLines(edgesR, "edges", maxLine, func(line int, f []string) error {
		if len(f) != 2 {
			return fmt.Errorf("want two node ids, got %d fields: %w", len(f), ErrFormat)
		}
		if read++; read > maxEdges {
			return fmt.Errorf("more than %d edges: %w", maxEdges, ErrLimit)
		}
		var e [2]int32
		for k, s := range f {
			id, err := parseID(s)
			if err != nil {
				return err
			}
			i, ok := node[id]
			if !ok {
				if opts.SkipUnknownEdges {
					skipped++
					return nil
				}
				return fmt.Errorf("unknown node %d (not in the features): %w", id, ErrFormat)
			}
			e[k] = i
		}
		edges = append(edges, e)
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Labels.
	labelOf := make([]int, n) // index into names, -1 until seen
	for i := range labelOf {
		labelOf[i] = -1
	}
	classOf := map[string]int{}
	var names []string
	if opts.Classes != nil {
		for i, c := range opts.Classes {
			if _, dup := classOf[c]; dup {
				return nil, fmt.Errorf("GraphOptions.Classes lists %q twice", c)
			}
			classOf[c] = i
		}
		names = opts.Classes
	}
	err = scanLines(labelsR, "labels", maxLine, func(line int, f []string) error {
		if len(f) != 2 {
			return fmt.Errorf("want a node id and a label, got %d fields: %w", len(f), ErrFormat)
		}
		id, err := parseID(f[0])
		if err != nil {
			return err
		}
		i, ok := node[id]
		if !ok {
			return fmt.Errorf("unknown node %d (not in the features): %w", id, ErrFormat)
		}
		if labelOf[i] >= 0 {
			return fmt.Errorf("node %d labelled twice: %w", id, ErrFormat)
		}
		c, ok := classOf[f[1]]
		if !ok {
			if opts.Classes != nil {
				return fmt.Errorf("label %q not in GraphOptions.Classes: %w", clip(f[1]), ErrFormat)
			}
			c = len(names)
			classOf[f[1]] = c
			names = append(names, f[1])
		}
		labelOf[i] = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, l := range labelOf {
		if l < 0 {
			return nil, fmt.Errorf("labels: node %d has no label: %w", ids[i], ErrFormat)
		}
	}
	classes, remap := orderClasses(names, opts.Classes != nil)
	y := make([]int32, n)
	for i, l := range labelOf {
		y[i] = int32(remap[l])
	}

	adj, err := tensor.NormalizeAdjacency(n, edges)
	if err != nil {
		return nil, err
	}
	return &GraphTable{
		Graph:        &tensor.Graph{Adj: adj, X: x, Features: nf, Y: y, Classes: len(classes)},
		IDs:          ids,
		Classes:      classes,
		Edges:        read,
		SkippedEdges: skipped,
	}, nil
}

// scanLines calls fn with the fields of each non-blank line of r, after
// stripping '#' comments, and wraps fn's error in a LineError.
func scanLines(r io.Reader, input string, maxLine int, fn func(line int, fields []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(maxLine, 64<<10)), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields, err := splitFields(text)
		if err != nil {
			return &LineError{Input: input, Line: line, Err: err}
		}
		if len(fields) == 0 {
			continue
		}
		if err := fn(line, fields); err != nil {
			return &LineError{Input: input, Line: line, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &LineError{Input: input, Line: line + 1, Err: fmt.Errorf("line over %d bytes: %w", maxLine, ErrLimit)}
		}
		return fmt.Errorf("%s: %w", input, err)
	}
	return nil
}

// splitFields splits a line on commas (trimming spaces; empty fields are an
// error) if it has any, else on whitespace.
func splitFields(text string) ([]string, error) {
	if !strings.ContainsRune(text, ',') {
		return strings.Fields(text), nil
	}
	f := strings.Split(text, ",")
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
		if f[i] == "" {
			return nil, fmt.Errorf("empty field %d: %w", i+1, ErrFormat)
		}
	}
	return f, nil
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("node id %q is not an integer: %w", clip(s), ErrFormat)
	}
	return id, nil
}
