package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Errors of New and ParseLevel.
var (
	ErrLevel  = errors.New("logging: unknown log level")
	ErrFormat = errors.New("logging: unknown log format")
)

// ParseLevel parses a log level as slog.Level.UnmarshalText does ("debug",
// "INFO", "warn+2", …), with two additions: "" means info, and "warning"
// is warn.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "":
		return slog.LevelInfo, nil
	case "warning":
		return slog.LevelWarn, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%w %q (debug, info, warn or error)", ErrLevel, s)
	}
	return l, nil
}

// New returns a logger writing to w in format ("text", the default when
// "", or "json") at level (ParseLevel).
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w %q (text or json)", ErrFormat, format)
}
