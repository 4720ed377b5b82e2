// Package logging builds the *slog.Logger that fedge's daemons (`fedge
// coordinator`, `fedge agent`) log with, from the log_format and log_level
// of their configuration, so that both read those settings the same way.
package logging
