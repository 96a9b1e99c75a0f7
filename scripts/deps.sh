#!/usr/bin/env bash
# Installs the Debian packages lifeline's lab and tests need (root, apt).
# Idempotent: does nothing when everything is there already.
set -euo pipefail
pkgs=(openssh-server openssh-client iptables nftables iproute2 sudo util-linux procps ipset conntrack tmux debootstrap mmdebstrap systemd-container spin gcc ansible)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "lifeline: missing packages: ${missing[*]}: install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
# The lab runs its own sshds in namespaces: keep the package scripts from
# starting a system sshd in the root namespace.
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
trap '[ $created = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
