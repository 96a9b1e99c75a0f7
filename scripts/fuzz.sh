#!/bin/bash
# make fuzz: every fuzz target of the repository, each for FUZZTIME (5s by
# default; FUZZTIME=5m for a long run). A crasher is written to the
# package's testdata/fuzz/ and fails the run: fix the product, keep it.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-5s}
n=0
while read -r file name; do
	pkg=./$(dirname "$file")
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/lifeline-fuzz.$$ 2>&1 || { cat /tmp/lifeline-fuzz.$$; rm -f /tmp/lifeline-fuzz.$$; echo "fuzz: $pkg $name FAILED" >&2; exit 1; }
	echo "fuzz: $pkg $name: $(grep -o 'execs: [0-9]*' /tmp/lifeline-fuzz.$$ | tail -1) in $t"
	n=$((n + 1))
done < <(git ls-files '*_test.go' | xargs grep -H '^func Fuzz' | sed -E 's/^([^:]*):func (Fuzz[A-Za-z0-9_]*).*/\1 \2/')
rm -f /tmp/lifeline-fuzz.$$
echo "fuzz: $n targets, no crash"
