package eventstore

import "context"

// AppendPhase is a point an append passes on its way to the store, reported to a caller
// that asked to time it (WithPhases): a backend marks the phases it has, a store
// without them marks none.
type AppendPhase int

const (
	// PhaseWriting: the backend began the append (after any wait for a group commit's
	// turn).
	PhaseWriting AppendPhase = iota
	// PhaseSent: an append that takes two round trips had its first answered.
	PhaseSent
	// PhaseCommitted: the append's transaction committed (it is durable).
	PhaseCommitted
)

type phasesKey struct{}

// WithPhases returns ctx carrying f: an append made with it calls f at each phase it
// passes (WithPhases again replaces f). f must be quick and must not block.
func WithPhases(ctx context.Context, f func(AppendPhase)) context.Context {
	return context.WithValue(ctx, phasesKey{}, f)
}

// MarkPhase reports phase p to the function ctx carries, if any (backends call it).
func MarkPhase(ctx context.Context, p AppendPhase) {
	if f, ok := ctx.Value(phasesKey{}).(func(AppendPhase)); ok && f != nil {
		f(p)
	}
}
