#!/usr/bin/env bash
# bench/run.sh: lifeline vs Ansible's community.general.iptables_state on lab
# hosts (`make bench`). Method and measured numbers: docs/benchmarks.md.
#
# For each N in $BENCH_SIZES it starts a lab of N real SSH hosts (one
# backend for all, iptables-legacy by default: iptables_state needs
# iptables-save/-restore), applies testdata/rulesets/good.v4 with lifeline,
# resets every host to its baseline, applies the same file with Ansible (a
# long rollback window, then the 30 s window), and checks each host's live
# ruleset after every run. Results go to bench/results/RESULTS-<date>.md.
#
# Environment:
#   BENCH_SIZES           host counts (default "1 10 50 100")
#   BENCH_BACKEND         iptables-legacy (default) or iptables-nft
#   BENCH_FORKS           cap on parallelism; both tools use min(N, cap) (default 30)
#   BENCH_WARM            extra lifeline runs with the helper already on the hosts (default 2)
#   BENCH_ANSIBLE_WINDOW  Ansible's long rollback window in seconds (default 120)
#   BENCH_SHORT_WINDOW    the short window run once more (default 30; 0 skips it)
#   LIFELINE              the lifeline binary (default bin/lifeline)
#
# Safety: firewall commands run only inside the lab hosts' network namespaces
# and one scratch namespace this script creates; every lab and the scratch
# namespace are removed on exit, also on failure or Ctrl-C. Each step runs
# under `timeout`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

LL=${LIFELINE:-$ROOT/bin/lifeline}
SIZES=${BENCH_SIZES:-1 10 50 100}
BACKEND=${BENCH_BACKEND:-iptables-legacy}
FORK_CAP=${BENCH_FORKS:-30}
WARM=${BENCH_WARM:-2}
LONG_WINDOW=${BENCH_ANSIBLE_WINDOW:-120}
SHORT_WINDOW=${BENCH_SHORT_WINDOW:-30}
RULESET=$ROOT/testdata/rulesets/good.v4
PLAYBOOK=$ROOT/bench/apply.yml
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
RESULTS=$RESULTS_DIR/RESULTS-$STAMP.md
RAW=$RESULTS_DIR/raw-$STAMP # every tool's JSON output and stderr, per N
WORK=$(mktemp -d /tmp/llbench.XXXX) # short: the lab's socket paths live under it
REFNS=llbench-ref$$
LAB_DIR="" OUT=""

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}

case $BACKEND in
iptables-legacy) SAVE=iptables-legacy-save RESTORE=iptables-legacy-restore ;;
iptables-nft) SAVE=iptables-nft-save RESTORE=iptables-nft-restore ;;
*) die "backend $BACKEND is not supported (hint: iptables_state needs iptables-save/-restore: iptables-legacy or iptables-nft)" ;;
esac

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $LAB_DIR ]]; then
		log "tearing down lab $LAB_DIR"
		timeout 120 "$LL" lab down --dir "$LAB_DIR" >&2 || log "lab down $LAB_DIR failed (hint: $LL lab down --dir $LAB_DIR)"
	fi
	ip netns del "$REFNS" 2>/dev/null || true
	if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$WORK"; else log "kept $WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites ---------------------------------------------------------

[[ $(id -u) == 0 ]] || die "the lab needs root (hint: sudo make bench)"
[[ -x $LL ]] || die "$LL not found (hint: make build)"
[[ -f $RULESET ]] || die "$RULESET not found"
if ! command -v ansible-playbook >/dev/null; then
	log "installing ansible (Debian 12: ansible 7.7 with community.general)"
	timeout 900 apt-get install -y ansible >&2 || die "apt-get install ansible failed (hint: apt-get update)"
fi
if ! command -v jq >/dev/null; then
	timeout 300 apt-get install -y jq >&2 || die "apt-get install jq failed (hint: apt-get update)"
fi
ansible-doc -t module community.general.iptables_state >/dev/null 2>&1 ||
	die "community.general.iptables_state is missing (hint: apt-get install ansible, or ansible-galaxy collection install community.general)"
ANSIBLE_VERSION=$(ansible --version 2>/dev/null | sed -n 1p)
CG_VERSION=$(ansible-galaxy collection list community.general 2>/dev/null | awk '$1 == "community.general" {v = $2} END {print v}')

# The reference: what $SAVE prints once good.v4 is loaded, taken in a scratch
# namespace so that it is the same normalisation the hosts' save prints.
ip netns add "$REFNS"
timeout 30 ip netns exec "$REFNS" "$RESTORE" <"$RULESET"
normalize() { grep -E '^(\*|:|-A|COMMIT)' | sed -E 's/ \[[0-9]+:[0-9]+\]$//'; }
timeout 30 ip netns exec "$REFNS" "$SAVE" -t filter | normalize >"$WORK/good.norm"
ip netns del "$REFNS"

