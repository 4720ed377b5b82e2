package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fedge/fedge/internal/wait"
	"github.com/fedge/fedge/protocol"
	"github.com/fedge/fedge/tensor"
)

// Import adds m to the registry as a new version, without parent, job or
// round: the initial weights of a job ("init_model"), typically an
// external model read from a safetensors file (safetensors.ReadModel).
// name, if not empty, names the model in the registry. The model file
// travels on a bulk stream (chunked and hashed) to the leader, which
// bounds its size (the coordinators' max_import_bytes, 256 MiB by
// default) and commits it through Raft. An imported version is not
// served by agents until a job trained from it commits or a rollout
// starts it.
func (x *ModelCalls) Import(ctx context.Context, name string, m *tensor.Model) (Model, error) {
	file, err := m.MarshalBinary()
	if err != nil {
		return Model{}, fmt.Errorf("api.Models.Import: %w", err)
	}
	return x.ImportFile(ctx, name, file)
}

// ImportFile is Import for a model already encoded in fedge's model
// format (tensor.Model.MarshalBinary, a .fedgemdl file); the leader
// decodes and checks it.
func (x *ModelCalls) ImportFile(ctx context.Context, name string, file []byte) (Model, error) {
	var out Model
	body, err := json.Marshal(ImportRequest{Name: name})
	if err != nil {
		return out, err
	}
	info, err := protocol.NewBlobInfo("import", bytes.NewReader(file), int64(len(file)), 0)
	if err != nil {
		return out, fmt.Errorf("api.Models.Import: %w", err)
	}
	c := x.c
	addr := ""
	backoff := 100 * time.Millisecond
	for hop := 0; hop < 12; hop++ {
		s, err := c.dialReady(ctx, addr)
		if err != nil {
			return out, err
		}
		err = uploadImport(ctx, s, body, file, &info, &out)
		var re *protocol.Redirect
		if !errors.As(err, &re) {
			if err != nil {
				return out, fmt.Errorf("%s: %w", VerbModelsImport, err)
			}
			return out, nil
		}
		if re.Addr != "" {
			addr = re.Addr
			continue
		}
		// No leader known to this node: ask another after a pause.
		c.rotate()
		if hop == 11 || !wait.Sleep(ctx, backoff) {
			return out, fmt.Errorf("%s: %w", VerbModelsImport, ErrNoLeader)
		}
		backoff = min(2*backoff, time.Second)
		addr = ""
	}
	return out, fmt.Errorf("%s: too many redirects", VerbModelsImport)
}

// uploadImport runs one import on session s: the request, the file's
// manifest, the chunks from where the leader asks, and its answer.
func uploadImport(ctx context.Context, s *protocol.Session, body, file []byte, info *protocol.BlobInfo, out *Model) error {
	b, err := s.OpenBulk(ctx, &protocol.AdminRequest{Verb: VerbModelsImport, Body: body})
	if err != nil {
		return err
	}
	defer b.Close()
	stop := context.AfterFunc(ctx, b.Abort)
	defer stop()
	if err := b.Send(info); err != nil {
		// The node may have answered the request alone (a follower's
		// Redirect, a refusal) and closed the stream: that answer is the
		// error to report.
		if _, aerr := recvAnswer(b); aerr != nil && isAnswer(aerr) {
			return aerr
		}
		return err
	}
	m, err := recvAnswer(b)
	if err != nil {
		return err
	}
	resume, ok := m.(*protocol.BlobResume)
	if !ok {
		return fmt.Errorf("%w: got %v, want BlobResume", protocol.ErrMalformed, m.Type())
	}
	if err := b.SendBlob(ctx, bytes.NewReader(file), info, resume.Offset); err != nil {
		if _, aerr := recvAnswer(b); aerr != nil && isAnswer(aerr) {
			return aerr
		}
		return err
	}
	if m, err = recvAnswer(b); err != nil {
		return err
	}
	ar, ok := m.(*protocol.AdminResponse)
	if !ok {
		return fmt.Errorf("%w: got %v, want AdminResponse", protocol.ErrMalformed, m.Type())
	}
	return json.Unmarshal(ar.Body, out)
}

// recvAnswer reads the next message of b, returning a peer's Error or
// Redirect as the error.
func recvAnswer(b *protocol.BulkStream) (protocol.Message, error) {
	m, err := b.Recv()
	if err != nil {
		return nil, err
	}
	switch e := m.(type) {
	case *protocol.Error:
		return nil, e
	case *protocol.Redirect:
		return nil, e
	}
	return m, nil
}

// isAnswer reports whether err is the node's own answer (an Error or a
// Redirect it sent) rather than a transport failure.
func isAnswer(err error) bool {
	var pe *protocol.Error
	var re *protocol.Redirect
	return errors.As(err, &pe) || errors.As(err, &re)
}
