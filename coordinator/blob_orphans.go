package coordinator

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// orphanGrace is how old a file of the blob store that no committed entry
// names must be before the collector removes it: far longer than a blob
// takes to be stored, pushed to a majority and named by a committed
// entry, so only the leftovers of a leader that lost leadership before
// its entry committed (and of writes that never finished) go.
const orphanGrace = time.Hour

// orphanSweepEvery is how often a node looks for orphans.
const orphanSweepEvery = 10 * time.Minute

// hold marks hash as the blob of an entry being proposed (stored and
// pushed, not yet committed): the collector leaves it alone until unhold.
func (bs *blobSync) hold(hash string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.held == nil {
		bs.held = map[string]int{}
	}
	bs.held[hash]++
}

// unhold ends a hold.
func (bs *blobSync) unhold(hash string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.held[hash]--; bs.held[hash] <= 0 {
		delete(bs.held, hash)
	}
}

// heldBlob is the blob an entry header names ("" for none).
func heldBlob(hdr any) string {
	switch c := hdr.(type) {
	case modelCommitCmd:
		return c.Model.BlobHash
	case modelImportCmd:
		return c.Model.BlobHash
	}
	return ""
}

// sweepOrphans removes, from a store in a directory, what no committed
// entry names and nothing uses, older than grace at now, and returns the
// names removed.
func (bs *blobSync) sweepOrphans(now time.Time, grace time.Duration) []string {
	fb, ok := bs.n.fsm.blobs.(*FileBlobs)
	if !ok {
		return nil // an in-memory store goes with its process
	}
	named := bs.n.fsm.namedBlobs()
	bs.mu.Lock()
	for h := range bs.busy {
		named[h] = true
	}
	for h := range bs.held {
		named[h] = true
	}
	bs.mu.Unlock()
	removed, err := fb.removeOrphans(named, now.Add(-grace))
	if err != nil {
		bs.n.log.Warn("removing orphan blobs", "err", err)
	}
	for _, name := range removed {
		bs.n.log.Info("removed an orphan blob (no committed entry names it)", "file", name)
	}
	return removed
}

// namedBlobs returns the blobs the replicated state names.
func (f *FSM) namedBlobs() map[string]bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.blobRefs()
}

// removeOrphans removes the blob store's files last written before
// before that keep does not list: complete blobs, their partial copies
// (<hash>.part) and spool files. Other files are left alone.
func (s *FileBlobs) removeOrphans(keep map[string]bool, before time.Time) ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("coordinator.FileBlobs.removeOrphans: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var removed []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		hash := strings.TrimSuffix(name, ".part")
		switch {
		case strings.HasPrefix(name, spoolPrefix) && strings.HasSuffix(name, ".part"):
		case validBlobHash(hash):
			if keep[hash] {
				continue
			}
		default:
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(before) {
			continue
		}
		if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
