package sandboxtest

import "embed"

// Templates holds the SandboxTemplates under testdata/templates that
// `sandboxtest-setup deploy` applies by default (each with a warm pool of the
// same name), so a suite and its cluster agree on template names without
// reading files at run time. Paths inside are "testdata/templates/<name>.yaml".
//
//go:embed testdata/templates/*.yaml
var Templates embed.FS
