package kube

// Objects sandboxtest-setup deploys, and that the test harness looks for.
const (
	RouterDeployment     = "sandbox-router"
	RouterService        = "sandbox-router-svc"
	RouterServiceAccount = "sandbox-router"
	RouterPort           = 8080  // the proxy port of the router and its Service
	RouterProbePort      = 8081  // /healthz and /readyz
	RouterAppLabel       = "app" // the label the default template NetworkPolicy admits
	RouterAppValue       = "sandbox-router"

	// FieldManager is the server-side apply field manager of everything sandboxtest applies.
	FieldManager = "sandboxtest"

	// LocalGatewayClass is the GatewayClass the local cluster programs itself.
	LocalGatewayClass = "sandboxtest-local"
)

// Labels sandboxtest puts on what it creates, so gc and doctor can find them.
const (
	LabelCreatedBy = "agents.x-k8s.io/created-by" // upstream's label; value CreatedByValue
	CreatedByValue = "sandboxtest"
	LabelRunID     = "sandboxtest.io/run-id"
	LabelTest      = "sandboxtest.io/test"
	LabelColdPool  = "sandboxtest.io/cold-pool" // "true" on pools sandboxtest created on demand
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "sandboxtest"
	LabelGateway   = "sandboxtest.io/gateway" // marks Gateways the harness may use in CI
	// AnnotationClientFirstRequestedAt is upstream's: when the client first
	// asked for the sandbox (RFC 3339 with nanoseconds, UTC, as upstream's Go
	// and Python clients write it). The controller's client-side startup
	// latency metric reads it.
	AnnotationClientFirstRequestedAt = "agents.x-k8s.io/client-first-requested-at"
	// LocalNodeLabel ("true") marks the process node of the local cluster.
	LocalNodeLabel = "sandboxtest.io/local-node"
)
