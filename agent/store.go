package agent

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Store errors.
var (
	// ErrCorruptStore reports a data dir whose agent.db cannot be read: not
	// a database, failed consistency check, or a record that does not
	// decode. The agent refuses to start rather than overwrite it.
	ErrCorruptStore = errors.New("agent: corrupt state store")
	// ErrForeignDataDir reports a data dir that belongs to something else:
	// files that are not an agent's, a database without the agent header,
	// or the state of an agent enrolled in another cluster.
	ErrForeignDataDir = errors.New("agent: data dir belongs to another program or cluster")
	// ErrStoreLocked reports a data dir already opened by a running agent.
	ErrStoreLocked = errors.New("agent: data dir in use by another process")
)

const (
	storeFile     = "agent.db"
	storeMagic    = "FEDGEAGT"
	storeFormat   = 1
	headerSize    = 8 + 2 + 32
	keepBases     = 2
	modelRecHead  = 8 + 32 + 8
	progressSize  = 8 + 1 + 1 + 8
	countersSize  = 4 * 8
	storeLockWait = 2 * time.Second
)

var (
	bucketMeta     = []byte("meta")
	bucketIdentity = []byte("identity")
	bucketModels   = []byte("models")
	bucketBases    = []byte("bases")
	bucketRounds   = []byte("rounds")

	keyHeader   = []byte("header")
	keyKey      = []byte("key")
	keyID       = []byte("id")
	keyCert     = []byte("cert")
	keyCA       = []byte("ca")
	keyCurrent  = []byte("current")
	keyPrevious = []byte("previous")
	keyProgress = []byte("progress")
	keyCounters = []byte("counters")

	allBuckets = [][]byte{bucketMeta, bucketIdentity, bucketModels, bucketBases, bucketRounds}
)

// store is the agent's durable state in DataDir/agent.db (bbolt). Every
// change is one bbolt transaction, fsynced before it returns, so a process
// killed at any instant leaves either the old or the new state.
//
// Layout: meta/header (magic, format, cluster CA pin); identity/{key, id,
// cert, ca}; models/{current, previous} (served model records);
// bases/<version> (training start models, the last keepBases);
// rounds/{progress, counters}.
type store struct {
	db    *bolt.DB
	files *modelFiles // DataDir/models: the model files records name
}

// header is the first record of every agent store.
type header struct {
	format uint16
	pin    [32]byte // cluster CA pin; zero until enrolled
}

func (h header) encode() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, storeMagic...)
	b = binary.BigEndian.AppendUint16(b, h.format)
	return append(b, h.pin[:]...)
}

func decodeHeader(b []byte) (header, error) {
	var h header
	if len(b) != headerSize || string(b[:8]) != storeMagic {
		return h, fmt.Errorf("%w: header record is not an agent header", ErrForeignDataDir)
	}
	h.format = binary.BigEndian.Uint16(b[8:])
	copy(h.pin[:], b[10:])
	return h, nil
}

// modelRecord is a served model: its version, tensor hash, when it was
// rolled out here, and its model file (a file in DataDir/models, or the
// bytes inline in records written before model files).
type modelRecord struct {
	version   uint64
	hash      [32]byte
	rolledOut time.Time
	modelData
}

func (r *modelRecord) encode() []byte {
	body := r.modelData.encode()
	b := make([]byte, 0, modelRecHead+len(body))
	b = binary.BigEndian.AppendUint64(b, r.version)
	b = append(b, r.hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.rolledOut.UnixNano()))
	return append(b, body...)
}

// decodeModelRecord decodes a record; the blob is copied.
func decodeModelRecord(b []byte) (*modelRecord, error) {
	if len(b) < modelRecHead {
		return nil, fmt.Errorf("%w: model record of %d bytes", ErrCorruptStore, len(b))
	}
	r := &modelRecord{version: binary.BigEndian.Uint64(b)}
	copy(r.hash[:], b[8:40])
	r.rolledOut = time.Unix(0, int64(binary.BigEndian.Uint64(b[40:48])))
	r.modelData = decodeModelData(b[modelRecHead:])
	if r.version == 0 {
		return nil, fmt.Errorf("%w: model record with version 0", ErrCorruptStore)
	}
	return r, nil
}

// progress is the round the agent is taking part in, if any.
type progress struct {
	roundID uint64
	kind    uint8 // protocol.RoundKind
	stage   uint8 // protocol.Stage reached (0 = joined)
	updated time.Time
}

