#!/usr/bin/env bash
# The lifeline demo: a 3-host lab (nft, iptables-nft and iptables-legacy;
# one host behind a jump host, one reached as a sudo user), a guarded change
# that confirms, and one that would lock everybody out: refused by the
# preflight, then forced, and reverted by the host itself.
# KEEP=1 leaves the lab up afterwards (remove it with `make demo-down`).
set -euo pipefail
cd "$(dirname "$0")/.."
LL=bin/lifeline
R=testdata/rulesets
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "lab up: 3 disposable hosts with real sshds in their own namespaces"
$LL lab up --dir lab --hosts 3
[ "${KEEP:-0}" = 1 ] || trap '$LL lab down --dir lab' EXIT
export LIFELINE_INVENTORY=lab/inventory.yaml

step "run: a plain command on every host (h03 only through the jump host h01; h02 logs in as ops + sudo)"
$LL run all -- hostname

step "apply --dry-run: what would change on h01"
$LL apply h01 $R/good.nft --dry-run

step "apply: a good ruleset on every host, each in its own backend's format"
$LL apply h01 $R/good.nft --confirm-timeout 30s
$LL apply 'all:!h01' $R/good.v4 --confirm-timeout 30s

step "preflight: would a ruleset that drops every NEW ssh connection lock you out? (the iptables-apply trap)"
$LL preflight $R/dropnew.nft --for h01 || echo "(exit $?: a certain lockout, with the rule that decides it)"

step "apply: the same ruleset is refused before anything changes"
$LL apply h01 $R/dropnew.nft --confirm-timeout 10s || echo "(exit $?: refused by the preflight, nothing changed)"

step "apply --force: applied anyway, and the revert still catches it"
echo "the session that applies it keeps working; the fresh confirm connection cannot get in, so the host reverts"
$LL apply h01 $R/dropnew.nft --confirm-timeout 10s --force || echo "(exit $?: the host reverted, as it should)"

step "after the revert, a fresh connection works again"
$LL run h01 -- nft list ruleset
