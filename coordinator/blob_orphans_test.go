package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"slices"
	"testing"
	"time"
)

// TestRemoveOrphans: the collector removes a complete blob no committed
// entry names (a leader stored and pushed it, then lost leadership before
// its entry committed), a stale partial copy and a stale spool file, once
// older than the grace period; it keeps named blobs, blobs in use (being
// received or held for an entry being proposed) and anything younger,
// and leaves files that are not the store's alone.
func TestRemoveOrphans(t *testing.T) {
	dir := t.TempDir()
	fb, err := OpenFileBlobs(dir)
	if err != nil {
		t.Fatal(err)
	}
	put := func(content string) string {
		h, err := putBlob(fb, []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	named, orphan, inUse, young := put("named"), put("orphan"), put("in use"), put("young")
	sum := sha256.Sum256([]byte("partial"))
	partial := hex.EncodeToString(sum[:]) + ".part"
	spool := spoolPrefix + "123.part"
	for _, name := range []string{partial, spool, "README"} {
		if err := os.WriteFile(fb.path(name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	old := now.Add(-2 * orphanGrace)
	for _, name := range []string{named, orphan, inUse, partial, spool, "README"} {
		if err := os.Chtimes(fb.path(name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := fb.removeOrphans(map[string]bool{named: true, inUse: true}, now.Add(-orphanGrace))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{orphan, partial, spool}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	for _, name := range []string{named, inUse, young, "README"} {
		if _, err := os.Stat(fb.path(name)); err != nil {
			t.Fatalf("%s was removed: %v", name, err)
		}
	}
	if fb.Has(orphan) {
		t.Fatal("the store still has the orphan")
	}
}

// TestSweepKeepsHeldBlobs: the node's sweep keeps a blob held for an
// entry being proposed and one being received, and removes it once
// neither holds it.
func TestSweepKeepsHeldBlobs(t *testing.T) {
	fb, err := OpenFileBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{fsm: NewFSMWithBlobs(discardLogger(), fb), log: discardLogger()}
	bs := newBlobSync(n)
	h, err := putBlob(fb, []byte("staged by a leader"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * orphanGrace)
	if err := os.Chtimes(fb.path(h), old, old); err != nil {
		t.Fatal(err)
	}
	bs.hold(h)
	if got := bs.sweepOrphans(time.Now(), orphanGrace); len(got) != 0 {
		t.Fatalf("removed %v while held", got)
	}
	bs.unhold(h)
	done, _ := bs.claim(h)
	if got := bs.sweepOrphans(time.Now(), orphanGrace); len(got) != 0 {
		t.Fatalf("removed %v while being received", got)
	}
	bs.release(h, done)
	if got := bs.sweepOrphans(time.Now(), orphanGrace); !slices.Equal(got, []string{h}) {
		t.Fatalf("removed %v once free, want the blob", got)
	}
}
