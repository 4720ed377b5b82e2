package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/fedge/fedge/tensor"
)

// rowsError is a /v1/predict "rows" body the model's input columns
// cannot encode; its message names the row and column.
type rowsError struct{ msg string }

func (e *rowsError) Error() string { return e.msg }

// decodeInputs decodes a /v1/predict body for a model of spec: a model
// with input columns (tensor.Spec.Columns) also takes raw rows,
// {"rows": [{"age": 31, "color": "red"}, ...]}, which it cleans and
// encodes as its training data was; every model takes {"inputs": [[...]]}
// of encoded features, with the request's explanation options (nil when
// it has none, and for rows).
func decodeInputs(dst []float32, body []byte, spec tensor.Spec) ([]float32, int, *ExplainOptions, error) {
	if len(spec.Columns) > 0 {
		var probe map[string]json.RawMessage
		if json.Unmarshal(body, &probe) == nil {
			if rows, ok := probe["rows"]; ok {
				if len(probe) != 1 {
					return dst[:0], 0, nil, &rowsError{`send either "rows" or "inputs", alone`}
				}
				x, n, err := decodeRows(dst, rows, spec.Columns)
				return x, n, nil, err
			}
		}
	}
	return decodePredictRequest(dst, body, spec.Features())
}

// decodeRows encodes raw rows by the model's columns: a number for a
// numeric column (null or absent is missing: filled, or refused under the
// reject and drop policies), clipped; a string (or a number) naming a
// category for a categorical column, one-hot, an unknown one going to the
// other slot or to zeros.
func decodeRows(dst []float32, body []byte, cols []tensor.InputColumn) ([]float32, int, error) {
	var rows []map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&rows); err != nil {
		return dst[:0], 0, &rowsError{`"rows" must be an array of objects: ` + err.Error()}
	}
	width := tensor.ColumnsWidth(cols)
	out := dst[:0]
	for i, row := range rows {
		for name := range row {
			if !hasColumn(cols, name) {
				return dst[:0], 0, &rowsError{fmt.Sprintf("row %d: the model has no column %q", i, name)}
			}
		}
		start := len(out)
		out = append(out, make([]float32, width)...)
		x := out[start:]
		off := 0
		for _, c := range cols {
			raw, ok := row[c.Name]
			missing := !ok || string(raw) == "null"
			if missing && !(c.Fills() && len(c.Categories) == 0) {
				return dst[:0], 0, &rowsError{fmt.Sprintf("row %d: column %q is missing and the model's policy for it is %s", i, c.Name, orReject(c.Missing))}
			}
			if len(c.Categories) > 0 {
				k, err := categorySlot(raw, &c)
				if err != nil {
					return dst[:0], 0, &rowsError{fmt.Sprintf("row %d: column %q: %v", i, c.Name, err)}
				}
				if k >= 0 {
					x[off+k] = 1
				}
				off += c.Width()
				continue
			}
			v := c.Fill
			if !missing {
				var f float64
				if err := json.Unmarshal(raw, &f); err != nil || math.IsInf(f, 0) || math.Abs(f) > math.MaxFloat32 {
					return dst[:0], 0, &rowsError{fmt.Sprintf("row %d: column %q takes a finite number, got %s", i, c.Name, clipJSON(raw))}
				}
				v = float32(f)
			}
			x[off] = c.Clip(v)
			off++
		}
	}
	return out, len(rows), nil
}

func hasColumn(cols []tensor.InputColumn, name string) bool {
	for _, c := range cols {
		if c.Name == name {
			return true
		}
	}
	return false
}

// categorySlot returns the one-hot slot of a JSON string or number.
func categorySlot(raw json.RawMessage, c *tensor.InputColumn) (int, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return c.Category(s), nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, fmt.Errorf("takes a category name, got %s", clipJSON(raw))
	}
	for k, name := range c.Categories {
		if g, err := strconv.ParseFloat(name, 32); err == nil && float32(g) == float32(f) {
			return k, nil
		}
	}
	return c.Category("\x00"), nil // in no category
}

func orReject(p string) string {
	if p == "" {
		return tensor.ColumnReject
	}
	return p
}

func clipJSON(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
