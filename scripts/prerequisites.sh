# Sourced by the scripts a user runs: each function installs what rustup can
# install and names in one line what it cannot (system packages), then exits.

# The Cortex-M targets of the firmware examples.
need_cortex_m_targets() {
    rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi thumbv8m.main-none-eabihf >/dev/null 2>&1 ||
        { echo "error: cannot add the Cortex-M targets: rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi thumbv8m.main-none-eabihf" >&2; exit 1; }
}

# QEMU's Arm boards.
need_qemu() {
    command -v qemu-system-arm >/dev/null ||
        { echo "error: the firmware examples run on QEMU: sudo apt-get install qemu-system-arm" >&2; exit 1; }
}

# Prints the path of the toolchain's llvm-size, adding rustup's llvm-tools
# first if it is not there.
llvm_size() {
    local bin
    bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
    if [ ! -x "$bin" ]; then
        rustup component add llvm-tools >/dev/null 2>&1 ||
            { echo "error: section sizes need llvm-size: rustup component add llvm-tools" >&2; exit 1; }
    fi
    echo "$bin"
}
