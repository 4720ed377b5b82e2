package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unsafe"
)

// errSlowPath makes decodePredict hand a body to encoding/json: the fast
// scanner only knows the plain shape {"inputs": [[n, ...], ...]}.
var errSlowPath = errors.New("agent: predict body needs the general JSON decoder")

// decodePredict decodes a /v1/predict body into dst, the rows packed
// row-major, and returns the number of rows and the width of each (every
// row must have width features, else it fails with a *rowWidthError).
//
// The common body — one "inputs" key holding arrays of plain numbers — is
// scanned directly, about five times faster than encoding/json; anything
// else (escapes, other keys, nulls, syntax errors, numbers out of float32
// range) goes to encoding/json with DisallowUnknownFields, so the accepted
// language and the error messages are exactly encoding/json's. Whatever
// the fast path accepts, encoding/json decodes to the same values
// (FuzzDecodePredict checks it).
func decodePredict(dst []float32, body []byte, features int) ([]float32, int, error) {
	out, n, err := scanPredict(dst, body, features)
	if !errors.Is(err, errSlowPath) {
		return out, n, err
	}
	var req PredictRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return dst[:0], 0, err
	}
	if dec.More() {
		return dst[:0], 0, errTrailing
	}
	out = dst[:0]
	for i, row := range req.Inputs {
		if len(row) != features {
			return dst[:0], 0, &rowWidthError{row: i, got: len(row)}
		}
		out = append(out, row...)
	}
	return out, len(req.Inputs), nil
}

var errTrailing = errors.New("trailing data after the request object")

// rowWidthError reports an input row whose length is not the model's
// feature count.
type rowWidthError struct{ row, got int }

func (e *rowWidthError) Error() string { return "wrong feature count" }

// scanPredict is the fast path of decodePredict; it returns errSlowPath
// for anything but the plain shape.
func scanPredict(dst []float32, b []byte, features int) ([]float32, int, error) {
	out := dst[:0]
	i := skipSpace(b, 0)
	const key = `"inputs"`
	if i >= len(b) || b[i] != '{' {
		return out, 0, errSlowPath
	}
	i = skipSpace(b, i+1)
	if !bytes.HasPrefix(b[i:], []byte(key)) {
		return out, 0, errSlowPath
	}
	i = skipSpace(b, i+len(key))
	if i >= len(b) || b[i] != ':' {
		return out, 0, errSlowPath
	}
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] != '[' {
		return out, 0, errSlowPath
	}
	i = skipSpace(b, i+1)
	rows := 0
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '[' {
				return out, 0, errSlowPath
			}
			i = skipSpace(b, i+1)
			width := 0
			if i < len(b) && b[i] == ']' {
				i++
			} else {
				for {
					j := i
					for j < len(b) && isNumberByte(b[j]) {
						j++
					}
					if j == i || !validNumber(b[i:j]) {
						return out, 0, errSlowPath
					}
					v, err := strconv.ParseFloat(unsafeString(b[i:j]), 32)
					if err != nil {
						return out, 0, errSlowPath
					}
					out = append(out, float32(v))
					width++
					i = skipSpace(b, j)
					if i < len(b) && b[i] == ',' {
						i = skipSpace(b, i+1)
						continue
					}
					if i < len(b) && b[i] == ']' {
						i++
						break
					}
					return out, 0, errSlowPath
				}
			}
			if width != features {
				// Let the general decoder validate the rest first, so a
				// syntax error wins over a width error, as before.
				return out, 0, errSlowPath
			}
			rows++
			i = skipSpace(b, i)
			if i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
				continue
			}
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			return out, 0, errSlowPath
		}
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '}' {
		return out, 0, errSlowPath
	}
	if skipSpace(b, i+1) != len(b) {
		return out, 0, errSlowPath
	}
	return out, rows, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// validNumber reports whether s is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// (strconv accepts more, such as "+1", ".5", "1." and "0x1p3").
func validNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	return i == len(s)
}

// unsafeString views b as a string for strconv, which does not keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
