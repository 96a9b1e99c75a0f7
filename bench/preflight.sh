#!/usr/bin/env bash
# bench/preflight.sh: what the preflight adds to a begin (`make bench-preflight`).
#
# Starts a lab of 3 idle hosts (nft, iptables-nft, iptables-legacy), applies
# each host's good ruleset (testdata/rulesets/good.nft, good.v4) RUNS times
# with lifeline, one host at a time, and reads from every run's --json
# result the host-side phases of its begin (detect, validate, guard-plan,
# preflight, snapshot, ...). The preflight runs inside begin, between the
# guard plan and the snapshot, so begin without it is begin minus its
# preflight phase; the workstation-side begin (SSH round trip included) is
# reported too. Results go to bench/results/PREFLIGHT-<date>.md.
#
# Environment:
#   BENCH_RUNS  applies per host (default 10)
#   LIFELINE    the lifeline binary (default bin/lifeline)
#
# Safety: firewall changes happen only inside the lab hosts' network
# namespaces (and the helper's private sandboxes there); the lab is removed
# on exit, also on failure or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LL=${LIFELINE:-$ROOT/bin/lifeline}
RUNS=${BENCH_RUNS:-10}
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$ROOT/bench/results/PREFLIGHT-$STAMP.md
WORK=$(mktemp -d /tmp/llpf.XXXX)
LAB_DIR=$WORK/lab

log() { printf 'bench: %s\n' "$*" >&2; }
cleanup() {
	if [ -f "$LAB_DIR/lab.json" ]; then
		timeout 120 "$LL" lab down --dir "$LAB_DIR" >&2 || log "lab down $LAB_DIR failed (hint: $LL lab down --dir $LAB_DIR)"
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ -x "$LL" ] || { log "no $LL (hint: make build)"; exit 1; }
log "lab up (3 hosts: nft, iptables-nft, iptables-legacy)"
timeout 300 "$LL" lab up --dir "$LAB_DIR" --hosts 2 --backend mixed >"$WORK/labup.log" 2>&1 || { cat "$WORK/labup.log" >&2; exit 1; }
# 2 hosts: h01 nft, h02 iptables-nft; a third lab brings up iptables-legacy
LAB2=$WORK/lab2
timeout 300 "$LL" lab up --dir "$LAB2" --hosts 1 --backend iptables-legacy >"$WORK/labup2.log" 2>&1 || { cat "$WORK/labup2.log" >&2; exit 1; }
trap 'timeout 120 "$LL" lab down --dir "$LAB2" >&2 || true; cleanup' EXIT INT TERM

# begin's host-side phases (tx_begin.go): everything before stage
BEGIN_PHASES='["settle","detect","validate","guard-plan","preflight","snapshot","validate-snapshot","snapshot-files","record","arm"]'
rows=()
runs() { # lab-dir host ruleset out [apply flags]
	local dir=$1 host=$2 rs=$3 out=$4
	shift 4
	: >"$out"
	for i in $(seq "$RUNS"); do
		timeout 120 "$LL" -F "$dir/ssh_config" --json apply "$host" "$ROOT/testdata/rulesets/$rs" --confirm-timeout 30s "$@" >"$WORK/run.json" 2>"$WORK/run.err" || { cat "$WORK/run.err" >&2; exit 1; }
		jq -c --argjson names "$BEGIN_PHASES" '.results[0] |
			{outcome, verdict: (.preflight.verdict // "none"),
			 begin_host: ([.host_phases[] | select(.name as $n | $names | index($n)) | .took_ns] | add),
			 preflight: ([.host_phases[] | select(.name == "preflight") | .took_ns] | add // 0),
			 begin_ws: ([.timings[] | select(.phase == "begin") | .took_ns] | add)}' "$WORK/run.json" >>"$out"
	done
	if jq -e 'select(.outcome != "confirmed")' "$out" >/dev/null; then
		log "$host: a run did not end confirmed:"; cat "$out" >&2; exit 1
	fi
}
measure() { # lab-dir host ruleset backend
	local with=$WORK/$2-$4-with.jsonl without=$WORK/$2-$4-without.jsonl
	# interleaved: with, without, with, ... so that load drifts hit both
	: >"$with.all"; : >"$without.all"
	for k in $(seq "$RUNS"); do
		RUNS=1 runs "$1" "$2" "$3" "$with" && cat "$with" >>"$with.all"
		RUNS=1 runs "$1" "$2" "$3" "$without" --no-preflight && cat "$without" >>"$without.all"
	done
	if jq -e 'select(.verdict != "pass")' "$with.all" >/dev/null; then
		log "$2: a preflight did not pass:"; cat "$with.all" >&2; exit 1
	fi
	rows+=("$(jq -rs --arg b "$4" '
		def med: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
		def ms: . / 1e6 * 10 | round / 10;
		(.[0] | map(.preflight) | med) as $p |
		(.[0] | map(.begin_host) | med) as $bw | (.[1] | map(.begin_host) | med) as $bn |
		(.[0] | map(.begin_ws) | med) as $ww | (.[1] | map(.begin_ws) | med) as $wn |
		"| \($b) | \(.[0] | length) | \($p | ms) | \($bn | ms) | \($bw | ms) | +\(($bw - $bn) | ms) | \((($bw / $bn) * 100 | round) / 100) | \($wn | ms) | \($ww | ms) | \((($ww / $wn) * 100 | round) / 100) |"' <(jq -s . "$with.all") <(jq -s . "$without.all"))")
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
measure "$LAB_DIR" h01 good.nft nft
measure "$LAB_DIR" h02 good.v4 iptables-nft
measure "$LAB2" h01 good.v4 iptables-legacy
mkdir -p "$(dirname "$RESULTS")"
{
	echo "# Preflight cost ($STAMP)"
	echo
	echo "lifeline $("$LL" version 2>/dev/null | head -1); kernel $(uname -r); $(nproc) cores; load average before ${load0}, after $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Each row: $RUNS applies of the good ruleset with the preflight and $RUNS with --no-preflight, interleaved, to one idle lab host, one at a time; medians in ms. Host: begin's phases on the host; workstation: the begin round trip as lifeline times it. The preflight column is its own phase (links, listener, flows, probes; the candidate's load counts as validation)."
	echo
	echo "| backend | runs | preflight phase | host begin without | host begin with | added | ratio | workstation begin without | with | ratio |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	printf '%s\n' "${rows[@]}"
} | tee "$RESULTS"
log "results: $RESULTS"
