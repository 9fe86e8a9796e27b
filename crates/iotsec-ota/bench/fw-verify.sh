#!/usr/bin/env bash
# Benchmark: whole-process `iotsec fw verify` on a 256 MiB bundle against `openssl dgst -sha256`
# (and coreutils `sha256sum`, for context) on the same image, in the same run, interleaved.
# Then a whole local update of a 64 MiB image: install (write + verify + re-read) + boot
# (trial verification) + confirm, against `cp` of the same bundle as the I/O baseline.
#
#   cargo build --release -p iotsec-cli
#   nice -n 10 crates/iotsec-ota/bench/fw-verify.sh [runs]
#
# Prints medians and the ratios that go into BENCHMARKS.md. Files live in a temp dir that is
# removed at exit.
set -euo pipefail
BIN=${IOTSEC:-target/release/iotsec}
RUNS=${1:-7}
command -v openssl >/dev/null || { echo "needs openssl (apt-get install openssl)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "build first: cargo build --release -p iotsec-cli" >&2; exit 2; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
head -c $((256 << 20)) /dev/urandom > "$dir/image"
"$BIN" fw keygen --out "$dir/k" > /dev/null
"$BIN" fw sign --key "$dir/k.key" --version 1.0.0 --security-counter 1 --hw bench \
    "$dir/image" -o "$dir/image.fw" > /dev/null
cat "$dir/image" "$dir/image.fw" > /dev/null # warm the page cache

# microseconds of one run of "$@"
run_us() {
    local s e
    s=$(date +%s%N)
    "$@" > /dev/null
    e=$(date +%s%N)
    echo $(((e - s) / 1000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours=() ossl=() coreutils=()
for _ in $(seq "$RUNS"); do
    ours+=("$(run_us "$BIN" fw verify --trust "$dir/k.pub" "$dir/image.fw")")
    ossl+=("$(run_us openssl dgst -sha256 "$dir/image")")
    coreutils+=("$(run_us sha256sum "$dir/image")")
done
o=$(printf '%s\n' "${ours[@]}" | median)
s=$(printf '%s\n' "${ossl[@]}" | median)
c=$(printf '%s\n' "${coreutils[@]}" | median)
mbps() { awk -v us="$1" 'BEGIN {printf "%.0f", 256 * 1.048576 / (us / 1e6)}'; }
echo "sha_ni: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no); runs: $RUNS (medians)"
echo "iotsec fw verify (256 MiB bundle): $((o / 1000)) ms, $(mbps "$o") MB/s"
echo "openssl dgst -sha256 (256 MiB):    $((s / 1000)) ms, $(mbps "$s") MB/s"
echo "sha256sum (256 MiB):               $((c / 1000)) ms, $(mbps "$c") MB/s"
awk -v o="$o" -v s="$s" -v c="$c" \
    'BEGIN {printf "ratio iotsec/openssl throughput: %.2fx (target >= 0.9x); vs sha256sum: %.2fx\n", s / o, c / o}'

# Whole local update of 64 MiB: install + boot + confirm, fresh state dir each run.
head -c $((64 << 20)) /dev/urandom > "$dir/image64"
"$BIN" fw sign --key "$dir/k.key" --version 2.0.0 --security-counter 1 --hw bench \
    "$dir/image64" -o "$dir/image64.fw" > /dev/null
update() {
    rm -rf "$dir/state"
    "$BIN" fw install "$dir/image64.fw" --slots "$dir/state" --trust "$dir/k.pub" --hw bench &&
        "$BIN" fw boot --slots "$dir/state" && "$BIN" fw confirm --slots "$dir/state"
}
copy() { rm -f "$dir/copy"; cp "$dir/image64.fw" "$dir/copy" && sync "$dir/copy"; }
up=() cpy=()
for _ in $(seq "$RUNS"); do
    up+=("$(run_us update)")
    cpy+=("$(run_us copy)")
done
u=$(printf '%s\n' "${up[@]}" | median)
k=$(printf '%s\n' "${cpy[@]}" | median)
echo "local update 64 MiB (install + boot + confirm): $((u / 1000)) ms; cp + sync of the bundle: $((k / 1000)) ms"
awk -v u="$u" -v k="$k" 'BEGIN {printf "ratio update / (cp + sync): %.2fx\n", u / k}'
