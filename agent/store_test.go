package agent

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fedge/fedge/crypto/identity"
	"github.com/fedge/fedge/internal/testutil"
	"github.com/fedge/fedge/tensor"
)

const testLockWait = 200 * time.Millisecond

// testModel returns a logistic-regression model drawn from seed and its
// file bytes.
func testModel(t testing.TB, seed uint64) (*tensor.Model, []byte) {
	t.Helper()
	spec, err := tensor.NamedSpec(tensor.SpecLogReg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tensor.NewModel(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m, modelBlob(t, m)
}

func modelRec(t testing.TB, version uint64) *modelRecord {
	m, b := testModel(t, version)
	return &modelRecord{version: version, hash: m.Hash(), rolledOut: time.Unix(1700000000, int64(version)), modelData: modelData{blob: b}}
}

func openTestStore(t *testing.T, dir string) *store {
	t.Helper()
	s, err := openStore(dir, testLockWait)
	if err != nil {
		t.Fatalf("openStore: %v", err)
	}
	return s
}

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, ok, err := s.identity(); ok || err != nil {
		t.Fatalf("new store identity ok=%v err=%v", ok, err)
	}
	key, _ := identity.NewKey(rand.Reader)
	if err := s.createIdentity(key, "ag-test"); err != nil {
		t.Fatal(err)
	}
	if err := s.createIdentity(key, "ag-other"); err == nil {
		t.Fatal("second identity accepted")
	}
	pin := [32]byte{1, 2, 3}
	if err := s.saveEnrollment(pin, []byte("cert"), []byte("ca")); err != nil {
		t.Fatal(err)
	}
	if err := s.saveEnrollment([32]byte{9}, []byte("cert"), []byte("ca")); !errors.Is(err, ErrForeignDataDir) {
		t.Fatalf("enrollment with another pin: %v", err)
	}
	if err := s.saveCert([]byte("cert2")); err != nil {
		t.Fatal(err)
	}
	for v := uint64(1); v <= 3; v++ {
		if err := s.promote(modelRec(t, v)); err != nil {
			t.Fatal(err)
		}
	}
	// Promoting the previous model (a rollback) swaps the two.
	if err := s.promote(modelRec(t, 2)); err != nil {
		t.Fatal(err)
	}
	for v := uint64(10); v <= 13; v++ {
		if err := s.putBase(v, modelData{blob: []byte{byte(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.setProgress(progress{roundID: 7, kind: 1, stage: 3, updated: time.Unix(5, 0)}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.endRound(7, true, 1234); err != nil {
		t.Fatal(err)
	}
	if err := s.setProgress(progress{roundID: 8}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir)
	defer s.close()
	id, ok, err := s.identity()
	if err != nil || !ok || id.id != "ag-test" || !bytes.Equal(id.key, key) || string(id.cert) != "cert2" || string(id.ca) != "ca" {
		t.Fatalf("identity = %+v ok=%v err=%v", id, ok, err)
	}
	h, err := s.header()
	if err != nil || h.pin != pin || h.format != storeFormat {
		t.Fatalf("header = %+v, %v", h, err)
	}
	cur, _ := s.model(keyCurrent)
	prev, _ := s.model(keyPrevious)
	want2 := modelRec(t, 2)
	if cur == nil || cur.version != 2 || cur.hash != want2.hash || !bytes.Equal(cur.blob, want2.blob) || !cur.rolledOut.Equal(want2.rolledOut) {
		t.Fatalf("current = %+v", cur)
	}
	if prev == nil || prev.version != 3 {
		t.Fatalf("previous = %+v", prev)
	}
	for v := uint64(10); v <= 13; v++ {
		_, kept, err := s.base(v)
		if err != nil {
			t.Fatal(err)
		}
		if kept != (v >= 12) {
			t.Errorf("base %d kept=%v; only the newest %d stay", v, kept, keepBases)
		}
	}
	p, inRound, c, err := s.roundState()
	if err != nil || !inRound || p.roundID != 8 {
		t.Fatalf("progress = %+v %v %v", p, inRound, err)
	}
	if c != (counters{joined: 2, completed: 1, bytesSent: 1234}) {
		t.Fatalf("counters = %+v", c)
	}
	if err := s.clearProgress(); err != nil {
		t.Fatal(err)
	}
	if _, inRound, c, _ := s.roundState(); inRound || c.failed != 1 {
		t.Fatalf("after clear: inRound=%v counters=%+v", inRound, c)
	}
}

func TestStoreRefusesCorruptAndForeign(t *testing.T) {
	const pageSize = 4096
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  error
	}{
		{"not a database", func(t *testing.T, dir string) {
			junk := make([]byte, 64<<10)
			_, _ = rand.Read(junk)
			writeFile(t, filepath.Join(dir, storeFile), junk)
		}, ErrCorruptStore},
		{"both meta pages damaged", func(t *testing.T, dir string) {
			makeStore(t, dir)
			patchFile(t, filepath.Join(dir, storeFile), func(b []byte) {
				for _, off := range []int{16, pageSize + 16} {
					copy(b[off:off+32], bytes.Repeat([]byte{0xAB}, 32))
				}
			})
		}, ErrCorruptStore},
		{"tree pages damaged", func(t *testing.T, dir string) {
			makeStore(t, dir)
			patchFile(t, filepath.Join(dir, storeFile), func(b []byte) {
				for off := 2 * pageSize; off+16 <= len(b); off += pageSize {
					b[off+8], b[off+9] = 0xFF, 0xFF // page flags
				}
			})
		}, ErrCorruptStore},
		{"files of another program", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "raft.db"), []byte("x"))
		}, ErrForeignDataDir},
		{"bbolt database of another program", func(t *testing.T, dir string) {
			db, err := bolt.Open(filepath.Join(dir, storeFile), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = db.Update(func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("logs"))
				return err
			})
			db.Close()
		}, ErrForeignDataDir},
		{"wrong header magic", func(t *testing.T, dir string) {
			makeStore(t, dir)
			db, err := bolt.Open(filepath.Join(dir, storeFile), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keyHeader, bytes.Repeat([]byte("z"), headerSize))
			})
			db.Close()
		}, ErrForeignDataDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			before, _ := os.ReadFile(filepath.Join(dir, storeFile))
			s, err := openStore(dir, testLockWait)
			if err == nil {
				s.close()
				t.Fatal("openStore accepted it")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			after, _ := os.ReadFile(filepath.Join(dir, storeFile))
			if !bytes.Equal(before, after) {
				t.Fatal("openStore modified the refused file")
			}
		})
	}

	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		s := openTestStore(t, dir)
		defer s.close()
		if _, err := openStore(dir, testLockWait); !errors.Is(err, ErrStoreLocked) {
			t.Fatalf("second open: %v", err)
		}
	})
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func patchFile(t *testing.T, p string, fn func([]byte)) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fn(b)
	writeFile(t, p, b)
}

