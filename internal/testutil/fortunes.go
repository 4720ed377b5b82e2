package testutil

import (
	"testing"

	"github.com/fedge/fedge/internal/fortunes"
)

// FortunesDir returns the folder of Debian's fortune cookie files, the
// text corpus of the text tests (fortunes.Dir). When they are missing
// the test fails under CI and skips locally, saying how to install them.
func FortunesDir(tb testing.TB) string {
	tb.Helper()
	dir, err := fortunes.Dir()
	if err != nil {
		Missing(tb, "%v", err)
	}
	return dir
}
