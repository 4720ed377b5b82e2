package agent

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// Model lines. The cluster keeps one line of versions per model name (a
// job's model); the agent serves the target version of every line it
// accepts (Config.Jobs.Models). Its default line — the first line it
// served, normally the cluster's default — lives in Agent.served and the
// store's models bucket, and answers /v1/predict and /v1/model as before
// lines existed; every other line lives in Agent.lines and the store's
// lines bucket, and answers on /v1/models/{name}/....

// servedLines holds the served model of each line besides the default.
type servedLines struct {
	mu sync.RWMutex
	m  map[string]*atomic.Pointer[servedModel]
}

// get returns line's served model, nil if none.
func (l *servedLines) get(line string) *servedModel {
	l.mu.RLock()
	p := l.m[line]
	l.mu.RUnlock()
	if p == nil {
		return nil
	}
	return p.Load()
}

// swap installs sm as line's served model and returns the old one.
func (l *servedLines) swap(line string, sm *servedModel) *servedModel {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*atomic.Pointer[servedModel]{}
	}
	p := l.m[line]
	if p == nil {
		p = new(atomic.Pointer[servedModel])
		l.m[line] = p
	}
	return p.Swap(sm)
}

// names lists the lines, sorted.
func (l *servedLines) names() []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]string, 0, len(l.m))
	for name := range l.m {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// modelName is the line a served model belongs to: its spec's name.
func (sm *servedModel) modelName() string { return sm.model.Spec.Name }

// defaultLine returns the name of the default line and whether the agent
// serves one yet.
func (a *Agent) defaultLine() (string, bool) {
	if sm := a.served.Load(); sm != nil {
		return sm.modelName(), true
	}
	return "", false
}

// isDefaultLine reports whether an announce for line goes to the default
// line: an unnamed one (an older coordinator's), the default line's own,
// or any line while the agent serves none yet.
func (a *Agent) isDefaultLine(line string) bool {
	d, ok := a.defaultLine()
	return line == "" || !ok || d == line
}

// lineServed returns the model served on line, nil if none.
func (a *Agent) lineServed(line string) *servedModel {
	if a.isDefaultLine(line) {
		return a.served.Load()
	}
	return a.lines.get(line)
}

// loadLines reads the stored lines into the served set.
func (a *Agent) loadLines() error {
	names, err := a.st.lineNames()
	if err != nil {
		return err
	}
	for _, line := range names {
		rec, err := a.st.lineModel(line, keyCurrent)
		if err != nil {
			return err
		}
		if rec == nil {
			continue
		}
		sm, err := newServedModel(a.st.files, rec)
		if err != nil {
			return fmt.Errorf("%w: stored model %d of line %q: %v", ErrCorruptStore, rec.version, line, err)
		}
		a.lines.swap(line, sm)
	}
	return nil
}

// quantizeLines quantizes the stored lines' models that ask for it, once
// the local data is loaded.
func (a *Agent) quantizeLines() {
	for _, line := range a.lines.names() {
		if sm := a.lines.get(line); sm != nil {
			a.lines.swap(line, a.serveQuantized(sm))
		}
	}
}

// storedLineModel looks for version among line's served models.
func (a *Agent) storedLineModel(line string, version uint64, want protocol.Hash) (modelData, *tensor.Model, error) {
	if a.isDefaultLine(line) {
		return modelData{}, nil, nil // storedModel looked there
	}
	for _, which := range [][]byte{keyCurrent, keyPrevious} {
		rec, err := a.st.lineModel(line, which)
		if err != nil || rec == nil || rec.version != version {
			if err != nil {
				return modelData{}, nil, err
			}
			continue
		}
		m, err := a.st.files.load(rec.modelData)
		if err != nil {
			a.log.Warn("stored model does not decode; fetching it again", "line", line, "version", version, "err", err)
			continue
		}
		if want.IsZero() || m.Hash() == want {
			return rec.modelData, m, nil
		}
	}
	return modelData{}, nil, nil
}

// swapLine makes rec line's served model: the default line through
// swapModel, any other in the lines bucket and then in the inference
// server.
func (a *Agent) swapLine(line string, rec *modelRecord, m *tensor.Model) error {
	if a.isDefaultLine(line) {
		return a.swapModel(rec, m)
	}
	sm, err := servedFrom(rec, m)
	if err != nil {
		return fmt.Errorf("agent.swapLine: model %d of line %q: %w", rec.version, line, err)
	}
	err = a.st.promoteLine(line, rec)
	a.noteSave(rec.version, err)
	if err != nil {
		return fmt.Errorf("agent.swapLine: saving model %d of line %q: %w", rec.version, line, err)
	}
	old := a.lines.swap(line, a.serveQuantized(sm))
	a.m.modelSwaps.Add(1)
	var oldV uint64
	if old != nil {
		oldV = old.version
	}
	a.log.Info("serving model", "line", line, "version", rec.version, "hash", fmt.Sprintf("%x", rec.hash[:8]), "previous", oldV, "quantized", m.Spec.Quantize)
	return nil
}

// declineLine remembers that the agent does not serve line (why says
// so), so the heartbeats say so and the coordinator stops announcing it.
func (a *Agent) declineLine(line, why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.declined == nil {
		a.declined = map[string]bool{}
	}
	if !a.declined[line] {
		a.declined[line] = true
		a.log.Info("not serving model line", "line", line, "why", why)
	}
}

// servedLineReport lists, for the heartbeat, every line the agent serves
// (default line first) and every line it declined.
func (a *Agent) servedLineReport() []protocol.ServedLine {
	var out []protocol.ServedLine
	if sm := a.served.Load(); sm != nil {
		out = append(out, protocol.ServedLine{Name: sm.modelName(), Version: sm.version})
	}
	for _, line := range a.lines.names() {
		if sm := a.lines.get(line); sm != nil {
			out = append(out, protocol.ServedLine{Name: line, Version: sm.version})
		}
	}
	a.mu.Lock()
	declined := make([]string, 0, len(a.declined))
	for line := range a.declined {
		declined = append(declined, line)
	}
	a.mu.Unlock()
	sort.Strings(declined)
	for _, line := range declined {
		out = append(out, protocol.ServedLine{Name: line, Declined: true})
	}
	if len(out) > protocol.MaxServedLines {
		out = out[:protocol.MaxServedLines]
	}
	return out
}
