package agent

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
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
	out, n, _, err := decodePredictRequest(dst, body, features)
	return out, n, err
}

// decodePredictRequest is decodePredict that also returns the request's
// explanation options (nil when it has none).
func decodePredictRequest(dst []float32, body []byte, features int) ([]float32, int, *ExplainOptions, error) {
	out, n, err := scanPredict(dst, body, features)
	if !errors.Is(err, errSlowPath) {
		return out, n, nil, err
	}
	var req PredictRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return dst[:0], 0, nil, err
	}
	if dec.More() {
		return dst[:0], 0, nil, errTrailing
	}
	out = dst[:0]
	for i, row := range req.Inputs {
		if len(row) != features {
			return dst[:0], 0, nil, &rowWidthError{row: i, got: len(row)}
		}
		out = append(out, row...)
	}
	return out, len(req.Inputs), req.Explain, nil
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
					v, j, ok := scanNumber(b, i)
					if !ok {
						return out, 0, errSlowPath
					}
					out = append(out, v)
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

// pow10f64 are the powers of ten a float64 holds exactly.
var pow10f64 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// scanNumber reads the JSON number -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// at b[i:] and returns its float32 value (correctly rounded, as
// strconv.ParseFloat(s, 32)) and where it ends; ok is false if b[i:] does
// not start with one or its value overflows float32.
//
// Most numbers in a request (pixels such as 0.3254902) have a mantissa
// below 2^53 and at most 22 decimals: both are exact float64 values, so
// one float64 division or product, correctly rounded by IEEE 754, gives
// the float64 nearest the decimal (Clinger's fast path), and rounding
// that to float32 is correct but in one case checked below. Others go to
// strconv.
func scanNumber(b []byte, i int) (float32, int, bool) {
	start := i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	var mant uint64
	digits := 0 // significant digits read into mant
	exp := 0    // decimal exponent of mant
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for digits+8 <= 19 {
			v, ok := eightDigits(b, i)
			if !ok {
				break
			}
			mant = mant*1e8 + v
			digits += 8
			i += 8
		}
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if digits < 19 {
				mant = mant*10 + uint64(b[i]-'0')
				digits++
			} else {
				exp++
			}
		}
	default:
		return 0, i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		// Eight digits at a time while they fit: leading zeros count as
		// digits here, which only makes exact more cautious.
		for digits+8 <= 19 {
			v, ok := eightDigits(b, i)
			if !ok {
				break
			}
			mant = mant*1e8 + v
			if mant != 0 {
				digits += 8
			}
			exp -= 8
			i += 8
		}
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if mant == 0 && b[i] == '0' {
				exp-- // leading zeros of a fraction hold no digits
				continue
			}
			if digits < 19 {
				mant = mant*10 + uint64(b[i]-'0')
				digits++
				exp--
			}
		}
		if i == d {
			return 0, i, false
		}
	}
	exact := digits < 19
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := i < len(b) && b[i] == '-'
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		e := 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if e < 10000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == d {
			return 0, i, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if exact && mant < 1<<53 && exp >= -22 && exp <= 22 {
		q := float64(mant)
		if exp < 0 {
			q /= pow10f64[-exp]
		} else {
			q *= pow10f64[exp]
		}
		// q is the float64 nearest the decimal. Rounding it to float32
		// rounds the decimal correctly unless q lies exactly halfway
		// between two float32 values: a halfway point strictly between q
		// and the decimal would be a float64 nearer the decimal than q.
		if math.Float64bits(q)&(1<<29-1) != 1<<28 {
			v := float32(q)
			if neg {
				v = -v
			}
			return v, i, true
		}
	}
	f, err := strconv.ParseFloat(unsafeString(b[start:i]), 32)
	if err != nil {
		return 0, i, false
	}
	return float32(f), i, true
}

// eightDigits returns the value of the eight ASCII digits at b[i:], and
// false if there are not eight digits there (SWAR: all eight in a few
// word operations, as fast_float does).
func eightDigits(b []byte, i int) (uint64, bool) {
	if i < 0 || len(b)-i < 8 {
		return 0, false
	}
	v := binary.LittleEndian.Uint64(b[i:])
	if (v&0xF0F0F0F0F0F0F0F0)|(((v+0x0606060606060606)&0xF0F0F0F0F0F0F0F0)>>4) != 0x3333333333333333 {
		return 0, false
	}
	v -= 0x3030303030303030
	v = v*10 + v>>8 // pairs of digits
	v = ((v&0x000000FF000000FF)*(100+1000000<<32) + (v>>16&0x000000FF000000FF)*(1+10000<<32)) >> 32
	return v, true
}

// unsafeString views b as a string for strconv, which does not keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
