#!/bin/bash
# make model: check model/lifeline.pml with spin (see docs/reliability.md).
# Every property must hold; then each mutant (a known bug put back) must
# be caught, so that a model that cannot fail never passes.
set -euo pipefail
command -v spin >/dev/null || { echo "model: spin is not installed: apt-get install spin" >&2; exit 1; }
command -v gcc >/dev/null || { echo "model: gcc is not installed: apt-get install gcc" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
props=(reachable_or_restorable confirmed_is_recorded never_confirm_a_lockout open_tx_ends)

# check DEFINE PROPERTY: 0 when the property holds, 1 when violated
check() {
	local def=$1 prop=$2
	local dir="$work/${def:-model}"
	if [ ! -x "$dir/pan" ]; then
		mkdir -p "$dir" && cp "$root/model/lifeline.pml" "$dir/"
		(cd "$dir" && spin ${def:+-D$def} -a lifeline.pml >/dev/null && gcc -O2 -DNFAIR=3 -o pan pan.c)
	fi
	local out
	out=$(cd "$dir" && ./pan -a -f -N "$prop" 2>&1)
	if grep -q 'errors: 0' <<<"$out"; then
		echo "model: ${def:-lifeline}: $prop holds ($(grep -o '[0-9]* states, stored' <<<"$out"))"
		return 0
	fi
	echo "model: ${def:-lifeline}: $prop VIOLATED"
	grep -E 'violated|acceptance cycle' <<<"$out" | head -2
	return 1
}

fail=0
for p in "${props[@]}"; do check "" "$p" || fail=1; done
# mutants: each must break a safety property
check MUTANT_CONFIRM_AFTER_DEADLINE never_confirm_a_lockout && { echo "model: the mutant without the deadline check was not caught" >&2; fail=1; }
check MUTANT_CONFIRM_WHILE_GUARD_MOVES reachable_or_restorable && { echo "model: the mutant that confirms while the guard moves was not caught" >&2; fail=1; }
[ $fail = 0 ] && echo "model: all properties hold; both mutants caught"
exit $fail
