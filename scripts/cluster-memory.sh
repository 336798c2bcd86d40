#!/bin/sh
# cluster-memory.sh [SANDBOXTEST_SETUP_BINARY]: the memory of an idle local
# cluster with the router and one sandbox (BENCHMARKS.md, "Idle memory").
#
# Starts a cluster in a fresh directory (`local up`), deploys the router and
# the templates (`deploy`), claims one sandbox and waits until it is Ready,
# leaves the cluster idle for IDLE seconds (default 30), then prints the
# PSS (proportional set size: shared pages divided among the processes that
# map them) and RSS of the serving process and each of its descendants, read
# from /proc/PID/smaps_rollup, and their totals; the cluster is stopped
# afterwards. Needs kubectl (for the claim only) and Linux.
# Without an argument the binary is built from this checkout.
set -eu
idle=${IDLE:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
dir=$work/cluster
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$work/sandboxtest-setup
	(cd "$here" && go build -o "$bin" ./cmd/sandboxtest-setup)
fi
cleanup() {
	"$bin" local down --dir "$dir" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$bin" local up --dir "$dir" >/dev/null 2>"$work/up.log" || { cat "$work/up.log" >&2; exit 1; }
export KUBECONFIG="$dir/kubeconfig"
"$bin" deploy >/dev/null 2>"$work/deploy.log" || { cat "$work/deploy.log" >&2; exit 1; }
kubectl create -f - >/dev/null <<'YAML'
apiVersion: extensions.agents.x-k8s.io/v1beta1
kind: SandboxClaim
metadata:
  name: memory-probe
spec:
  warmPoolRef:
    name: python-sandbox-template
YAML
kubectl wait --for=condition=Ready sandboxclaim/memory-probe --timeout=120s >/dev/null
sleep "$idle"

# The serving process and its descendants, breadth first.
pids=$(cat "$dir/serve.pid")
frontier=$pids
while [ -n "$frontier" ]; do
	next=$(for p in $frontier; do cat /proc/"$p"/task/*/children 2>/dev/null; done | tr '\n' ' ')
	pids="$pids $next"
	frontier=$(echo $next)
done
printf '%8s %8s %8s  %s\n' PID PSS_MB RSS_MB PROCESS
for p in $pids; do
	[ -r /proc/"$p"/smaps_rollup ] || continue
	name=$(tr '\0' ' ' </proc/"$p"/cmdline | cut -c1-60)
	awk -v p="$p" -v n="$name" '/^Rss:/ {r = $2} /^Pss:/ {s = $2}
		END {printf "%8d %8.1f %8.1f  %s\n", p, s / 1024, r / 1024, n}' /proc/"$p"/smaps_rollup
done | sort -k2 -n -r >"$work/table"
cat "$work/table"
awk '{s += $2; r += $3} END {printf "%8s %8.1f %8.1f  total of %d processes\n", "", s, r, NR}' "$work/table"
