package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
	}{
		{"", slog.LevelInfo}, {"info", slog.LevelInfo}, {"INFO", slog.LevelInfo},
		{"debug", slog.LevelDebug}, {"warn", slog.LevelWarn}, {"warning", slog.LevelWarn},
		{"Warning", slog.LevelWarn}, {"error", slog.LevelError}, {"warn+1", slog.LevelWarn + 1},
	}
	for _, tt := range tests {
		got, err := ParseLevel(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"loud", "trace", "warnings"} {
		if _, err := ParseLevel(bad); !errors.Is(err, ErrLevel) {
			t.Errorf("ParseLevel(%q): %v, want ErrLevel", bad, err)
		}
	}
}

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "kept" || rec["level"] != "WARN" {
		t.Fatalf("json log %q (%v)", buf.String(), err)
	}
	buf.Reset()
	if log, err = New(&buf, "", ""); err != nil {
		t.Fatal(err)
	}
	log.Info("hello")
	if !strings.Contains(buf.String(), "level=INFO msg=hello") {
		t.Fatalf("text log %q", buf.String())
	}
	if _, err := New(&buf, "xml", ""); !errors.Is(err, ErrFormat) {
		t.Fatalf("format xml: %v, want ErrFormat", err)
	}
	if _, err := New(&buf, "json", "loud"); !errors.Is(err, ErrLevel) {
		t.Fatalf("level loud: %v, want ErrLevel", err)
	}
}
