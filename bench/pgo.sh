#!/usr/bin/env bash
# Builds baton-coordinator and baton-worker optimised for the code their requests run:
#
#  1. PGO: built with instrumentation, run through baton-bench's scenarios to record which code
#     runs and how often, then built again with that profile (hot paths inlined and laid out
#     together, cold code moved aside);
#  2. BOLT (when llvm-bolt is there): the PGO binaries, instrumented by llvm-bolt and run through
#     the same scenarios, then rewritten with their hot functions and blocks packed together.
#
# An idle coordinator's and worker's latency is mostly code fetched back into cold caches, so
# this is where it shows: bench/PERFORMANCE.md has the A/Bs.
#
#   bench/pgo.sh               # binaries in target/pgo/bin: baton-coordinator, baton-worker
#   bench/pgo.sh --no-bolt     # PGO only
#   BATON_BENCH_BIN_DIR=target/pgo/bin target/release/baton-bench cancel-latency   # measure them
#
# Needs llvm-profdata of rustc's LLVM major version (`rustc -vV`): on Debian `apt-get install
# llvm-NN` (bookworm-security has llvm-22, the LLVM of Rust 1.95), or `rustup component add
# llvm-tools`, or name it in LLVM_PROFDATA. BOLT needs llvm-bolt and merge-fdata (Debian:
# `apt-get install bolt-NN`; any recent version), or name their directory in LLVM_BOLT_DIR.
# Exits with 3 when it finds no such llvm-profdata (CI then skips this build), 1 on other errors.
# Two release builds (fat LTO) and two training runs: about 12 minutes on 2 cores. Scratch
# space: target/pgo-train, target/pgo-use.
set -euo pipefail
cd "$(dirname "$0")/.."

bolt=yes
for arg in "$@"; do
  case "$arg" in
    --no-bolt) bolt=no ;;
    *) echo "usage: $0 [--no-bolt]" >&2; exit 2 ;;
  esac
done

host=$(rustc -vV | sed -n 's/^host: //p')
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
if [ -z "$host" ] || [ -z "$llvm_major" ]; then
  echo "pgo.sh: cannot read the host or the LLVM version from \`rustc -vV\`" >&2
  exit 1
fi

# The first llvm-profdata whose major version is rustc's (an older one cannot read the
# profiles rustc's instrumentation writes).
profdata_major() { "$1" --version 2>/dev/null | sed -n 's/.*LLVM version \([0-9]*\).*/\1/p' | head -1; }
profdata=""
for candidate in "${LLVM_PROFDATA:-}" \
  "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" \
  "llvm-profdata-$llvm_major" "/usr/lib/llvm-$llvm_major/bin/llvm-profdata" llvm-profdata; do
  [ -n "$candidate" ] || continue
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if [ "$(profdata_major "$path")" = "$llvm_major" ]; then
    profdata=$path
    break
  fi
done
if [ -z "$profdata" ]; then
  echo "pgo.sh: no llvm-profdata of LLVM $llvm_major (rustc's) found." >&2
  echo "  install one: apt-get install llvm-$llvm_major, or rustup component add llvm-tools;" >&2
  echo "  or name it: LLVM_PROFDATA=/path/to/llvm-profdata bench/pgo.sh" >&2
  exit 3
fi
echo "==> llvm-profdata: $profdata"

bolt_dir=""
if [ "$bolt" = yes ]; then
  for dir in "${LLVM_BOLT_DIR:-}" "/usr/lib/llvm-$llvm_major/bin" \
    "$(dirname "$(command -v llvm-bolt 2>/dev/null || echo /nonexistent/x)")"; do
    if [ -n "$dir" ] && [ -x "$dir/llvm-bolt" ] && [ -x "$dir/merge-fdata" ]; then
      bolt_dir=$dir
      break
    fi
  done
  if [ -z "$bolt_dir" ]; then
    echo "pgo.sh: no llvm-bolt and merge-fdata found; building with PGO only." >&2
    echo "  for BOLT too: apt-get install bolt-$llvm_major, or LLVM_BOLT_DIR=/path/to/bin" >&2
    bolt=no
  else
    echo "==> llvm-bolt: $bolt_dir/llvm-bolt"
  fi
fi

bins=(baton-coordinator baton-worker)
train_dir=$(pwd)/target/pgo-train
rm -rf "$train_dir/profiles" "$train_dir/bolt" target/pgo/bin
mkdir -p "$train_dir/profiles" target/pgo/bin

