#!/bin/sh
# Side-by-side load comparison of Wren, Prosody and ejabberd on this
# machine (docs/performance.md). Builds wren and wren-bench, then runs
# `wren-bench compare`, which starts each server in turn from a temporary
# configuration on a free loopback port, runs the phases against it and
# stops it again. Extra arguments go to `wren-bench compare`, e.g.
#   bench/compare.sh --servers wren,prosody --reps 5
# BENCH_QUICK=1 runs a small version (about 3 minutes instead of 15-20).
# Needs the Debian packages prosody and ejabberd for those two columns.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${BENCH_OUT:-bench/results/latest.md}
mkdir -p bin
$GO build -o bin/wren ./cmd/wren
$GO build -o bin/wren-bench ./cmd/wren-bench
# The idle phase holds thousands of connections in the tool and in the
# server (which inherits this limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
quick=
[ "${BENCH_QUICK:-}" = 1 ] && quick=--quick
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec bin/wren-bench compare --wren bin/wren --out "$OUT" $quick "$@"
