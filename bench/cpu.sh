#!/usr/bin/env bash
# bench/cpu.sh: what a guarded change costs against the SSH floor (`make
# bench-cpu`, issue #12). Method and numbers: docs/benchmarks.md.
#
# In one run, on one lab of the largest size in $BENCH_CPU_SIZES (nft hosts
# by default), it measures:
#   - CPU per host of `lifeline run HOSTS -- true` (one SSH connection and one
#     command per host: the transport floor) and of a warm guarded `apply`
#     (helper already on the hosts), and their ratio;
#   - the pids the hosts allocated (processes and threads created in each
#     host's pid namespace, from the last-pid field of its /proc/loadavg),
#     per host and run;
#   - wall time of a warm apply to 1, 12 and all hosts, and the ratios to 1.
#
# CPU method: the lab's hosts (every init, sshd, shell, helper and tool
# they start) run in one cgroup and every lifeline process (and the ssh
# processes it starts) in another; CPU is the cgroup's usage delta over a
# step (cgroup v2 cpu.stat usage_usec, or v1 cpuacct.usage), so other load
# on the machine is not counted. Kernel work done in softirq context is
# charged to whichever task was running and is therefore approximate.
#
# Environment:
#   BENCH_CPU_SIZES    host counts for the wall-time column (default "1 12 50";
#                      the lab has max(SIZES) hosts)
#   BENCH_CPU_BACKEND  nft (default), iptables-nft, iptables-legacy or mixed
#   BENCH_CPU_REPS     repetitions of each CPU measurement (default 3)
#   BENCH_CPU_SCALE    rule counts of the large-ruleset column, one host (default
#                      "100 1000 5000 20000"; "" skips it): host CPU of one
#                      guarded apply (snapshot, begin, apply, confirm) of a
#                      generated ruleset of that many rules, to show how it grows
#   LIFELINE           the lifeline binary (default bin/lifeline)
#
# Safety: everything runs inside the lab's namespaces; the lab and both
# cgroups are removed on exit, also on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
LL=${LIFELINE:-$ROOT/bin/lifeline}
SIZES=${BENCH_CPU_SIZES:-1 12 50}
BACKEND=${BENCH_CPU_BACKEND:-nft}
REPS=${BENCH_CPU_REPS:-3}
SCALE=${BENCH_CPU_SCALE-100 1000 5000 20000}
WORK=$(mktemp -d /tmp/llcpu.XXXX)
LAB_DIR=$WORK/lab
CG_HOSTS="" CG_WS=""

log() { printf 'bench-cpu: %s\n' "$*" >&2; }
die() {
	printf 'bench-cpu: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) == 0 ]] || die "the lab needs root (hint: sudo make bench-cpu)"
[[ -x $LL ]] || die "$LL not found (hint: make build)"
command -v jq >/dev/null || die "jq is missing (hint: apt-get install jq)"
command -v nsenter >/dev/null || die "nsenter is missing (hint: apt-get install util-linux)"

MAX=0
for n in $SIZES; do ((n > MAX)) && MAX=$n; done
((MAX >= 1)) || die "BENCH_CPU_SIZES must name at least one host count"

# --- cgroups -----------------------------------------------------------------

if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
	CGV=2 CGROOT=/sys/fs/cgroup
elif [[ -d /sys/fs/cgroup/cpuacct ]]; then
	CGV=1 CGROOT=/sys/fs/cgroup/cpuacct
elif [[ -d /sys/fs/cgroup/unified ]]; then
	CGV=2 CGROOT=/sys/fs/cgroup/unified
else
	die "no cgroup v2 or v1 cpuacct mount under /sys/fs/cgroup (hint: mount -t cgroup2 none /sys/fs/cgroup)"
fi
CG_HOSTS=$CGROOT/llbench-hosts-$$
CG_WS=$CGROOT/llbench-ws-$$
mkdir "$CG_HOSTS" "$CG_WS"

# usage prints a cgroup's CPU time so far in microseconds.
usage() {
	if [[ $CGV == 2 ]]; then
		awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat"
	else
		awk '{ printf "%d\n", $1 / 1000 }' "$1/cpuacct.usage"
	fi
}

# in_cg CGROUP CMD...: run CMD inside CGROUP.
in_cg() {
	local cg=$1
	shift
	(
		echo "$BASHPID" >"$cg/cgroup.procs"
		exec "$@"
	)
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -f $LAB_DIR/lab.json ]]; then
		log "tearing down the lab"
		timeout 180 "$LL" lab down --dir "$LAB_DIR" >&2 || log "lab down failed (hint: $LL lab down --dir $LAB_DIR)"
	fi
	for cg in "$CG_HOSTS" "$CG_WS"; do
		[[ -n $cg && -d $cg ]] || continue
		# a process still inside (should be none after lab down) moves to the root
		if [[ -s $cg/cgroup.procs ]]; then
			while read -r p; do echo "$p" >"$CGROOT/cgroup.procs" 2>/dev/null || true; done <"$cg/cgroup.procs"
		fi
		rmdir "$cg" 2>/dev/null || log "could not remove cgroup $cg"
	done
	if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$WORK"; else log "kept $WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the lab -------------------------------------------------------------------

