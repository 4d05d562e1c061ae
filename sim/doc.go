// Package sim owns the decentralisation simulator of MLS mode rooms: a
// deterministic discrete-event simulation, on a virtual clock, of up to
// MaxServers homeservers and their clients sharing one room, measuring how
// often commits conflict, how rooms fork and what that costs the members.
//
// Every simulated server runs the project's own code: authrules (the auth
// rules, the chain rule and soft-fail, on an authrules.MemRoom), stateres
// (state resolution before each event and at the forward extremities, and
// stateres.Losers for what lost) and commitqueue (a Scheduler per server,
// with its windows, on an in-memory commitqueue.Store). Events are real
// PDUs built by roomversion.Builder, with real reference hashes, signed by
// their origin; receiving servers do not verify the signatures (the
// simulator is their only source of events).
//
// MLS is modelled ("model" mode): commits and messages carry MLSMessages
// whose header (group, epoch, content type, authenticated data with the
// federation map) is real and whose encrypted parts are random bytes, as
// the auth rules and state resolution read only the header. The model
// keeps, per MLS commit, its parent and the group's members after it, and
// per client the commit its state is at, the states it kept from before
// each commit within security.window (to roll back to when another branch
// wins) and the epochs it holds keys for. A client that merged a commit
// that lost and cannot roll back within the window has lost the room and
// needs a new Welcome; the simulator has a member add it again. A member
// can decrypt a message when, as it arrives, the member holds the keys of
// its epoch: its current epoch or one of the 4 before it on its group's
// path (the mls package's default epoch history).
//
// The "mls" mode (Config.Mode, at most MaxMLSClients clients) makes every
// client a real MLS group member (package mls): commits, Welcomes,
// rollbacks to kept states and decryption are real. Both modes draw the
// same workload from the seed; the tests check they report the same
// outcomes.
//
// The network gives each link a latency, jitter and loss (lost
// transmissions are retried), keeps each link's order, holds what a
// partition or an outage blocks and delivers it when the link opens; a
// server fetches missing auth and prev events from the sender. Servers'
// clocks may be skewed: a server stamps events and runs its queue by its
// own clock.
//
// After every healing (a partition's end, a server back up, the run's end)
// the simulator waits until nothing is in flight and checks convergence:
// every server on the same commit, the chain linear to epoch 0, each commit
// passing the auth rules against its parent.
//
// The same Config (seed included) gives byte-identical reports. Sweep runs
// a grid of configs (see ParseSweep) and writes CSV and Markdown tables;
// package sim/plot draws them.
package sim