# --target: RUSTFLAGS then reach only the binaries, not build scripts and proc macros.
build() {
  local dir=$1 flags=$2
  RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --quiet --target "$host" \
    --target-dir "$dir" -p baton-coordinator -p baton-worker
}

# Runs baton-bench's scenarios against the binaries in $1: what the profile is made of.
train() {
  local dir=$1 scenario
  for scenario in "cancel-latency --runs 20" "dispatch-latency --runs 20" \
    "throughput --executions 100 --simulated-executions 1000" \
    "rapid-push --pushes 4 --interval 100ms --job 1s"; do
    echo "    baton-bench $scenario"
    # shellcheck disable=SC2086 # the scenario is its words
    if ! BATON_BENCH_BIN_DIR=$dir target/release/baton-bench $scenario \
      >"$train_dir/train.log" 2>&1; then
      echo "pgo.sh: baton-bench $scenario failed; its output:" >&2
      cat "$train_dir/train.log" >&2
      exit 1
    fi
  done
}

echo "==> building baton-bench (plain release), which runs the training"
cargo build --release --quiet -p baton-bench

echo "==> PGO: instrumented build (target/pgo-train)"
build "$train_dir" "-Cprofile-generate=$train_dir/profiles"
echo "==> PGO: training"
train "$train_dir/$host/release"
if ! ls "$train_dir"/profiles/*.profraw >/dev/null 2>&1; then
  echo "pgo.sh: the training wrote no profile into $train_dir/profiles" >&2
  exit 1
fi
"$profdata" merge -o "$train_dir/merged.profdata" "$train_dir/profiles"
rm -rf "$train_dir/profiles"

echo "==> PGO: optimised build (target/pgo-use)"
flags="-Cprofile-use=$train_dir/merged.profdata"
# BOLT rewrites a binary's code only where the linker kept the relocations.
if [ "$bolt" = yes ]; then
  flags="$flags -Clink-arg=-Wl,--emit-relocs"
fi
build target/pgo-use "$flags"
built=target/pgo-use/$host/release

if [ "$bolt" = yes ]; then
  echo "==> BOLT: instrumenting the PGO binaries"
  mkdir -p "$train_dir/bolt/bin" "$train_dir/bolt/profiles"
  for bin in "${bins[@]}"; do
    "$bolt_dir/llvm-bolt" "$built/$bin" -instrument -o "$train_dir/bolt/bin/$bin" \
      --instrumentation-file="$train_dir/bolt/profiles/$bin.fdata" \
      --instrumentation-file-append-pid >"$train_dir/bolt/$bin-instrument.log" 2>&1 || {
      echo "pgo.sh: llvm-bolt could not instrument $bin; see $train_dir/bolt/$bin-instrument.log" >&2
      exit 1
    }
  done
  echo "==> BOLT: training"
  train "$train_dir/bolt/bin"
  for bin in "${bins[@]}"; do
    # One file per process (every supervisor is one): merged, then dropped.
    if ! ls "$train_dir/bolt/profiles/$bin.fdata."* >/dev/null 2>&1; then
      echo "pgo.sh: the training wrote no BOLT profile for $bin" >&2
      exit 1
    fi
    "$bolt_dir/merge-fdata" "$train_dir/bolt/profiles/$bin.fdata."* \
      >"$train_dir/bolt/$bin.fdata" 2>/dev/null
    rm -f "$train_dir/bolt/profiles/$bin.fdata."*
    echo "==> BOLT: rewriting $bin"
    "$bolt_dir/llvm-bolt" "$built/$bin" -o "target/pgo/bin/$bin" \
      -data="$train_dir/bolt/$bin.fdata" -reorder-blocks=ext-tsp -reorder-functions=cdsort \
      -split-functions -split-all-cold -split-eh -icf=safe -use-gnu-stack \
      >"$train_dir/bolt/$bin-optimise.log" 2>&1 || {
      echo "pgo.sh: llvm-bolt could not rewrite $bin; see $train_dir/bolt/$bin-optimise.log" >&2
      exit 1
    }
  done
else
  for bin in "${bins[@]}"; do
    cp "$built/$bin" target/pgo/bin/
  done
fi

echo "==> done: target/pgo/bin/baton-coordinator, target/pgo/bin/baton-worker"
echo "    measure them: BATON_BENCH_BIN_DIR=target/pgo/bin target/release/baton-bench cancel-latency"
