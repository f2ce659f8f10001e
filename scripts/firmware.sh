#!/usr/bin/env bash
# Builds and runs every firmware example on its QEMU board, runs the same
# example on the host, and checks that the two agree: the same accuracy (and
# for int8 the same integer logits, hashed), and for training a final loss
# within 1e-3. Prints each RESULT line and, with
# --sizes, the sections of each ELF (needs `rustup component add llvm-tools`).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=false
[ "${1:-}" = "--sizes" ] && sizes=true

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

status=0
for example in m4_infer m33_infer m0_infer m4_infer_int8 m0_infer_int8 m4_train m4_train_sgd m4_finetune; do
    case "$example" in
        m4_*) alias=m4 target=thumbv7em-none-eabihf ;;
        m33_*) alias=m33 target=thumbv8m.main-none-eabihf ;;
        m0_*) alias=m0 target=thumbv6m-none-eabi ;;
    esac
    echo "--- $example on $target (QEMU)"
    board_log=$(cargo "$alias" "$example" 2>/dev/null) || {
        printf '%s\n' "$board_log"
        echo "FAIL: $example exited non-zero on the board"
        status=1
        continue
    }
    printf '%s\n' "$board_log"
    host_log=$(cargo run --quiet --release --example "$example") || { echo "FAIL: $example exited non-zero on the host"; status=1; continue; }
    board=$(grep '^RESULT ' <<<"$board_log" | tail -n 1)
    host=$(grep '^RESULT ' <<<"$host_log" | tail -n 1)
    [ -n "$board" ] || { echo "FAIL: $example printed no RESULT line"; status=1; continue; }
    for key in accuracy accuracy_after correct logits_hash; do
        b=$(field "$board" "$key"); h=$(field "$host" "$key")
        if [ "$b" != "$h" ]; then echo "FAIL: $example $key: board $b, host $h"; status=1; fi
    done
    b=$(field "$board" final_loss); h=$(field "$host" final_loss)
    if [ -n "$b$h" ] && ! awk -v b="$b" -v h="$h" 'BEGIN { d = b - h; exit !(d < 1e-3 && d > -1e-3) }'; then
        echo "FAIL: $example final_loss: board $b, host $h"; status=1
    fi
    if $sizes; then
        size=$(ls ~/.rustup/toolchains/*/lib/rustlib/*/bin/llvm-size | head -n 1)
        "$size" -A "target/$target/release/examples/$example" | grep -E '^\.(text|rodata|data|bss) '
    fi
done
exit $status
