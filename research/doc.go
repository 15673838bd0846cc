// Package research is forgebot's run engine: it turns a chat request into a
// quote, a confirmed run paid by a hold, a sequence of stages (fetch data,
// compute, model calls) with live progress, and a settlement that captures what
// was used and releases the rest, in one transaction with the run's final state.
//
// The engine knows nothing of chats: it emits Events keyed by run, carrying the
// Destination the conversation layer stored with the run, so whichever instance
// executes a run can update the right message. Runs execute as queue jobs
// (River, wired by the stores), so a cancel reaches the instance running them.
package research