func (p progress) encode() []byte {
	b := make([]byte, 0, progressSize)
	b = binary.BigEndian.AppendUint64(b, p.roundID)
	b = append(b, p.kind, p.stage)
	return binary.BigEndian.AppendUint64(b, uint64(p.updated.UnixNano()))
}

func decodeProgress(b []byte) (progress, error) {
	if len(b) != progressSize {
		return progress{}, fmt.Errorf("%w: progress record of %d bytes", ErrCorruptStore, len(b))
	}
	return progress{
		roundID: binary.BigEndian.Uint64(b),
		kind:    b[8], stage: b[9],
		updated: time.Unix(0, int64(binary.BigEndian.Uint64(b[10:]))),
	}, nil
}

// counters are the agent's lifetime round totals, kept across restarts.
type counters struct {
	joined, completed, failed, bytesSent uint64
}

func (c counters) encode() []byte {
	b := make([]byte, 0, countersSize)
	for _, v := range []uint64{c.joined, c.completed, c.failed, c.bytesSent} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func decodeCounters(b []byte) (counters, error) {
	if len(b) != countersSize {
		return counters{}, fmt.Errorf("%w: counters record of %d bytes", ErrCorruptStore, len(b))
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[8*i:]) }
	return counters{u(0), u(1), u(2), u(3)}, nil
}

// identityRecord is the agent's identity as stored; cert and ca are empty
// until enrollment succeeds.
type identityRecord struct {
	key      ed25519.PrivateKey
	id       string
	cert, ca []byte
}

// openStore opens (creating if needed) the store in dir. A dir that is
// neither empty nor an agent's, a file that is not an agent database,
// and a database that fails bbolt's consistency check are refused.
// lockWait bounds the wait for another process's lock on the file.
func openStore(dir string, lockWait time.Duration) (*store, error) {
	return openStoreMax(dir, lockWait, 0)
}

// openStoreMax is openStore with the database file capped at maxSize
// bytes (0: no cap); a write that needs more fails, as on a full disk.
func openStoreMax(dir string, lockWait time.Duration, maxSize int) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent.openStore: %w", err)
	}
	path := filepath.Join(dir, storeFile)
	_, statErr := os.Stat(path)
	if errors.Is(statErr, os.ErrNotExist) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("agent.openStore: %w", err)
		}
		if len(ents) > 0 {
			names := make([]string, 0, 3)
			for _, e := range ents[:min(3, len(ents))] {
				names = append(names, e.Name())
			}
			return nil, fmt.Errorf("agent.openStore: %w: %s holds %s but no %s; give the agent an empty directory of its own",
				ErrForeignDataDir, dir, strings.Join(names, ", "), storeFile)
		}
	}
	db, err := openBolt(path, lockWait, maxSize)
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("agent.openStore: %w: %s is locked (is another agent running on it?)", ErrStoreLocked, path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch),
		errors.Is(err, ErrCorruptStore):
		return nil, fmt.Errorf("agent.openStore: %w: %s: %v", ErrCorruptStore, path, err)
	case err != nil:
		return nil, fmt.Errorf("agent.openStore: %s: %w", path, err)
	}
	s := &store{db: db}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("agent.openStore: %s: %w", path, err)
	}
	if s.files, err = openModelFiles(dir); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// openBolt opens the bbolt file, turning a panic on a damaged freelist or
// meta page into ErrCorruptStore. (The descriptor of such a file may stay
// open: the agent refuses to start then.)
func openBolt(path string, lockWait time.Duration, maxSize int) (db *bolt.DB, err error) {
	defer recoverCorrupt(&err)
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait, MaxSize: maxSize})
}

// init checks the database and writes the header of a new one.
func (s *store) init() error {
	err := s.view(func(tx *bolt.Tx) error {
		// Drain the channel: Check's goroutine holds the transaction
		// until it has delivered every error.
		var first error
		for cerr := range tx.Check() {
			if first == nil {
				first = fmt.Errorf("%w: consistency check: %v", ErrCorruptStore, cerr)
			}
		}
		return first
	})
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A new database has no bucket at all; anything else was
			// written by another program.
			var foreign []string
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				foreign = append(foreign, string(name))
				return nil
			})
			if len(foreign) > 0 {
				return fmt.Errorf("%w: database has buckets %q but no agent header", ErrForeignDataDir, foreign)
			}
			for _, name := range allBuckets {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keyHeader, header{format: storeFormat}.encode())
		}
		h, err := decodeHeader(meta.Get(keyHeader))
		if err != nil {
			return err
		}
		if h.format != storeFormat {
			return fmt.Errorf("%w: store format %d, this build reads %d", ErrCorruptStore, h.format, storeFormat)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %s missing", ErrCorruptStore, name)
			}
		}
		return nil
	})
}

