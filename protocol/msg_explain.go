package protocol

import "math"

// ExplainRequest asks an agent for the global explanation of a model on
// its held-out data: for each input feature, the sum over up to
// MaxExamples held-out examples of the absolute integrated-gradients
// attribution to the predicted class (zero baseline, Steps steps), and
// the number of examples, as Features+1 exact fixed-point values
// (EncodeFixed) under secure aggregation: the coordinator learns only the
// federation's totals, whose ratio is the mean absolute attribution.
type ExplainRequest struct {
	RoundID      uint64
	ModelVersion uint64
	ModelHash    Hash
	// Features is the model's input width; an agent whose data has
	// another declines.
	Features uint32
	// Steps is the number of integration steps per example.
	Steps uint32
	// MaxExamples bounds the held-out examples each agent explains.
	MaxExamples uint32
	// SecAgg is the secure-aggregation configuration (opaque).
	SecAgg []byte
}

// Type implements Message.
func (*ExplainRequest) Type() MsgType { return TypeExplainRequest }

func (m *ExplainRequest) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.uvarint(m.ModelVersion)
	e.hash(m.ModelHash)
	e.uvarint(uint64(m.Features))
	e.uvarint(uint64(m.Steps))
	e.uvarint(uint64(m.MaxExamples))
	e.bytes("SecAgg", m.SecAgg, e.lim.MaxFrame)
}

func (m *ExplainRequest) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.ModelVersion = d.uvarint("ModelVersion")
	m.ModelHash = d.hash("ModelHash")
	for _, f := range []struct {
		name string
		dst  *uint32
	}{{"Features", &m.Features}, {"Steps", &m.Steps}, {"MaxExamples", &m.MaxExamples}} {
		v := d.uvarint(f.name)
		if v > math.MaxUint32 {
			d.malformed(f.name, "exceeds 32 bits")
			return
		}
		*f.dst = uint32(v)
	}
	m.SecAgg = d.bytes("SecAgg", d.lim.MaxFrame)
}
