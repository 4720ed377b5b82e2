package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fedge/fedge/coordinator"
)

// metricKey reports whether a JSON key names an evaluation or training
// figure.
func metricKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "accuracy") || strings.Contains(k, "correct") || strings.Contains(k, "loss")
}

// walk visits every object key of v with its path, and calls leaf for
// every string value.
func walk(v any, path []string, key func(path []string, k string), leaf func(s string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			key(path, k)
			walk(c, append(path, k), key, leaf)
		}
	case []any:
		for _, c := range x {
			walk(c, append(path, "[]"), key, leaf)
		}
	case string:
		leaf(x)
	}
}

// auditResult is what the audit of one node's state found.
type auditResult struct {
	bytes      int
	sum        [32]byte       // SHA-256 of the JSON
	paths      map[string]int // metric key paths (record IDs replaced by *) → occurrences
	records    map[string]int // collection → records carrying a metric
	minAgents  map[string]int // collection → fewest agents named by a record carrying a metric
	violations []string       // records that carry a metric and name 1 or 2 agents, or agent records with metrics
}

// auditState walks a node's whole replicated state as JSON. It lists where
// metrics live and checks that none is tied to one agent: no agent record
// carries a metric, and every record that carries one names either no
// agent or at least 3 (the secure sum's minimum).
func auditState(st *coordinator.State, agentIDs []string) (*auditResult, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, err
	}
	res := &auditResult{bytes: len(b), sum: sha256.Sum256(b), paths: map[string]int{}, records: map[string]int{}, minAgents: map[string]int{}}
	isAgent := map[string]bool{}
	for _, id := range agentIDs {
		isAgent[id] = true
	}
	for coll, v := range tree {
		recs, ok := v.(map[string]any)
		if !ok {
			continue
		}
		for id, rec := range recs {
			hasMetric := false
			named := map[string]bool{}
			if isAgent[id] {
				named[id] = true
			}
			walk(rec, nil, func(path []string, k string) {
				if isAgent[k] {
					named[k] = true
				}
				if metricKey(k) {
					hasMetric = true
					res.paths[strings.Join(append([]string{coll, "*"}, append(path, k)...), ".")]++
				}
			}, func(s string) {
				if isAgent[s] {
					named[s] = true
				}
			})
			if !hasMetric {
				continue
			}
			res.records[coll]++
			if m, ok := res.minAgents[coll]; !ok || len(named) < m {
				res.minAgents[coll] = len(named)
			}
			if coll == "agents" || len(named) == 1 || len(named) == 2 {
				res.violations = append(res.violations, fmt.Sprintf("%s/%s names %d agent(s) next to a metric", coll, id, len(named)))
			}
		}
	}
	return res, nil
}

func (r *auditResult) print(out io.Writer) {
	fmt.Fprintf(out, "  state: %d bytes of JSON, SHA-256 %x…; metric fields found at:\n", r.bytes, r.sum[:8])
	var paths []string
	for p := range r.paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(out, "    %-62s ×%d\n", p, r.paths[p])
	}
	var colls []string
	for c := range r.records {
		colls = append(colls, c)
	}
	sort.Strings(colls)
	for _, c := range colls {
		fmt.Fprintf(out, "  %s: %d record(s) carry metrics; the fewest agents one of them names is %d\n", c, r.records[c], r.minAgents[c])
	}
	if len(r.violations) == 0 {
		fmt.Fprintln(out, "  no agent record carries a metric, and no record ties a metric to one or two agents")
	}
	for _, v := range r.violations {
		fmt.Fprintln(out, "  VIOLATION:", v)
	}
}

// auditLogs checks the coordinators' log lines: every line that mentions
// an accuracy, a correct count or a loss must name no agent.
func auditLogs(lines, agentIDs []string, out io.Writer) []string {
	var mention, bad []string
	for _, l := range lines {
		if !metricKey(l) {
			continue
		}
		mention = append(mention, l)
		for _, id := range agentIDs {
			if strings.Contains(l, id) {
				bad = append(bad, l)
				break
			}
		}
	}
	fmt.Fprintf(out, "  coordinator logs: %d lines, %d mention accuracy/correct/loss, %d of those name an agent\n", len(lines), len(mention), len(bad))
	if len(mention) > 0 {
		fmt.Fprintf(out, "    e.g. %s\n", mention[len(mention)-1])
	}
	return bad
}

// printJSON writes v indented, prefixing every line.
func printJSON(out io.Writer, prefix string, v any) {
	b, err := json.MarshalIndent(v, prefix, "  ")
	if err != nil {
		fmt.Fprintf(out, "%s(cannot encode: %v)\n", prefix, err)
		return
	}
	fmt.Fprintf(out, "%s%s\n", prefix, b)
}