func (s *store) close() error { return s.db.Close() }

// view and update run a transaction, turning a panic of bbolt on a damaged
// page into ErrCorruptStore.
func (s *store) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	return s.db.View(fn)
}

func (s *store) update(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err)
	return s.db.Update(fn)
}

func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v", ErrCorruptStore, r)
	}
}

// header returns the store's header.
func (s *store) header() (header, error) {
	var h header
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		h, err = decodeHeader(tx.Bucket(bucketMeta).Get(keyHeader))
		return err
	})
	return h, err
}

// identity returns the stored identity; ok is false before the key exists.
func (s *store) identity() (rec identityRecord, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdentity)
		key := b.Get(keyKey)
		if key == nil {
			return nil
		}
		if len(key) != ed25519.PrivateKeySize {
			return fmt.Errorf("%w: identity key of %d bytes", ErrCorruptStore, len(key))
		}
		rec = identityRecord{
			key: ed25519.PrivateKey(bytes.Clone(key)), id: string(b.Get(keyID)),
			cert: bytes.Clone(b.Get(keyCert)), ca: bytes.Clone(b.Get(keyCA)),
		}
		if rec.id == "" {
			return fmt.Errorf("%w: identity key without an agent ID", ErrCorruptStore)
		}
		ok = true
		return nil
	})
	return rec, ok, err
}

// createIdentity stores a new key and agent ID; it fails if one exists.
func (s *store) createIdentity(key ed25519.PrivateKey, id string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdentity)
		if b.Get(keyKey) != nil {
			return errors.New("agent.store: identity already exists")
		}
		if err := b.Put(keyKey, key); err != nil {
			return err
		}
		return b.Put(keyID, []byte(id))
	})
}

// dropUncertifiedIdentity deletes a key and ID that never got a
// certificate, so that the next enrollment starts with fresh ones (the
// cluster may have registered the old ID without the agent learning it).
func (s *store) dropUncertifiedIdentity() error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdentity)
		if b.Get(keyCert) != nil {
			return errors.New("agent.store: identity is certified")
		}
		if err := b.Delete(keyKey); err != nil {
			return err
		}
		return b.Delete(keyID)
	})
}

// saveEnrollment stores the first certificate, the CA and the cluster pin
// in one transaction.
func (s *store) saveEnrollment(pin [32]byte, cert, ca []byte) error {
	return s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		h, err := decodeHeader(meta.Get(keyHeader))
		if err != nil {
			return err
		}
		if h.pin != ([32]byte{}) && h.pin != pin {
			return fmt.Errorf("%w: enrolled with another cluster CA", ErrForeignDataDir)
		}
		h.pin = pin
		if err := meta.Put(keyHeader, h.encode()); err != nil {
			return err
		}
		b := tx.Bucket(bucketIdentity)
		if err := b.Put(keyCert, cert); err != nil {
			return err
		}
		return b.Put(keyCA, ca)
	})
}

// saveCert replaces the certificate after a renewal.
func (s *store) saveCert(cert []byte) error {
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIdentity).Put(keyCert, cert)
	})
}

// model returns the current or previous served model, nil if none.
func (s *store) model(which []byte) (*modelRecord, error) {
	var rec *modelRecord
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketModels).Get(which)
		if b == nil {
			return nil
		}
		var err error
		rec, err = decodeModelRecord(b)
		return err
	})
	return rec, err
}

// promote makes rec the current model and the old current the previous
// one, atomically. Promoting the previous model (a rollback) swaps them.
func (s *store) promote(rec *modelRecord) error {
	defer s.collectFiles()
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketModels)
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

// base returns a cached training base model, ok false if absent.
func (s *store) base(version uint64) (d modelData, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketBases).Get(versionKey(version)); b != nil {
			d, ok = decodeModelData(b), true
		}
		return nil
	})
	return d, ok, err
}

