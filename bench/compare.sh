#!/usr/bin/env bash
# bench/compare.sh: one benchmark script on an earlier commit and on this
# tree, in the same run, interleaved, to show that a change did not make a
# figure worse.  Each build is installed in turn (as bench/run installs this
# tree), so nothing else may use the machine's PostgreSQL meanwhile.  Run as
# root, from a git checkout.
#   bench/compare.sh <git-ref> <script> [rounds]
#   e.g. bench/compare.sh a5e2ba7 http_dispatch 2     (the landed tree of 2026-11-26)
# Env settings of the script pass through (N, LOAD_RATE=0 ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
[ $# -ge 2 ] || { echo "usage: bench/compare.sh <git-ref> <script> [rounds]" >&2; exit 2; }
ref=$1
script=$2
rounds=${3:-2}
[ -x "$here/$script.sh" ] || { echo "no bench/$script.sh" >&2; exit 2; }
"$here/../test/install-deps" --host

builds=$(mktemp -d /tmp/txoutbox-bench-compare.XXXXXX)
trap 'rm -rf "$builds"' EXIT
mkdir "$builds/old" "$builds/new"
git -C "$BENCH_SRC" archive "$ref" | tar -x -C "$builds/old"
tar -C "$BENCH_SRC" --exclude=.git --exclude='tmp_check*' --exclude=results -cf - . | tar -C "$builds/new" -xf -
for b in old new; do
	bench_log "building $b"
	(cd "$builds/$b" && make -s with_llvm=no clean >/dev/null && make -s with_llvm=no >/dev/null)
done

install_build() {
	local lib
	lib=$(pg_config --pkglibdir)
	rm -f "$lib/txoutbox.so" /usr/share/postgresql/*/extension/txoutbox--*.sql
	(cd "$builds/$1" && make -s with_llvm=no install >/dev/null)
}

results=$(mktemp /tmp/txoutbox-bench-compare-results.XXXXXX)
for r in $(seq 1 "$rounds"); do
	for b in old new; do
		install_build "$b"
		bench_log "round $r: $script.sh on $b ($([ $b = old ] && echo "$ref" || echo this tree))"
		: >"$results.$b.$r"
		BENCH_RESULTS=$results.$b.$r TXOUTBOX_BENCH_INSTALLED=1 "$here/$script.sh" >/dev/null
		sed "s/^/$b $r\t/" "$results.$b.$r" >>"$results"
		rm -f "$results.$b.$r"
	done
done
install_build new

echo
echo "bench/$script.sh, $rounds rounds interleaved: old = $ref, new = this tree ($(date -u '+%Y-%m-%d %H:%M UTC'))"
cut -f1,2,3,4,9 "$results" | sort -t$'\t' -k2,2 -k1,1 | column -t -s$'\t'
rm -f "$results"
