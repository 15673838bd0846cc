// Package billing is forgebot's money: micro-dollar amounts, prices, accounts
// and their two buckets, two-phase holds, the append-only ledger, receipts and
// the invariants that tie them together.
//
// Every balance change is a ledger entry written in the same database
// transaction as the change it records, under an idempotency key. The Store
// interface is implemented by store/postgres and store/sqlite; both pass the
// conformance suite in store/storetest.
package billing
