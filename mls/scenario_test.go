package mls

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestScenarioRandomOperations runs 50 random operations (add, remove,
// update, message) in a group of 8 members, comparing every member's view
// (epoch, epoch authenticator, ratchet tree) after each step.
func TestScenarioRandomOperations(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 4256))
			w := newWorld(t, X25519AES128GCMSHA256Ed25519)
			w.add(w.members[0], 7)
			pick := func() *member { return w.members[rng.IntN(len(w.members))] }
			counts := map[string]int{}
			for step := range 50 {
				op := []string{"add", "remove", "update", "message"}[rng.IntN(4)]
				switch {
				case op == "add" && len(w.members) < 12:
					w.add(pick(), 1+rng.IntN(2))
				case op == "remove" && len(w.members) > 4:
					c := pick()
					victim := pick()
					for victim == c {
						victim = pick()
					}
					w.commit(c, CommitOptions{Proposals: []*Proposal{{ProposalType: ProposalTypeRemove,
						Remove: &Remove{Removed: victim.group.LeafIndex()}}}}, nil)
				case op == "update":
					// One member proposes an Update, another commits it.
					u, c := pick(), pick()
					for c == u {
						c = pick()
					}
					p, err := u.group.ProposeUpdate(nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range w.members {
						if m != u {
							if _, err := m.group.Process(p); err != nil {
								t.Fatalf("step %d: %s processes the update: %v", step, m.name, err)
							}
						}
					}
					w.commit(c, CommitOptions{}, nil)
				default:
					op = "message"
					w.message(pick(), "step")
				}
				counts[op]++
				w.check()
			}
			t.Logf("seed %d: %v; %d members at epoch %d", seed, counts, len(w.members), w.members[0].group.Epoch())
		})
	}
}
