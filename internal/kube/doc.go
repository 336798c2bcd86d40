// Package kube is what sandboxtest does with the Kubernetes API, over the
// typed clients of agent-sandbox v0.5.6, client-go and gateway-api:
//
//   - claims (claims.go): find or create a template's warm pool, create a
//     SandboxClaim, watch it to a Ready Sandbox (failing at once on a
//     terminal reason), read its status, delete it;
//   - templates read from files (templates.go), the controller's manifests
//     (controller.go), server-side apply (apply.go);
//   - pods (pods.go): the one wording of a pod's state and the one rule
//     for a template's server port, which every package uses;
//   - checks and gathering: reachability and cluster detection
//     (preflight.go, detect.go), doctor, diagnostics for the failure
//     report, gc of what runs left behind;
//   - the names, labels and annotations sandboxtest owns (names.go).
//
// Nothing here imports sandboxtest or the local cluster. Errors name the
// object and say how to fix it, without the "sandboxtest: " prefix that
// the calling package adds.
package kube