log "lab up: $MAX $BACKEND hosts"
in_cg "$CG_HOSTS" timeout 600 "$LL" lab up --dir "$LAB_DIR" --hosts "$MAX" --backend "$BACKEND" >"$WORK/up.log" 2>&1 ||
	{
		cat "$WORK/up.log" >&2
		die "lab up failed"
	}
INV=$LAB_DIR/inventory.yaml
mapfile -t NAMES < <(jq -r '.hosts[].name' "$LAB_DIR/lab.json")
mapfile -t INITS < <(jq -r ".hosts[].init_pid" "$LAB_DIR/lab.json")

# Two good rulesets that differ, so every apply is a real change.
RS_A=$ROOT/testdata/rulesets/good.nft
RS_B=$WORK/good-b.nft
sed 's/tcp dport 8080 accept comment "app"/tcp dport 8081 accept comment "app"/' "$RS_A" >"$RS_B"
case $BACKEND in
nft) ;;
*)
	RS_A=$ROOT/testdata/rulesets/good.v4
	RS_B=$WORK/good-b.v4
	sed 's/--dport 8080/--dport 8081/' "$RS_A" >"$RS_B"
	;;
esac
cmp -s "$RS_A" "$RS_B" && die "the second ruleset does not differ from the first"

# targets N prints an inventory pattern for the first N hosts.
targets() {
	local IFS=:
	echo "${NAMES[*]:0:$1}"
}

# lastpid prints, per host, the last pid its pid namespace allocated.
lastpids() {
	local p
	for p in "${INITS[@]}"; do
		nsenter -t "$p" -p -m cat /proc/loadavg | awk '{ print $5 }'
	done
}

LLC=("$LL" -i "$INV" -F "$LAB_DIR/ssh_config")

# measure LABEL N CMD...: run CMD REPS times in the workstation cgroup and
# print "label cpu_ms_per_host ws_ms_per_host hosts_ms_per_host pids_per_host wall_ms".
measure() {
	local label=$1 n=$2
	shift 2
	local w0 h0 w1 h1 t0 t1 p0 p1 i
	mapfile -t p0 < <(lastpids)
	w0=$(usage "$CG_WS") h0=$(usage "$CG_HOSTS") t0=$(date +%s%N)
	for ((i = 0; i < REPS; i++)); do
		"$@" "$i" >"$WORK/$label.$i.json" 2>"$WORK/$label.$i.err" || {
			cat "$WORK/$label.$i.err" >&2
			die "$label: run $i failed"
		}
	done
	t1=$(date +%s%N) w1=$(usage "$CG_WS") h1=$(usage "$CG_HOSTS")
	mapfile -t p1 < <(lastpids)
	local pids=0
	for ((i = 0; i < n; i++)); do pids=$((pids + p1[i] - p0[i] - 1)); done # -1: our own cat
	awk -v l="$label" -v n="$n" -v r="$REPS" -v w="$((w1 - w0))" -v h="$((h1 - h0))" -v p="$pids" -v t="$((t1 - t0))" \
		'BEGIN { printf "%s %.1f %.1f %.1f %.1f %.0f\n", l, (w + h) / 1000 / n / r, w / 1000 / n / r, h / 1000 / n / r, p / n / r, t / 1e6 / r }'
}

