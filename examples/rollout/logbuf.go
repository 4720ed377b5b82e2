package main

import (
	"bytes"
	"io"
	"sync"
)

// logBuffer collects the coordinators' log lines so they can be audited,
// and optionally copies them to another writer.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	copy io.Writer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.copy != nil {
		_, _ = b.copy.Write(p)
	}
	return b.buf.Write(p)
}

// Lines returns the lines logged so far.
func (b *logBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		if len(l) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}
