package agent

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// modelsDir is where the agent keeps model files, beside its database:
// DataDir/models/<sha256 of the file>. bbolt records name them (a record
// written before model files held the bytes inline, and still reads), so
// a model is never a value of a bbolt transaction and is read by
// streaming, one model in memory rather than its bytes and its decoding.
const modelsDir = "models"

// refMagic starts a stored reference to a model file (model files start
// with tensor's own magic, so the two cannot be confused).
const refMagic = "FEDGEREF"

// modelData is a model file the store holds: inline bytes (records
// written before model files) or a file named by its SHA-256 (hex).
type modelData struct {
	blob []byte
	file string
}

// encode is the stored form: a reference, or the inline bytes.
func (d modelData) encode() []byte {
	if d.file == "" {
		return d.blob
	}
	sum, _ := hex.DecodeString(d.file)
	return append([]byte(refMagic), sum...)
}

// decodeModelData reads the stored form; b is copied.
func decodeModelData(b []byte) modelData {
	if len(b) == len(refMagic)+sha256.Size && string(b[:len(refMagic)]) == refMagic {
		return modelData{file: hex.EncodeToString(b[len(refMagic):])}
	}
	return modelData{blob: bytes.Clone(b)}
}

// modelFiles is the directory of model files.
type modelFiles struct{ dir string }

func openModelFiles(dataDir string) (*modelFiles, error) {
	dir := filepath.Join(dataDir, modelsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent.openModelFiles: %w", err)
	}
	return &modelFiles{dir: dir}, nil
}

func (f *modelFiles) path(name string) string { return filepath.Join(f.dir, name) }

// open returns a reader of d's bytes and their size.
func (f *modelFiles) open(d modelData) (io.ReaderAt, int64, func(), error) {
	if d.file == "" {
		return bytes.NewReader(d.blob), int64(len(d.blob)), func() {}, nil
	}
	fh, err := os.Open(f.path(d.file))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("agent: model file %s: %w", d.file, err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, 0, nil, err
	}
	return fh, st.Size(), func() { fh.Close() }, nil
}

// load decodes d's model, streaming it from its file.
func (f *modelFiles) load(d modelData) (*tensor.Model, error) {
	if d.file == "" {
		return tensor.UnmarshalModel(d.blob)
	}
	r, size, done, err := f.open(d)
	if err != nil {
		return nil, err
	}
	defer done()
	return tensor.ReadModel(bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<20), size)
}

// subtract subtracts the parameters of the model file d from dst (its
// length must be their count) as they stream from the file, and checks
// that they hash to want (when not zero): an agent that dropped the
// start model of a round computes its update against the file.
func (f *modelFiles) subtract(d modelData, dst []float32, want protocol.Hash) error {
	r, size, done, err := f.open(d)
	if err != nil {
		return err
	}
	defer done()
	h := sha256.New()
	var le []byte
	total := 0
	_, err = tensor.ReadModelParams(bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 1<<20), size, func(off int, p []float32) error {
		if off+len(p) > len(dst) {
			return fmt.Errorf("agent: stored model has more than the %d parameters of the round", len(dst))
		}
		le = le[:0]
		for i, v := range p {
			dst[off+i] -= v
			le = binary.LittleEndian.AppendUint32(le, math.Float32bits(v))
		}
		h.Write(le)
		total = off + len(p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("agent: reading the start model again: %w", err)
	}
	if total != len(dst) {
		return fmt.Errorf("agent: stored model has %d parameters, the round %d", total, len(dst))
	}
	var got protocol.Hash
	h.Sum(got[:0])
	if !want.IsZero() && got != want {
		return fmt.Errorf("agent: stored model hashes to %x, the round's start model to %x", got[:8], want[:8])
	}
	return nil
}

// partial returns the file a download of version writes into; it is
// kept across attempts, so a download resumes.
func (f *modelFiles) partial(version uint64) (*os.File, error) {
	fh, err := os.OpenFile(f.path(fmt.Sprintf("download-%d.part", version)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: download file: %w", err)
	}
	return fh, nil
}

// adopt makes the complete file fh, whose content hashes to sum, a model
// file: fsynced, renamed to its name, the directory fsynced.
func (f *modelFiles) adopt(fh *os.File, sum [32]byte) (modelData, error) {
	name := hex.EncodeToString(sum[:])
	if err := fh.Sync(); err != nil {
		return modelData{}, fmt.Errorf("agent.modelFiles.adopt: %w", err)
	}
	if err := os.Rename(fh.Name(), f.path(name)); err != nil {
		return modelData{}, fmt.Errorf("agent.modelFiles.adopt: %w", err)
	}
	return modelData{file: name}, syncDir(f.dir)
}

// write stores m's model file (written by streaming, hashed on the way)
// and returns its name.
func (f *modelFiles) write(m *tensor.Model) (modelData, error) {
	fh, err := os.CreateTemp(f.dir, "model-*.tmp")
	if err != nil {
		return modelData{}, fmt.Errorf("agent.modelFiles.write: %w", err)
	}
	defer fh.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(fh, h), 1<<20)
	if _, err := m.WriteTo(bw); err != nil {
		os.Remove(fh.Name())
		return modelData{}, fmt.Errorf("agent.modelFiles.write: %w", err)
	}
	if err := bw.Flush(); err != nil {
		os.Remove(fh.Name())
		return modelData{}, fmt.Errorf("agent.modelFiles.write: %w", err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	d, err := f.adopt(fh, sum)
	if err != nil {
		os.Remove(fh.Name())
	}
	return d, err
}

// keepOnly removes the model files not in keep.
func (f *modelFiles) keepOnly(keep map[string]bool) error {
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if keep[e.Name()] || len(e.Name()) != 2*sha256.Size {
			continue // in use, or not a model file (downloads, temporary files)
		}
		if err := os.Remove(f.path(e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
