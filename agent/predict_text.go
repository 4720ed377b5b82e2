package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxPredictTexts bounds the documents of one /v1/predict request to a
// text model, so a body of many short texts cannot ask for
// MaxPredictTexts × the model's places of input memory beyond that.
const MaxPredictTexts = 1024

// TextPredictRequest is the body of POST /v1/predict for a text model
// (its spec has a text section): one document or a batch, raw, which the
// agent tokenizes as the model's spec says, with the same code that
// tokenized its training data. Exactly one field is set; "inputs" (token
// ids, padding -1) is PredictRequest's form, for clients that tokenize
// themselves.
type TextPredictRequest struct {
	Text   *string     `json:"text,omitempty"`
	Texts  []string    `json:"texts,omitempty"`
	Inputs [][]float32 `json:"inputs,omitempty"`
}

// errTextRequest is a text predict body that is valid JSON but not one of
// the accepted forms; its message is the answer.
type errTextRequest struct{ msg string }

func (e *errTextRequest) Error() string { return e.msg }

// decodeTextPredict decodes a /v1/predict body for the text model being
// served into dst, the token ids of each document row-major, and returns
// the number of rows.
func decodeTextPredict(dst []float32, body []byte, cur *servedModel) ([]float32, int, error) {
	var req TextPredictRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && (typeErr.Field == "text" || strings.HasPrefix(typeErr.Field, "texts")) {
			return dst[:0], 0, &errTextRequest{fmt.Sprintf("invalid %s: a %s where a JSON string belongs", typeErr.Field, typeErr.Value)}
		}
		return dst[:0], 0, err
	}
	if dec.More() {
		return dst[:0], 0, errTrailing
	}
	set := 0
	for _, b := range []bool{req.Text != nil, req.Texts != nil, req.Inputs != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return dst[:0], 0, &errTextRequest{`model reads text: send {"text": "..."} or {"texts": ["...", ...]} (or token ids as {"inputs": [[...], ...]}), exactly one of them`}
	}
	docs := req.Texts
	if req.Text != nil {
		docs = []string{*req.Text}
	}
	out := dst[:0]
	if req.Inputs != nil {
		f := cur.model.Features()
		for i, row := range req.Inputs {
			if len(row) != f {
				return dst[:0], 0, &rowWidthError{row: i, got: len(row)}
			}
			out = append(out, row...)
		}
		return out, len(req.Inputs), nil
	}
	if len(docs) > MaxPredictTexts {
		return dst[:0], 0, &errTextRequest{fmt.Sprintf("%d texts, more than %d; split the batch", len(docs), MaxPredictTexts)}
	}
	for _, d := range docs {
		out, _ = cur.tok.Encode(out, d)
	}
	return out, len(docs), nil
}

// isTextRequestError reports whether err is a text body's own mistake.
func isTextRequestError(err error) (string, bool) {
	var e *errTextRequest
	if errors.As(err, &e) {
		return e.msg, true
	}
	return "", false
}
