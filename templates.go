// Package templates embeds the SandboxTemplates under testdata/templates.
// It lives at the module root only because go:embed cannot reach a parent
// directory; suites import github.com/agentsandbox/go-sandboxtest/sandboxtest.
package templates

import "embed"

// FS holds the SandboxTemplates under testdata/templates that
// `sandboxtest-setup deploy` applies by default (each with a warm pool of the
// same name), so a suite and its cluster agree on template names without
// reading files at run time. Paths inside are "testdata/templates/<name>.yaml".
//
//go:embed testdata/templates/*.yaml
var FS embed.FS
