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
# Per process: PSS, RSS, and RSS split into anonymous memory (private to
# the process) and file-backed pages (mostly the executable's code, shared
# by every process that runs the same binary, here or in another cluster).
# PSS divides shared pages among all their users, so it falls when other
# clusters on the machine run the same binaries; the cluster's own figure is
# "alone": every process's anonymous memory plus, for each executable, the
# file-backed pages of the process that has most of them resident.
printf '%8s %8s %8s %8s %8s  %s\n' PID PSS_MB RSS_MB ANON_MB FILE_MB PROCESS
for p in $pids; do
	[ -r /proc/"$p"/smaps_rollup ] || continue
	name=$(tr '\0' ' ' </proc/"$p"/cmdline | cut -c1-60)
	exe=$(readlink /proc/"$p"/exe 2>/dev/null || echo "?$p")
	awk -v p="$p" -v n="$name" -v e="$exe" '/^Rss:/ {r = $2} /^Pss:/ {s = $2} /^Anonymous:/ {a = $2}
		END {printf "%8d %8.1f %8.1f %8.1f %8.1f  %s\t%s\n", p, s / 1024, r / 1024, a / 1024, (r - a) / 1024, n, e}' /proc/"$p"/smaps_rollup
done | sort -k2 -n -r >"$work/table"
cut -f1 "$work/table"
awk -F'\t' '{split($1, f, " +"); i = (f[1] == "") ? 1 : 0; pss += f[2+i]; rss += f[3+i]; anon += f[4+i]
		if (f[5+i] > file[$2]) file[$2] = f[5+i]; n++}
	END {for (e in file) fl += file[e]
		printf "%8s %8.1f %8.1f %8.1f %8.1f  total of %d processes\n", "", pss, rss, anon, fl, n
		printf "alone: %.1f MB (anonymous %.1f + file-backed %.1f, each executable counted once)\n", anon + fl, anon, fl}' "$work/table"
