package agent

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// bucketLines holds the served models of the agent's model lines other
// than its default one: lines/<name>/{current, previous}. The default
// line keeps models/{current, previous}, so a data dir from before lines
// reads unchanged. The bucket is created by the first write.
var bucketLines = []byte("lines")

// lineModel returns the current or previous model of line (not the
// default line), nil if none.
func (s *store) lineModel(line string, which []byte) (*modelRecord, error) {
	var rec *modelRecord
	err := s.view(func(tx *bolt.Tx) error {
		lines := tx.Bucket(bucketLines)
		if lines == nil {
			return nil
		}
		b := lines.Bucket([]byte(line))
		if b == nil {
			return nil
		}
		v := b.Get(which)
		if v == nil {
			return nil
		}
		var err error
		rec, err = decodeModelRecord(v)
		return err
	})
	return rec, err
}

// promoteLine makes rec line's current model and its old current the
// previous one, atomically, as promote does for the default line.
func (s *store) promoteLine(line string, rec *modelRecord) error {
	if line == "" {
		return fmt.Errorf("agent.store: a model line needs a name")
	}
	defer s.collectFiles() // the file of the line's old previous model
	return s.update(func(tx *bolt.Tx) error {
		lines, err := tx.CreateBucketIfNotExists(bucketLines)
		if err != nil {
			return err
		}
		b, err := lines.CreateBucketIfNotExists([]byte(line))
		if err != nil {
			return err
		}
		if cur := b.Get(keyCurrent); cur != nil {
			if len(cur) >= 8 && binary.BigEndian.Uint64(cur) == rec.version {
				return b.Put(keyCurrent, rec.encode())
			}
			if err := b.Put(keyPrevious, bytes.Clone(cur)); err != nil {
				return err
			}
		}
		return b.Put(keyCurrent, rec.encode())
	})
}

// lineNames lists the stored lines (not the default line), sorted.
func (s *store) lineNames() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		lines := tx.Bucket(bucketLines)
		if lines == nil {
			return nil
		}
		return lines.ForEach(func(k, v []byte) error {
			if v == nil { // a nested bucket
				out = append(out, string(k))
			}
			return nil
		})
	})
	sort.Strings(out)
	return out, err
}
