#!/usr/bin/env bash
# bench/scaling.sh: what one shard costs the workstation (docs/scaling.md).
#
# Starts a lab of $SCALE_HOSTS nft hosts (real sshds in namespaces), then
# runs lifeline pinned to one CPU (taskset -c $SCALE_CPU) and records, per
# command, the wall time, the lifeline process's user and system CPU time
# (bash's time, to the ms), hosts per second per workstation core (hosts / CPU
# seconds), the peak of its open file descriptors and sockets (sampled
# from /proc/PID/fd every 10 ms) and its peak memory (max RSS):
#
#   run all -- true            one fresh SSH connection and one exec per host
#   run all -- true --forks 1  the same, one host at a time (fds per connection)
#   apply all good.nft (cold)  the helper uploaded once per host
#   apply all good.nft (warm)  the guarded change: 2 connections per host
#
# Environment: SCALE_HOSTS (default 20), SCALE_RUNS (repeats of each warm
# command, default 3), SCALE_CPU (default 0), LIFELINE (default
# bin/lifeline; a binary without embedded helpers needs
# LIFELINE_HELPER_AMD64). Needs root (the lab). The lab and its folder are
# removed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
LL=${LIFELINE:-$ROOT/bin/lifeline}
N=${SCALE_HOSTS:-20}
RUNS=${SCALE_RUNS:-3}
CPU=${SCALE_CPU:-0}
WORK=$(mktemp -d /tmp/llscale.XXXX)
LAB=$WORK/lab
export XDG_STATE_HOME=$WORK/state

log() { printf 'scaling: %s\n' "$*" >&2; }
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	timeout 120 "$LL" lab down --dir "$LAB" >/dev/null 2>&1 || log "lab down failed (hint: $LL lab down --dir $LAB)"
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || {
	log "the lab needs root"
	exit 1
}
[[ -x $LL ]] || {
	log "$LL not found (hint: make build)"
	exit 1
}

log "lab up: $N hosts (nft)"
timeout 300 "$LL" lab up --dir "$LAB" --hosts "$N" --backend nft >/dev/null
INV=$LAB/inventory.yaml
RULES=$ROOT/testdata/rulesets/good.nft

echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load before: $(cut -d' ' -f1-3 /proc/loadavg), lifeline pinned to CPU $CPU, $N hosts"
printf '| command | wall s | user s | sys s | CPU ms/host | hosts/s per core | peak fds | peak sockets | max RSS MiB |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'

# measure LABEL ARGS...: one lifeline run, one table row.
measure() {
	local label=$1
	shift
	# bash's time: CPU to the millisecond (GNU time's %U has 10 ms); GNU
	# time for the max RSS. Both add well under 1 ms of CPU.
	(
		TIMEFORMAT='%3R %3U %3S'
		time taskset -c "$CPU" /usr/bin/time -f '%M' -o "$WORK/rss" "$LL" -i "$INV" "$@" >"$WORK/out" 2>"$WORK/err"
	) 2>"$WORK/time" &
	local tpid=$! pid="" fds=0 socks=0 n s tp
	while kill -0 "$tpid" 2>/dev/null; do
		if [[ -z $pid ]] && tp=$(pgrep -P "$tpid"); then
			pid=$(pgrep -P "$tp" || true) # subshell -> time -> lifeline
		fi
		if [[ -n $pid ]] && n=$(ls /proc/"$pid"/fd 2>/dev/null | wc -l) && ((n > 0)); then
			s=$(ls -l /proc/"$pid"/fd 2>/dev/null | grep -c 'socket:' || true)
			((n > fds)) && fds=$n
			((s > socks)) && socks=$s
		fi
		sleep 0.01
	done
	if ! wait "$tpid"; then
		log "$label failed:"
		cat "$WORK/err" >&2
		return 1
	fi
	read -r wall user sys <"$WORK/time"
	read -r rss <"$WORK/rss"
	awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v n="$N" -v f="$fds" -v k="$socks" -v m="$rss" 'BEGIN {
		c = u + s; printf "| %s | %.2f | %.3f | %.3f | %.2f | %.0f | %d | %d | %.0f |\n", l, w, u, s, 1000 * c / n, (c > 0 ? n / c : 0), f, k, m / 1024 }'
}

for i in $(seq "$RUNS"); do measure "run all -- true (forks 20)" run all -- true; done
measure "run all -- true (forks 1)" run all --forks 1 -- true
measure "apply, cold (helper upload)" --json apply all "$RULES"
for i in $(seq "$RUNS"); do measure "apply, warm (forks 20)" --json apply all "$RULES"; done
measure "apply, warm (forks 1)" --json apply all "$RULES" --forks 1
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "run store after $((RUNS + 2)) applies and $((RUNS + 1)) runs:"
"$LL" runs | tail -n 2
