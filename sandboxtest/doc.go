// Package sandboxtest gives go test suites real agent sandboxes
// (sigs.k8s.io/agent-sandbox): a test provisions a sandbox, runs commands and
// moves files through it, and t.Cleanup tears it down.
package sandboxtest
