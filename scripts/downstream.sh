#!/usr/bin/env bash
# Builds tests/downstream-firmware, a firmware crate that depends on tinycnn
# with a memory.x of its own (100 KiB of RAM), for the Cortex-M4F, and checks
# that its link sees no folder of tinycnn's (where a memory.x of the examples'
# could be found first), and from the ELF that the linker used its memory
# map: cortex-m-rt puts the initial stack pointer at the end of RAM.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prerequisites.sh
need_cortex_m_targets
crate=tests/downstream-firmware
touch "$crate/src/main.rs" # relink, so that the link line is printed
log=$(CARGO_TARGET_DIR=target/downstream cargo build -v --release \
    --manifest-path "$crate/Cargo.toml" --target thumbv7em-none-eabihf 2>&1) || {
    printf '%s\n' "$log"
    exit 1
}
if grep 'crate-name downstream_firmware' <<<"$log" | grep -q -- '-L [^ ]*build/tinycnn-'; then
    echo "FAIL: the downstream crate's link searches a folder of tinycnn's build script"
    exit 1
fi
elf=target/downstream/thumbv7em-none-eabihf/release/downstream-firmware
stack=$(readelf -s "$elf" | awk '$NF == "_stack_start" { print $2 }')
expected=20019000
if [ "$((16#$stack))" -ne "$((16#$expected))" ]; then
    echo "FAIL: $elf has _stack_start 0x$stack, its own memory.x ends RAM at 0x$expected"
    exit 1
fi
echo "downstream firmware linked with its own memory.x: _stack_start 0x$stack"