run_true() { in_cg "$CG_WS" "${LLC[@]}" --json run "$TARGETS" -- true; }
apply_warm() {
	local rs=$RS_A
	(($1 % 2 == 1)) && rs=$RS_B
	in_cg "$CG_WS" "${LLC[@]}" --json apply "$TARGETS" "$rs" --forks 50
}

TARGETS=$(targets "$MAX")
log "cold apply (uploads the helper once per host)"
in_cg "$CG_WS" "${LLC[@]}" --json apply "$TARGETS" "$RS_B" --forks 50 >"$WORK/cold.json" 2>"$WORK/cold.err" ||
	{
		cat "$WORK/cold.err" >&2
		die "cold apply failed"
	}
# alternate A, B, A, ... from B, so every rep is a change
log "CPU: run -- true vs warm apply on $MAX hosts, $REPS reps each"
RUN=$(measure run-true "$MAX" run_true)
APPLY=$(measure apply-warm "$MAX" apply_warm)
if [[ $(jq -r "[.results[] | select(.outcome != \"confirmed\")] | length" "$WORK/apply-warm.0.json" 2>/dev/null || echo x) != 0 ]]; then
	die "a warm apply did not confirm on every host: $(head -c 2000 "$WORK/apply-warm.0.json")"
fi

declare -A WALL
for n in $SIZES; do
	TARGETS=$(targets "$n")
	WALL[$n]=$(measure "wall-$n" "$n" apply_warm | awk '{ print $6 }')
done

# gen N PORT prints a ruleset of about N rules in the lab's format: SSH and
# established traffic accepted first, then N source-address rules spread
# over 50 regular chains (one jump each), the shape of a large hand-kept
# or generated allow list. PORT makes two versions differ.
gen() {
	local n=$1 port=$2
	if [[ $BACKEND == nft ]]; then
		awk -v n="$n" -v port="$port" 'BEGIN {
			print "table inet filter"; print "delete table inet filter"; print "table inet filter {"
			for (c = 0; c < 50; c++) {
				printf "\tchain allow%02d {\n", c
				for (i = c; i < n; i += 50) printf "\t\tip saddr 10.%d.%d.%d tcp dport %d accept\n", int(i / 65536) % 256, int(i / 256) % 256, i % 256, port
				print "\t}"
			}
			print "\tchain input {"
			print "\t\ttype filter hook input priority filter; policy drop;"
			print "\t\tiif \"lo\" accept"; print "\t\tct state established,related accept"
			print "\t\ttcp dport { 22, 2222 } accept"
			for (c = 0; c < 50; c++) printf "\t\tjump allow%02d\n", c
			print "\t}"; print "}"
		}'
	else
		awk -v n="$n" -v port="$port" 'BEGIN {
			print "*filter"; print ":INPUT DROP [0:0]"; print ":FORWARD DROP [0:0]"; print ":OUTPUT ACCEPT [0:0]"
			for (c = 0; c < 50; c++) printf ":ALLOW%02d - [0:0]\n", c
			print "-A INPUT -i lo -j ACCEPT"; print "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
			print "-A INPUT -p tcp -m multiport --dports 22,2222 -j ACCEPT"
			for (c = 0; c < 50; c++) printf "-A INPUT -j ALLOW%02d\n", c
			for (c = 0; c < 50; c++) for (i = c; i < n; i += 50) printf "-A ALLOW%02d -s 10.%d.%d.%d/32 -p tcp -m tcp --dport %d -j ACCEPT\n", c, int(i / 65536) % 256, int(i / 256) % 256, i % 256, port
			print "COMMIT"
		}'
	fi
}
declare -A SCALE_CPU SCALE_WALL
if [[ -n $SCALE ]]; then
	ext=nft
	[[ $BACKEND == nft ]] || ext=v4
	TARGETS=${NAMES[0]}
	for n in $SCALE; do
		gen "$n" 8080 >"$WORK/scale-$n-a.$ext"
		gen "$n" 8081 >"$WORK/scale-$n-b.$ext"
		# the first apply makes the snapshot of the measured one this size too
		in_cg "$CG_WS" "${LLC[@]}" --json apply "$TARGETS" "$WORK/scale-$n-a.$ext" --confirm-timeout 5m >"$WORK/scale-$n-0.json" 2>&1 ||
			die "apply of $n rules failed: $(tail -c 2000 "$WORK/scale-$n-0.json")"
		h0=$(usage "$CG_HOSTS") t0=$(date +%s%N)
		in_cg "$CG_WS" "${LLC[@]}" --json apply "$TARGETS" "$WORK/scale-$n-b.$ext" --confirm-timeout 5m >"$WORK/scale-$n-1.json" 2>&1 ||
			die "apply of $n rules failed: $(tail -c 2000 "$WORK/scale-$n-1.json")"
		t1=$(date +%s%N) h1=$(usage "$CG_HOSTS")
		SCALE_CPU[$n]=$(((h1 - h0) / 1000))
		SCALE_WALL[$n]=$(((t1 - t0) / 1000000))
		log "$n rules: host CPU ${SCALE_CPU[$n]} ms, wall ${SCALE_WALL[$n]} ms"
	done
