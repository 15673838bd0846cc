// Package scheduler will hold recurring scans made from chat (the scheduling
// issue). It is empty until then.
package scheduler
