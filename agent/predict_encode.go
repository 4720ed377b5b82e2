package agent

import (
	"encoding/json"
	"math"
	"strconv"
)

// appendPredictResponse appends the JSON of the PredictResponse for n
// rows of c class probabilities (finite) from model version, labelled by
// names when it has c of them, followed by a newline: byte for byte what
// encoding/json writes for it (TestAppendPredictResponseMatchesJSON),
// without reflection or allocation.
func appendPredictResponse(dst []byte, version uint64, probs []float32, n, c int, names []string) []byte {
	dst = append(dst, `{"model_version":`...)
	dst = strconv.AppendUint(dst, version, 10)
	dst = append(dst, `,"predictions":[`...)
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		p := probs[i*c : (i+1)*c]
		k := argmax(p)
		dst = append(dst, `{"class":`...)
		dst = strconv.AppendInt(dst, int64(k), 10)
		if len(names) == c && names[k] != "" {
			dst = append(dst, `,"label":`...)
			dst = appendJSONString(dst, names[k])
		}
		dst = append(dst, `,"probabilities":[`...)
		for j, v := range p {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONFloat32(dst, v)
		}
		dst = append(dst, "]}"...)
	}
	return append(dst, "]}\n"...)
}

// appendJSONFloat32 appends the finite f as encoding/json writes a
// float32: the shortest decimal that reads back as f, in exponent form
// below 1e-6 and from 1e21 on, with a one-digit exponent unpadded.
func appendJSONFloat32(dst []byte, f float32) []byte {
	format := byte('f')
	if abs := float32(math.Abs(float64(f))); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, float64(f), format, -1, 32)
	if format == 'e' {
		// e-09 → e-9, as encoding/json does.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters included).
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