fi

read -r _ run_cpu run_ws run_hosts run_pids _ <<<"$RUN"
read -r _ ap_cpu ap_ws ap_hosts ap_pids _ <<<"$APPLY"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

cat <<EOF
# lifeline bench-cpu $(date -u +%Y-%m-%dT%H:%M:%SZ)
machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), cgroup v$CGV
lab: $MAX $BACKEND hosts, $REPS reps per step, ruleset $(basename "$RS_A")

| step (per host) | CPU ms | workstation ms | hosts ms | pids on host |
| --- | ---: | ---: | ---: | ---: |
| run -- true (floor) | $run_cpu | $run_ws | $run_hosts | $run_pids |
| warm guarded apply | $ap_cpu | $ap_ws | $ap_hosts | $ap_pids |
| ratio apply / floor | $(ratio "$ap_cpu" "$run_cpu") | $(ratio "$ap_ws" "$run_ws") | $(ratio "$ap_hosts" "$run_hosts") | $(ratio "$ap_pids" "$run_pids") |

| warm apply to N hosts | wall ms | ratio to 1 host |
| ---: | ---: | ---: |
EOF
base=${WALL[${SIZES%% *}]}
for n in $SIZES; do
	printf '| %s | %s | %s |\n' "$n" "${WALL[$n]}" "$(ratio "${WALL[$n]}" "$base")"
done

if [[ -n $SCALE ]]; then
	first=${SCALE%% *}
	cat <<EOF

| rules (one host, $BACKEND) | host CPU ms per apply | wall ms | CPU ms per 1000 rules | ratio to $first rules |
| ---: | ---: | ---: | ---: | ---: |
EOF
	for n in $SCALE; do
		printf '| %s | %s | %s | %s | %s |\n' "$n" "${SCALE_CPU[$n]}" "${SCALE_WALL[$n]}" \
			"$(awk -v c="${SCALE_CPU[$n]}" -v n="$n" 'BEGIN { printf "%.1f", c * 1000 / n }')" "$(ratio "${SCALE_CPU[$n]}" "${SCALE_CPU[$first]}")"
	done
fi
