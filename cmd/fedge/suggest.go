package main

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/fedge/fedge/coordinator/api"
)

// closest returns the candidate nearest to s by edit distance, if it is
// near enough to be a plausible typo (at most a third of s's length, and
// at most 3 edits); "" otherwise.
func closest(s string, candidates []string) string {
	best, bestD := "", 4
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d < bestD && d <= max(1, len(s)/3) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours each cost 1
// ("jbos" is one edit from "jobs").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// jsonFields lists the JSON field names of a struct type and of the
// structs it holds, for suggestions on an unknown field.
func jsonFields(t reflect.Type) []string {
	var out []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				out = append(out, name)
			}
			walk(f.Type)
		}
	}
	walk(t)
	return out
}

// unknownFieldHint turns encoding/json's "unknown field" error into one
// that suggests the nearest known field of T.
func unknownFieldHint[T any](err error) error {
	const prefix = `json: unknown field "`
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return errors.New("not valid JSON: " + se.Error())
		}
		return err
	}
	field := strings.TrimSuffix(strings.TrimPrefix(msg, prefix), `"`)
	if s := closest(field, jsonFields(reflect.TypeFor[T]())); s != "" {
		return errors.New(`unknown field "` + field + `" (did you mean "` + s + `"?)`)
	}
	return errors.New(`unknown field "` + field + `"`)
}

// reflectJobSpec is the job file's type, for suggestions.
func reflectJobSpec() reflect.Type { return reflect.TypeFor[api.JobSpec]() }