now() { date +%s%N; }
# cpu_ticks prints "busy total" jiffies of the whole machine; busy_pct turns
# two of them into the share of all cores that was busy in between (other
# processes on the machine count too: that is the point, it shows
# saturation).
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
busy_pct() {
	local b0 t0 b1 t1
	read -r b0 t0 <<<"$1"
	read -r b1 t1 <<<"$2"
	awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" 'BEGIN { if (t > 0) printf "%.0f%%", 100 * b / t; else print "n/a" }'
}
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }
perhost() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.1f", a / n }'; }

# --- per-lab helpers ---------------------------------------------------------

# hosts prints name, address, user, port, jump, netns per line.
hosts() { jq -r '.hosts[] | [.name, .address, .user, (.port | tostring), (if .jump == "" then "-" else .jump end), .netns] | @tsv' "$LAB_DIR/lab.json"; }

# accepted counts the SSH logins every host's sshd has accepted so far (jump
# hops count on the jump host, for both tools alike).
accepted() { cat "$LAB_DIR"/hosts/*/sshd.log 2>/dev/null | grep -c 'Accepted publickey' || true; }

save_baselines() {
	mkdir -p "$OUT/base"
	local name addr user port jump ns
	while IFS=$'\t' read -r name addr user port jump ns; do
		timeout 30 ip netns exec "$ns" "$SAVE" -t filter >"$OUT/base/$name.v4"
		normalize <"$OUT/base/$name.v4" >"$OUT/base/$name.norm"
	done < <(hosts)
}

# reset loads every host's baseline back (iptables state is per network
# namespace, so ip netns exec reaches exactly that host's tables).
reset_hosts() {
	local name addr user port jump ns
	while IFS=$'\t' read -r name addr user port jump ns; do
		timeout 30 ip netns exec "$ns" "$RESTORE" <"$OUT/base/$name.v4"
	done < <(hosts)
}

# classify prints "good reverted other" over all hosts: good.v4 is live,
# the baseline is live again (a revert/rollback), or anything else.
classify() {
	local good=0 base=0 other=0 name addr user port jump ns cur
	while IFS=$'\t' read -r name addr user port jump ns; do
		cur=$(timeout 30 ip netns exec "$ns" "$SAVE" -t filter | normalize)
		if [[ $cur == "$(cat "$WORK/good.norm")" ]]; then
			good=$((good + 1))
		elif [[ $cur == "$(cat "$OUT/base/$name.norm")" ]]; then
			base=$((base + 1))
		else
			other=$((other + 1))
			printf '%s\n' "$cur" >"$OUT/other-$name.$1.txt"
		fi
	done < <(hosts)
	echo "$good $base $other"
}

write_ansible_inventory() {
	local inv=$OUT/hosts.ini name addr user port jump ns extra
	{
		echo "[lab]"
		while IFS=$'\t' read -r name addr user port jump ns; do
			extra=""
			[[ $jump != - ]] && extra=" -o ProxyJump=$jump"
			printf '%s ansible_host=%s ansible_user=%s ansible_port=%s ansible_ssh_private_key_file=%s ansible_ssh_common_args="-F %s -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes%s"\n' \
				"$name" "$addr" "$user" "$port" "$LAB_DIR/id_ed25519" "$LAB_DIR/ssh_config" "$LAB_DIR/known_hosts" "$extra"
		done < <(hosts)
	} >"$inv"
	echo "$inv"
}

# run_lifeline TAG FORKS: one timed apply; prints "wall_ns exit_code cpu_busy".
run_lifeline() {
	local tag=$1 forks=$2 out=$OUT/lifeline-$1.json t0 t1 c0 rc=0
	c0=$(cpu_ticks)
	t0=$(now)
	timeout 900 "$LL" -i "$LAB_DIR/inventory.yaml" apply all "$RULESET" --forks "$forks" --json \
		>"$out" 2>"$OUT/lifeline-$tag.err" || rc=$?
	t1=$(now)
	echo "$((t1 - t0)) $rc $(busy_pct "$c0" "$(cpu_ticks)")"
}

# run_ansible TAG FORKS WINDOW: one timed playbook run; prints "wall_ns exit_code cpu_busy".
run_ansible() {
	local tag=$1 forks=$2 window=$3 inv=$OUT/hosts.ini t0 t1 c0 rc=0
	mkdir -p "$WORK/ansible-$tag/cp" "$WORK/ansible-$tag/tmp"
	c0=$(cpu_ticks)
	t0=$(now)
	ANSIBLE_STDOUT_CALLBACK=json \
		ANSIBLE_HOST_KEY_CHECKING=True \
		ANSIBLE_PIPELINING=True \
		ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
		ANSIBLE_RETRY_FILES_ENABLED=False \
		ANSIBLE_SSH_CONTROL_PATH_DIR="$WORK/ansible-$tag/cp" \
		ANSIBLE_LOCAL_TEMP="$WORK/ansible-$tag/tmp" \
		ANSIBLE_CONFIG="$WORK/ansible.cfg" \
		timeout 1800 ansible-playbook -i "$inv" -f "$forks" "$PLAYBOOK" \
		-e "ruleset=$RULESET" -e "window=$window" \
		>"$OUT/ansible-$tag.json" 2>"$OUT/ansible-$tag.err" || rc=$?
	t1=$(now)
	echo "$((t1 - t0)) $rc $(busy_pct "$c0" "$(cpu_ticks)")"
}

# ansible_summary TAG: "ok failed rolled_back unreachable" for the apply task.
ansible_summary() {
	jq -e .stats "$OUT/ansible-$1.json" >/dev/null 2>&1 || {
		echo "? ? ? ?"
		return
	}
	jq -r '
	  [.plays[0].tasks[] | select(.task.name == "apply it with rollback") | .hosts | to_entries[] | .value] as $r
	  | [.stats | to_entries[] | select(.value.unreachable > 0)] as $u
	  | [($r | map(select((.failed // false) | not)) | length),
	     ($r | map(select(.failed // false)) | length),
	     ($r | map(select((.msg // "") | test("rolled back"))) | length),
	     ($u | length)] | @tsv' "$OUT/ansible-$1.json" 2>/dev/null || echo "? ? ? ?"
}

# --- the runs ------------------------------------------------------------------

mkdir -p "$RESULTS_DIR"
printf '# empty: bench/run.sh sets everything through ANSIBLE_* variables\n[defaults]\n' >"$WORK/ansible.cfg"
ROWS=()
DETAILS=()
LL1="" LL1W=""
for n in $SIZES; do
	forks=$((n < FORK_CAP ? n : FORK_CAP))
	LAB_DIR=$WORK/l$n
	OUT=$WORK/out-$n # outside the lab folder: lab down removes that
	log "N=$n: lab up ($BACKEND)"
	t0=$(now)
	timeout 600 "$LL" lab up --dir "$LAB_DIR" --hosts "$n" --backend "$BACKEND" >"$WORK/labup-$n.log" 2>&1 ||
		{
			cat "$WORK/labup-$n.log" >&2
			die "lab up with $n hosts failed"
		}
	labup=$(secs $(($(now) - t0)))
	mkdir -p "$OUT"
	save_baselines
	write_ansible_inventory >/dev/null

	load0=$(cut -d' ' -f1-3 /proc/loadavg)

	# 1. lifeline, cold (the helper is uploaded once per host), then warm.
	log "N=$n: lifeline apply (forks $forks)"
	c0=$(accepted)
	read -r ll_ns ll_rc ll_cpu < <(run_lifeline cold "$forks")
	ll_conns=$(($(accepted) - c0))
	read -r ll_good ll_base ll_other < <(classify lifeline-cold)
	ll_json=$OUT/lifeline-cold.json
	if jq -e '.results' "$ll_json" >/dev/null 2>&1; then
		ll_confirmed=$(jq '[.results[] | select(.outcome == "confirmed")] | length' "$ll_json")
		ll_outcomes=$(jq -r '[.results[].outcome] | group_by(.) | map("\(.[0])=\(length)") | join(",")' "$ll_json")
		ll_selfconn=$(jq '[.results[].ssh_connections] | add' "$ll_json")
		ll_rt=$(jq '[.results[].round_trips] | add' "$ll_json")
		ll_up=$(jq '[.results[].bytes_uploaded] | add' "$ll_json")
	else
		ll_confirmed=0 ll_outcomes="no-json(rc=$ll_rc)" ll_selfconn=0 ll_rt=0 ll_up=0
		log "lifeline printed no JSON: $(head -c 600 "$OUT/lifeline-cold.err")"
	fi
	ll_false=$((n - ll_confirmed))
	warm_best="" warm_cpu="-"
	for w in $(seq 1 "$WARM"); do
		reset_hosts
		read -r w_ns w_rc w_cpu < <(run_lifeline "warm$w" "$forks")
		read -r w_good w_base w_other < <(classify "lifeline-warm$w")
		[[ $w_good == "$n" && $w_rc == 0 ]] || log "N=$n: warm run $w: rc=$w_rc good=$w_good reverted=$w_base other=$w_other"
		if [[ -z $warm_best || $w_ns -lt $warm_best ]]; then warm_best=$w_ns warm_cpu=$w_cpu; fi
	done
	if [[ -z $LL1 ]]; then LL1=$ll_ns LL1W=$warm_best; fi

	# 2. back to the baseline, 3. Ansible with the long window.
	reset_hosts
	log "N=$n: ansible-playbook (forks $forks, window ${LONG_WINDOW}s)"
	c0=$(accepted)
	read -r an_ns an_rc an_cpu < <(run_ansible long "$forks" "$LONG_WINDOW")
	an_conns=$(($(accepted) - c0))
	read -r an_good an_base an_other < <(classify ansible-long)
	read -r an_ok an_failed an_rb an_unr < <(ansible_summary long)

	# ... and once more with the short window, to count its false rollbacks.
	sh_ns=0 sh_cpu="-" sh_good="-" sh_base="-" sh_other="-" sh_rb="-" sh_failed="-"
	if [[ $SHORT_WINDOW != 0 ]]; then
		reset_hosts
		log "N=$n: ansible-playbook (forks $forks, window ${SHORT_WINDOW}s)"
		read -r sh_ns sh_rc sh_cpu < <(run_ansible short "$forks" "$SHORT_WINDOW")
		read -r sh_good sh_base sh_other < <(classify ansible-short)
		read -r sh_ok sh_failed sh_rb sh_unr < <(ansible_summary short)
	fi

	row=$(printf '| %s | %s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s | %s | %s | %s | %s | %s |' \
		"$n" "$(secs "$ll_ns")" "$(secs "$warm_best")" "$(secs "$an_ns")" "$(ratio "$an_ns" "$ll_ns")" \
		"$(ratio "$ll_ns" "$LL1")" "$(ratio "$warm_best" "$LL1W")" \
		"$ll_false" "$((n - ll_good))" "$((n - an_good))" "$an_rb" \
		"$(secs "$sh_ns")" "$sh_base/$sh_rb" \
		"$(perhost "$ll_conns" "$n")" "$(perhost "$an_conns" "$n")" \
		"$(perhost "$ll_rt" "$n")" "$(perhost "$ll_up" "$n")")
	ROWS+=("$row")
	DETAILS+=("- N=$n: load average before the runs ${load0}, after $(cut -d' ' -f1-3 /proc/loadavg); lab up ${labup}s; forks $forks; machine CPU busy: lifeline cold $ll_cpu, warm $warm_cpu, ansible $an_cpu, ansible ${SHORT_WINDOW}s $sh_cpu; lifeline rc=$ll_rc outcomes [$ll_outcomes], live: good=$ll_good reverted=$ll_base other=$ll_other, self-reported ssh connections/host $(perhost "$ll_selfconn" "$n"); ansible (${LONG_WINDOW}s) rc=$an_rc ok=$an_ok failed=$an_failed rolled_back=$an_rb unreachable=$an_unr, live: good=$an_good reverted=$an_base other=$an_other; ansible (${SHORT_WINDOW}s) live: good=$sh_good reverted=$sh_base other=$sh_other, failed=$sh_failed rolled_back=$sh_rb")
	log "N=$n: ${row}"
	mkdir -p "$RAW/n$n"
	cp "$OUT"/*.json "$OUT"/*.err "$OUT"/*.ini "$RAW/n$n/" 2>/dev/null || true
	cp "$OUT"/other-* "$RAW/n$n/" 2>/dev/null || true

	log "N=$n: lab down"
	timeout 120 "$LL" lab down --dir "$LAB_DIR" >&2 || die "lab down $LAB_DIR failed"
	LAB_DIR=""
done

{
	echo "# lifeline vs Ansible iptables_state — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $(nproc) cores, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME"). Backend: $BACKEND on every host."
	echo "Ansible: $ANSIBLE_VERSION, community.general $CG_VERSION (pipelining on, no fact gathering, ControlPersist default)."
	echo "Ruleset: testdata/rulesets/good.v4. Forks: min(N, $FORK_CAP) for both tools. lifeline: default --confirm-timeout (60s)."
	echo "Ansible rollback window (async): ${LONG_WINDOW}s; short-window run: ${SHORT_WINDOW}s."
	echo
	echo "| N | lifeline s (cold) | lifeline s (warm) | ansible s | ansible/lifeline | lifeline N/1 (cold) | lifeline N/1 (warm) | lifeline not confirmed / not live | ansible not live / rolled back | ansible ${SHORT_WINDOW}s-window s | ${SHORT_WINDOW}s: reverted live / rolled back | sshd logins/host lifeline | sshd logins/host ansible | round trips/host lifeline | bytes uploaded/host lifeline (cold) |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	echo "Details:"
	printf '%s\n' "${DETAILS[@]}"
} >"$RESULTS"
cat "$RESULTS"
log "results: $RESULTS"
