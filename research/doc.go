// Package research will hold quotes, runs and their states, stages, progress
// events and cancel/pause (the run engine issue). It is empty until then.
package research
