package research_test

import (
	"os"
	"testing"

	"github.com/tokensforge/forgebot/internal/testbed"
)

// TestMain lets this test binary serve the fake LLM API in a child process
// (testbed.StartLLMChild), so benchmarks read this process's memory alone.
func TestMain(m *testing.M) {
	testbed.ServeLLMChild()
	os.Exit(m.Run())
}
