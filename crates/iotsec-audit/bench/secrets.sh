#!/bin/sh
# Secret scanner over a generated 200 MiB mixed tree, next to a grep baseline in the same run.
#   sh crates/iotsec-audit/bench/secrets.sh [DIR]
# Baseline: GNU grep -r over the same tree with the scanner's prefilter literals (one pass,
# case-insensitive, binary files as text, counting matching lines) -- what a grep-based
# firmware walker (firmwalker-style) costs before any regex work.
set -eu
DIR=${1:-/tmp/iotsec-secretbench}
cd "$(dirname "$0")/../../.."
cargo build --release -q -p iotsec-audit --example secretbench
nice -n 10 target/release/examples/secretbench "$DIR" 200 1
nice -n 10 target/release/examples/secretbench "$DIR" 200 2
PATTERNS=$(mktemp)
printf '%s\n' 'PRIVATE KEY-----' AKIA ASIA '://' wifi.begin wifi wlan wpa psk wpa_passphrase \
  username_pw_set passw pwd passphrase secret apikey api_key hmac_key auth_token access_token \
  private_key signing_key master_key setinsecure tls_insecure_set cert_none verify \
  insecureskipverify rejectunauthorized check_hostname http:// telnetd /bin/sh 'openssl ' \
  arduinoota esp_https_ota update.begin httpupdate swupdate rauc mender iotsec ota_update \
  firmware_update verify_signature > "$PATTERNS"
cat "$DIR"/src/module0/file0.c > /dev/null
for run in 1 2 3; do
  # Output to a file, not /dev/null: GNU grep stops at the first match when output is discarded.
  /usr/bin/time -f "grep -rFaic -f literals (1 thread): %e s" nice -n 10 grep -rFaic -f "$PATTERNS" "$DIR" > "$PATTERNS.out" || true
done
rm -f "$PATTERNS" "$PATTERNS.out"