// makeStore creates a store holding an identity and a few models.
func makeStore(t *testing.T, dir string) {
	t.Helper()
	s := openTestStore(t, dir)
	key, _ := identity.NewKey(rand.Reader)
	if err := s.createIdentity(key, "ag-x"); err != nil {
		t.Fatal(err)
	}
	for v := uint64(1); v <= 3; v++ {
		if err := s.promote(modelRec(t, v)); err != nil {
			t.Fatal(err)
		}
		if err := s.putBase(v, modelRec(t, v).modelData); err != nil {
			t.Fatal(err)
		}
	}
	s.close()
}

const crashChildEnv = "FEDGE_AGENT_STORE_CRASH_DIR"

// TestStoreCrashChild is the child process of TestStoreSurvivesKill: it
// writes to the store as fast as it can until it is killed.
func TestStoreCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("child process of TestStoreSurvivesKill")
	}
	s, err := openStore(dir, 5*time.Second)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if _, ok, _ := s.identity(); !ok {
		key, _ := identity.NewKey(rand.Reader)
		if err := s.createIdentity(key, "ag-crash"); err != nil {
			os.Exit(3)
		}
	}
	v := uint64(1)
	if cur, _ := s.model(keyCurrent); cur != nil {
		v = cur.version + 1
	}
	models := [2][]byte{}
	hashes := [2][32]byte{}
	for i := range models {
		m, b := testModel(t, uint64(i))
		models[i], hashes[i] = b, m.Hash()
	}
	for i := 0; ; i++ {
		k := v % 2
		if err := s.promote(&modelRecord{version: v, hash: hashes[k], rolledOut: time.Now(), modelData: modelData{blob: models[k]}}); err != nil {
			os.Exit(4)
		}
		if err := s.putBase(v, modelData{blob: models[k]}); err != nil {
			os.Exit(5)
		}
		if err := s.setProgress(progress{roundID: v, stage: uint8(i % 7), updated: time.Now()}, true); err != nil {
			os.Exit(6)
		}
		if err := s.endRound(v, i%3 != 0, 100); err != nil {
			os.Exit(7)
		}
		if i == 2 {
			fmt.Println("ready")
		}
		v++
	}
}

