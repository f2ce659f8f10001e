#!/usr/bin/env bash
# Builds and runs every firmware example on its QEMU board, runs the same
# example on the host, and checks that the two agree: the same accuracy (and
# for int8 the same integer logits, hashed), and for training a final loss
# within 1e-3. m4_train_256k, whose stochastic rounding parts two runs at the
# first multiply-add that rounds differently, is compared with a host build
# for baseline x86-64: no fused multiply-add there, as on the Cortex-M4, so
# its model must be the board's to the bit (same model hash). Boards: QEMU's MPS2 (Cortex-M0/M4/M33, 4 MiB of flash and RAM),
# the STM32F405 of a Netduino Plus 2 (1 MiB of flash, 128 KiB of SRAM) and
# the micro:bit's nRF51822 (256 KiB of flash, 16 KiB of RAM), each linked
# against its real memory map. Prints each RESULT line and, with --sizes, the
# sections of each ELF (with rustup's llvm-tools, which it adds). Needs
# qemu-system-arm; adds the Cortex-M targets. Exits non-zero on any failure.
#
# With --cycles, instead: for each Cortex-M4 example on the MPS2 board, its
# instructions per image (a plain run's RESULT line) and an estimate of its
# Cortex-M4 cycles per image, from QEMU's exact trace of a window of the run
# (CYCLES_SKIP instructions skipped, CYCLES_WINDOW counted; CYCLES_EXAMPLES
# picks examples) charged by the
# Technical Reference Manual's table (examples/cycles.rs), as a range; and
# the milliseconds per image that gives at 168 MHz (STM32F405) and 120 MHz
# (STM32L4R5), both with 5 flash wait states at those clocks (datasheets),
# from the low estimate with none to the high one with all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prerequisites.sh
sizes=false
[ "${1:-}" = "--sizes" ] && sizes=true
need_qemu
need_cortex_m_targets
$sizes && size=$(llvm_size)

if [ "${1:-}" = "--cycles" ]; then
    export TINYCNN_BOARD=mps2
    cargo build --quiet --release --example cycles
    skip=${CYCLES_SKIP:-2000000}
    window=${CYCLES_WINDOW:-20000000}
    echo "example instructions/image cycles/image(low..high) high+5ws ms@168MHz ms@120MHz cpi(low..high)"
    for example in ${CYCLES_EXAMPLES:-m4_infer m4_infer_deep m4_infer_int8 m4_train m4_train_deep m4_train_sgd m4_train_256k m4_finetune}; do
        elf=target/thumbv7em-none-eabihf/release/examples/$example
        log=$(cargo m4 "$example" 2>/dev/null) || { echo "FAIL: $example exited non-zero"; exit 1; }
        per_image=$(grep '^RESULT ' <<<"$log" | tail -n 1 | sed -n 's/.* instructions_per_image=\([0-9]*\).*/\1/p')
        # QEMU logs into a pipe; once the estimate has read its window, QEMU
        # is stopped (it does not stop at a closed pipe).
        fifo=$(mktemp -u)
        mkfifo "$fifo"
        qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial none \
            -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf" \
            -d in_asm,exec,nochain -D "$fifo" >/dev/null 2>&1 &
        qemu=$!
        estimate=$(target/release/examples/cycles --skip "$skip" --instructions "$window" --wait-states 5 <"$fifo") || true
        kill "$qemu" 2>/dev/null || true
        wait "$qemu" 2>/dev/null || true
        rm -f "$fifo"
        awk -v n="$per_image" -v e="$estimate" -v name="$example" 'BEGIN {
            split(e, f, /[ =]/); for (i = 1; i < length(f); i += 2) v[f[i]] = f[i + 1]
            if (v["instructions"] == 0 || n == "") { print "FAIL: " name ": no trace"; exit 1 }
            lo = n * v["cycles_low"] / v["instructions"]; hi = n * v["cycles_high"] / v["instructions"]
            hiws = n * v["cycles_high_waited"] / v["instructions"]
            printf "%s %d %.0f..%.0f %.0f %.2f..%.2f %.2f..%.2f %.3f..%.3f\n", name, n, lo, hi, hiws,
                lo / 168e3, hiws / 168e3, lo / 120e3, hiws / 120e3, lo / n, hi / n
        }' || exit 1
    done
    exit 0
