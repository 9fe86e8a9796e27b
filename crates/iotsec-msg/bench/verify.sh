#!/usr/bin/env bash
# MSG benchmark: whole-process `iotsec msg verify --jsonl` over a file of ~250-byte 8-field
# telemetry messages, against the Python reference verifying the same file in the same run,
# with raw HMAC-SHA256 over the same bytes (same line reading) as the ceiling. Also v2 (with
# the replay window) and signing. Every process is pinned to one core (taskset) when possible.
#
# Usage (from the repository root): nice -n 10 crates/iotsec-msg/bench/verify.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../../.."
n=${1:-1000000}
here=crates/iotsec-msg/bench
ref=crates/iotsec-msg/tests/reference.py
cargo build --release --quiet -p iotsec-cli --bin iotsec
cargo build --release --quiet -p iotsec-msg --example msgbench
bin=target/release/iotsec
mb=target/release/examples/msgbench
pin=""
if command -v taskset >/dev/null 2>&1; then pin="taskset -c 0"; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'your-32-byte-secret-key-here!!!!' >"$tmp/ref.key"
printf 'bench master key for iotsec msg' >"$tmp/master.key"
keyhex=$(python3 -c "print(open('$tmp/ref.key','rb').read().hex())")

python3 "$here/gen_payloads.py" "$n" >"$tmp/payloads.jsonl"
python3 "$here/gen_payloads.py" "$n" v2 >"$tmp/payloads-v2.jsonl"

# seconds of wall time of a command (stdin from $1, stdout discarded)
wall() {
  local input=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" <"$input" >/dev/null 2>"$tmp/err" || true
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}
rate() { python3 -c "print(f'{$n / $1:,.0f}')"; }

t_sign=$(wall "$tmp/payloads.jsonl" $pin "$bin" msg sign --jsonl --key-file "$tmp/ref.key")
$pin "$bin" msg sign --jsonl --key-file "$tmp/ref.key" <"$tmp/payloads.jsonl" >"$tmp/v1.jsonl"
bytes=$(python3 -c "import os; print(round(os.path.getsize('$tmp/v1.jsonl') / $n))")

t_v1=$(wall "$tmp/v1.jsonl" $pin "$bin" msg verify --jsonl --key-file "$tmp/ref.key")
grep -q "rejected 0" "$tmp/err" || { cat "$tmp/err"; echo "verification failed" >&2; exit 2; }
t_hmac=$(wall "$tmp/v1.jsonl" $pin "$mb" hmac "$tmp/ref.key")
t_py=$(wall /dev/null $pin python3 "$ref" bench "$keyhex" "$tmp/v1.jsonl")
py_out=$($pin python3 "$ref" bench "$keyhex" "$tmp/v1.jsonl")
py_ok=${py_out%% *}
[ "$py_ok" = "$n" ] || { echo "python accepted $py_ok of $n" >&2; exit 2; }

dkey=$("$bin" msg derive-key --master-file "$tmp/master.key" --device dev1)
ts=1700000000000
$pin "$bin" msg sign --jsonl --v2 --device dev1 --seq 0 --ts $ts --key-hex "$dkey" \
  <"$tmp/payloads-v2.jsonl" >"$tmp/v2.jsonl"
bytes2=$(python3 -c "import os; print(round(os.path.getsize('$tmp/v2.jsonl') / $n))")
t_v2=$(wall "$tmp/v2.jsonl" $pin "$bin" msg verify --jsonl --v2 --master-file "$tmp/master.key" \
  --device dev1 --now $ts)
grep -q "rejected 0" "$tmp/err" || { cat "$tmp/err"; echo "v2 verification failed" >&2; exit 2; }
t_py2=$(wall /dev/null $pin python3 "$ref" bench "$dkey" "$tmp/v2.jsonl")

echo "messages: $n; v1 ~${bytes} bytes/message, v2 ~${bytes2} bytes/message (one core: ${pin:-unpinned})"
printf '%-44s %8s s %12s msg/s\n' \
  "raw HMAC-SHA256 over the same lines (ceiling)" "$t_hmac" "$(rate "$t_hmac")" \
  "iotsec msg verify --jsonl (v1)" "$t_v1" "$(rate "$t_v1")" \
  "python3 reference verify (v1, whole process)" "$t_py" "$(rate "$t_py")" \
  "iotsec msg verify --jsonl --v2 (window)" "$t_v2" "$(rate "$t_v2")" \
  "python3 reference verify (v2 messages)" "$t_py2" "$(rate "$t_py2")" \
  "iotsec msg sign --jsonl (v1)" "$t_sign" "$(rate "$t_sign")"
python3 -c "print(f'v1 verify vs python: {$t_py / $t_v1:.1f}x; v2 vs python: {$t_py2 / $t_v2:.1f}x; v1 verify = {$t_hmac / $t_v1 * 100:.0f}% of the raw HMAC ceiling')"
echo "in-process (no I/O):"
"$mb" inproc "$tmp/ref.key" "$tmp/v1.jsonl"