// TestStoreSurvivesKill kills a child process (SIGKILL) while it writes,
// several times, and checks after each kill that the store opens and holds
// a consistent state.
func TestStoreSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	kills := 3
	if !testing.Short() {
		kills = 10
	}
	lastVersion := uint64(0)
	for k := range kills {
		cmd, line := testutil.StartChild(t, "TestStoreCrashChild", crashChildEnv+"="+dir)
		if line != "ready" {
			t.Fatalf("child said %q", line)
		}
		time.Sleep(time.Duration(mrand.IntN(40)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()

		s, err := openStore(dir, testLockWait)
		if err != nil {
			t.Fatalf("kill %d: store does not open: %v", k, err)
		}
		id, ok, err := s.identity()
		if err != nil || !ok || id.id != "ag-crash" {
			t.Fatalf("kill %d: identity %+v %v %v", k, id, ok, err)
		}
		cur, err := s.model(keyCurrent)
		if err != nil || cur == nil {
			t.Fatalf("kill %d: current model %v %v", k, cur, err)
		}
		m, err := tensor.UnmarshalModel(cur.blob)
		if err != nil || m.Hash() != cur.hash {
			t.Fatalf("kill %d: current model %d does not decode or match: %v", k, cur.version, err)
		}
		prev, err := s.model(keyPrevious)
		if err != nil || prev == nil || prev.version != cur.version-1 {
			t.Fatalf("kill %d: previous = %+v (current %d), %v", k, prev, cur.version, err)
		}
		if cur.version <= lastVersion {
			t.Fatalf("kill %d: version went from %d to %d", k, lastVersion, cur.version)
		}
		lastVersion = cur.version
		p, inRound, c, err := s.roundState()
		if err != nil {
			t.Fatalf("kill %d: round state: %v", k, err)
		}
		if inRound && p.roundID != cur.version {
			t.Fatalf("kill %d: progress of round %d with model %d", k, p.roundID, cur.version)
		}
		if c.joined < c.completed+c.failed || c.bytesSent != 100*(c.completed+c.failed) {
			t.Fatalf("kill %d: counters %+v are inconsistent", k, c)
		}
		n := 0
		for v := range cur.version + 1 {
			if _, ok, _ := s.base(v); ok {
				n++
			}
		}
		if n > keepBases {
			t.Fatalf("kill %d: %d bases kept", k, n)
		}
		s.close()
		t.Logf("kill %d: store at version %d, %s", k, cur.version, strconv.Quote(fmt.Sprint(c)))
	}
}

// FuzzStoreRecords feeds arbitrary bytes to the decoders of the records
// read from disk: none may panic, and a decoded record encodes back to the
// same bytes.
func FuzzStoreRecords(f *testing.F) {
	f.Add(header{format: storeFormat, pin: [32]byte{7}}.encode())
	f.Add(progress{roundID: 3, kind: 1, stage: 4, updated: time.Unix(9, 9)}.encode())
	f.Add(counters{1, 2, 3, 4}.encode())
	rec := &modelRecord{version: 5, hash: [32]byte{1}, rolledOut: time.Unix(7, 0), modelData: modelData{blob: []byte("FEDGEMDL")}}
	f.Add(rec.encode())
	rec.modelData = modelData{file: strings.Repeat("ab", 32)}
	f.Add(rec.encode())
	files := &modelFiles{dir: f.TempDir()}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeHeader(b); err == nil && !bytes.Equal(h.encode(), b) {
			t.Fatal("header does not round-trip")
		}
		if p, err := decodeProgress(b); err == nil && !bytes.Equal(p.encode(), b) {
			t.Fatal("progress does not round-trip")
		}
		if c, err := decodeCounters(b); err == nil && !bytes.Equal(c.encode(), b) {
			t.Fatal("counters do not round-trip")
		}
		if r, err := decodeModelRecord(b); err == nil {
			if !bytes.Equal(r.encode(), b) {
				t.Fatal("model record does not round-trip")
			}
			if _, err := newServedModel(files, r); err == nil && r.version == 0 {
				t.Fatal("served a model of version 0")
			}
		}
	})
}

// readModelData reads a stored model file whole.
func readModelData(t testing.TB, s *store, d modelData) []byte {
	t.Helper()
	r, size, done, err := s.files.open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	b := make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil && size > 0 {
		t.Fatal(err)
	}
	return b
}