fi

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

status=0
# board alias example: grouped by board, since changing TINYCNN_BOARD rebuilds.
runs=(
    "mps2 m4 m4_infer" "mps2 m4 m4_infer_deep" "mps2 m33 m33_infer" "mps2 m0 m0_infer" "mps2 m4 m4_infer_int8"
    "mps2 m0 m0_infer_int8" "mps2 m4 m4_train" "mps2 m4 m4_train_deep" "mps2 m4 m4_train_sgd" "mps2 m4 m4_train_256k" "mps2 m4 m4_finetune"
    "netduinoplus2 netduino m4_infer" "netduinoplus2 netduino m4_infer_deep" "netduinoplus2 netduino m4_infer_int8"
    "netduinoplus2 netduino m4_finetune"
    "microbit microbit microbit_infer_int8"
)
for run in "${runs[@]}"; do
    read -r board alias example <<<"$run"
    export TINYCNN_BOARD=$board
    case "$alias" in
        m4|netduino) target=thumbv7em-none-eabihf ;;
        m33) target=thumbv8m.main-none-eabihf ;;
        m0|microbit) target=thumbv6m-none-eabi ;;
    esac
    profile=release
    [ "$alias" = microbit ] && profile=tiny
    echo "--- $example on $board ($target, QEMU)"
    board_log=$(cargo "$alias" "$example" 2>/dev/null) || {
        printf '%s\n' "$board_log"
        echo "FAIL: $example exited non-zero on $board"
        status=1
        continue
    }
    printf '%s\n' "$board_log"
    if [ "$example" = m4_train_256k ]; then
        host_log=$(RUSTFLAGS="-C target-cpu=x86-64" CARGO_TARGET_DIR=target/x86-64 cargo run --quiet --release --example "$example")
    else
        host_log=$(cargo run --quiet --release --example "$example")
    fi || { echo "FAIL: $example exited non-zero on the host"; status=1; continue; }
    board_result=$(grep '^RESULT ' <<<"$board_log" | tail -n 1)
    host=$(grep '^RESULT ' <<<"$host_log" | tail -n 1)
    [ -n "$board_result" ] || { echo "FAIL: $example printed no RESULT line"; status=1; continue; }
    for key in images accuracy accuracy_after correct logits_hash model_hash; do
        b=$(field "$board_result" "$key"); h=$(field "$host" "$key")
        if [ "$b" != "$h" ]; then echo "FAIL: $example on $board $key: board $b, host $h"; status=1; fi
    done
    b=$(field "$board_result" final_loss); h=$(field "$host" final_loss)
    if [ -n "$b$h" ] && ! awk -v b="$b" -v h="$h" 'BEGIN { d = b - h; exit !(d < 1e-3 && d > -1e-3) }'; then
        echo "FAIL: $example on $board final_loss: board $b, host $h"; status=1
    fi
    if $sizes; then
        "$size" -A "target/$target/$profile/examples/$example" | grep -E '^\.(text|rodata|data|bss) '
    fi
done

# The board's trained 8-bit model leaves through its f32 export, a weight
# blob it writes to a host file over semihosting: the same bytes as the host
# run's, read by the tools, and int8 quantization keeps its accuracy.
board_blob=target/m4_train_256k-board.tcnn
echo "--- m4_train_256k's export from the board: $board_blob"
if ! cmp -s "$board_blob" target/m4_train_256k.tcnn; then
    echo "FAIL: the board's export differs from the host's"; status=1
elif evaluated=$(cargo run --quiet --release --example evaluate -- --weights "$board_blob" | grep '^accuracy=') &&
    cargo run --quiet --release --example quantize -- --weights "$board_blob" --out target/m4_train_256k.q8 >/dev/null &&
    quantized=$(cargo run --quiet --release --example evaluate -- --weights target/m4_train_256k.q8 | grep '^accuracy='); then
    echo "the same bytes as the host's; f32: $evaluated, int8: $quantized (test set)"
    awk -v f="${evaluated#accuracy=}" -v q="${quantized#accuracy=}" 'BEGIN { exit !(f > 0.6 && q > f - 0.02) }' ||
        { echo "FAIL: the export scores $evaluated, int8 $quantized"; status=1; }
else
    echo "FAIL: the board's export of m4_train_256k does not evaluate"; status=1
fi
exit $status
