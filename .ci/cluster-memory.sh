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
# Without an argument the binary is built from this checkout, as the
# library builds it (CGO_ENABLED=0).
#
# The executables' pages are first dropped from the page cache, so every
# run starts from the same state, as after a reboot: how many file pages a
# process maps depends on how the page cache holds the file (one freshly
# written by the linker mapped up to 30 MB more than the same file read
# back from disk).
set -eu
idle=${IDLE:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
dir=$work/cluster
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$work/sandboxtest-setup
	(cd "$here" && CGO_ENABLED=0 go build -o "$bin" ./cmd/sandboxtest-setup)
fi
cleanup() {
	"$bin" local down --dir "$dir" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# `local build` prints each cluster binary's path (building what is missing);
# their cache folder also holds sandboxtest-pod. Pages still mapped by a
# running process stay.
cachebin=$("$bin" local build 2>"$work/build.log" | awk '$1 == "etcd" {print $2}') || { cat "$work/build.log" >&2; exit 1; }
cachebin=$(dirname "$(dirname "$cachebin")")
for f in "$bin" $(find "$cachebin" -type f ! -name '*.lock'); do
	dd if="$f" iflag=nocache count=0 2>/dev/null
done

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
# "alone": every process's anonymous memory plus the file pages mapped by
# any of them, each page counted once (the union over the processes, read
# from /proc/PID/pagemap: kube-apiserver, kube-controller-manager and
# kube-scheduler are one executable and map partly different pages of it).
printf '%8s %8s %8s %8s %8s  %s\n' PID PSS_MB RSS_MB ANON_MB FILE_MB PROCESS
for p in $pids; do
	[ -r /proc/"$p"/smaps_rollup ] || continue
	name=$(tr '\0' ' ' </proc/"$p"/cmdline | cut -c1-60)
	awk -v p="$p" -v n="$name" '/^Rss:/ {r = $2} /^Pss:/ {s = $2} /^Anonymous:/ {a = $2}
		END {printf "%8d %8.1f %8.1f %8.1f %8.1f  %s\n", p, s / 1024, r / 1024, a / 1024, (r - a) / 1024, n}' /proc/"$p"/smaps_rollup
done | sort -k2 -n -r >"$work/table"
cat "$work/table"
# File pages: for every mapping of a file (inode column not 0), the pagemap
# entries of its range; an entry whose top hex digit has bits 63 (present)
# and 61 (file page) set is page offset/4096+i of that file (pages a private
# mapping copied on write are anonymous and counted above).
for p in $pids; do
	awk '$5 != 0 {print $1, $3, $4 ":" $5, $6}' /proc/"$p"/maps 2>/dev/null | while read -r range off file path; do
		start=$((0x${range%-*})) end=$((0x${range#*-}))
		dd if=/proc/"$p"/pagemap iflag=skip_bytes,count_bytes bs=1M skip=$((start / 4096 * 8)) count=$(((end - start) / 4096 * 8)) 2>/dev/null |
			od -An -v -tx8 -w8 | awk -v f="$file" -v n="$path" -v o=$((0x$off / 4096)) '{c = substr($1, 1, 1)} c ~ /[abef]/ {print f, o + NR - 1, n}'
	done
done | sort -u -k1,2 | awk '{n[$1]++; if (!($1 in name)) name[$1] = $3}
	END {for (f in n) print n[f], name[f]}' | sort -n -r >"$work/files"
awk '$1 >= 256 {printf "%8.1f MB  file pages of %s\n", $1 * 4 / 1024, $2}' "$work/files"
awk -v pages="$(awk '{s += $1} END {print s}' "$work/files")" '{pss += $2; rss += $3; anon += $4; file += $5; n++}
	END {fl = pages * 4 / 1024
		printf "%8s %8.1f %8.1f %8.1f %8.1f  total of %d processes\n", "", pss, rss, anon, file, n
		printf "alone: %.1f MB (anonymous %.1f + file pages %.1f, each page counted once)\n", anon + fl, anon, fl}' "$work/table"