// latestBase returns the newest cached training base below version, or
// version 0.
func (s *store) latestBase(below uint64) (uint64, modelData, error) {
	var v uint64
	var d modelData
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBases).Cursor()
		for k, b := c.Last(); k != nil; k, b = c.Prev() {
			if len(k) == 8 && binary.BigEndian.Uint64(k) < below {
				v, d = binary.BigEndian.Uint64(k), decodeModelData(b)
				return nil
			}
		}
		return nil
	})
	return v, d, err
}

// collectFiles removes the model files no record names any more (the
// default line's, every other line's, the training bases).
func (s *store) collectFiles() {
	keep := map[string]bool{}
	err := s.view(func(tx *bolt.Tx) error {
		for _, k := range [][]byte{keyCurrent, keyPrevious} {
			if b := tx.Bucket(bucketModels).Get(k); len(b) >= modelRecHead {
				keep[decodeModelData(b[modelRecHead:]).file] = true
			}
		}
		if lines := tx.Bucket(bucketLines); lines != nil {
			err := lines.ForEach(func(name, v []byte) error {
				if v != nil {
					return nil
				}
				line := lines.Bucket(name)
				for _, k := range [][]byte{keyCurrent, keyPrevious} {
					if b := line.Get(k); len(b) >= modelRecHead {
						keep[decodeModelData(b[modelRecHead:]).file] = true
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bucketBases).ForEach(func(_, b []byte) error {
			keep[decodeModelData(b).file] = true
			return nil
		})
	})
	if err == nil {
		_ = s.files.keepOnly(keep) // a file left now goes at the next collection
	}
}

// putBase caches a training base model and keeps only the newest
// keepBases versions.
func (s *store) putBase(version uint64, d modelData) error {
	defer s.collectFiles()
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBases)
		if err := b.Put(versionKey(version), d.encode()); err != nil {
			return err
		}
		var versions [][]byte
		_ = b.ForEach(func(k, _ []byte) error {
			versions = append(versions, bytes.Clone(k))
			return nil
		})
		sort.Slice(versions, func(i, j int) bool { return bytes.Compare(versions[i], versions[j]) > 0 })
		for _, k := range versions[min(keepBases, len(versions)):] {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func versionKey(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// roundState returns the round in progress (ok false if none) and the
// lifetime counters.
func (s *store) roundState() (p progress, ok bool, c counters, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRounds)
		if v := b.Get(keyProgress); v != nil {
			var err error
			if p, err = decodeProgress(v); err != nil {
				return err
			}
			ok = true
		}
		if v := b.Get(keyCounters); v != nil {
			var err error
			c, err = decodeCounters(v)
			return err
		}
		return nil
	})
	return p, ok, c, err
}

// setProgress records the stage a round reached; joined counts it once.
func (s *store) setProgress(p progress, joined bool) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRounds)
		if joined {
			c, err := readCounters(b)
			if err != nil {
				return err
			}
			c.joined++
			if err := b.Put(keyCounters, c.encode()); err != nil {
				return err
			}
		}
		return b.Put(keyProgress, p.encode())
	})
}

// endRound clears the progress of roundID and adds to the counters.
func (s *store) endRound(roundID uint64, completed bool, bytesSent uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRounds)
		if v := b.Get(keyProgress); v != nil {
			if p, err := decodeProgress(v); err == nil && p.roundID == roundID {
				if err := b.Delete(keyProgress); err != nil {
					return err
				}
			}
		}
		c, err := readCounters(b)
		if err != nil {
			return err
		}
		if completed {
			c.completed++
		} else {
			c.failed++
		}
		c.bytesSent += bytesSent
		return b.Put(keyCounters, c.encode())
	})
}

// clearProgress forgets a round interrupted by a restart, counting it as
// failed.
func (s *store) clearProgress() error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRounds)
		if b.Get(keyProgress) == nil {
			return nil
		}
		c, err := readCounters(b)
		if err != nil {
			return err
		}
		c.failed++
		if err := b.Put(keyCounters, c.encode()); err != nil {
			return err
		}
		return b.Delete(keyProgress)
	})
}

func readCounters(b *bolt.Bucket) (counters, error) {
	v := b.Get(keyCounters)
	if v == nil {
		return counters{}, nil
	}
	return decodeCounters(v)
}
