package protocol

// MaxPrepPlan bounds a PrepRequest's plan.
const MaxPrepPlan = 1 << 20

// PrepRequest asks an agent for one phase of a job's data preparation: a
// vector computed from its raw training data under the job's column rules
// (a profile of each column, histograms, or the report of cleaning with
// the resolved rules), summed under secure aggregation as exact
// fixed-point values (EncodeFixed), so the coordinator learns the
// federation's totals only. Plan is the phase's plan (tensor/data's
// PrepPlan, JSON), opaque here.
type PrepRequest struct {
	RoundID uint64
	// Phase repeats the plan's phase (1 profile, 2 histogram, 3 apply).
	Phase uint8
	Plan  []byte
	// SecAgg is the secure-aggregation configuration (opaque).
	SecAgg []byte
}

// Type implements Message.
func (*PrepRequest) Type() MsgType { return TypePrepRequest }

func (m *PrepRequest) encode(e *encoder) {
	e.uvarint(m.RoundID)
	e.u8(m.Phase)
	e.bytes("Plan", m.Plan, MaxPrepPlan)
	e.bytes("SecAgg", m.SecAgg, e.lim.MaxFrame)
}

func (m *PrepRequest) decode(d *decoder) {
	m.RoundID = d.uvarint("RoundID")
	m.Phase = d.u8("Phase")
	m.Plan = d.bytes("Plan", MaxPrepPlan)
	m.SecAgg = d.bytes("SecAgg", d.lim.MaxFrame)
}
