//! Estimates the Cortex-M4 cycles of what a firmware example executed, from
//! QEMU's exact trace of it: every translated block once (`-d in_asm`) and
//! every block executed (`-d exec,nochain`), read from stdin as QEMU writes
//! it. Each instruction is charged what the Cortex-M4 Technical Reference
//! Manual gives it (tables 3-1 and 7-1), with the cases the manual leaves
//! open bounded both ways:
//!
//! - `low`: a pipeline refill after a taken branch costs 1 cycle, a load or
//!   store right after another pipelines (1 cycle instead of 2), a divide
//!   takes 2 cycles, an IT instruction folds into its neighbour;
//! - `high`: a refill costs 3 cycles, no load or store pipelines, a divide
//!   takes 12 cycles, an IT instruction takes 1.
//!
//! Both assume every fetch and data access completes without wait states
//! (on the STM32 parts, the flash accelerator's caches and prefetch hit);
//! `--wait-states N` adds N cycles to every instruction fetch after a taken
//! branch, the upper bound for code run from flash whose accelerator misses.
//! Data read from flash is not charged (the trace has no data addresses).
//!
//! ```text
//! qemu-system-arm -machine mps2-an386 -cpu cortex-m4 ... -d in_asm,exec,nochain -kernel ELF 2>&1 >/dev/null \
//!     | cargo run --release --example cycles -- --skip 2000000 --instructions 20000000
//! ```
//! `scripts/firmware.sh --cycles` runs it for every Cortex-M4 example.

use clap::Parser;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// Estimate Cortex-M4 cycles from a QEMU `-d in_asm,exec,nochain` trace on stdin.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Executed instructions to pass over before counting (start-up).
    #[arg(long, default_value_t = 0)]
    skip: u64,
    /// Executed instructions to count after the skipped ones, then stop
    /// (0: to the end of the trace).
    #[arg(long, default_value_t = 0)]
    instructions: u64,
    /// Flash wait states charged at each instruction fetch after a taken
    /// branch, on top of the high estimate.
    #[arg(long, default_value_t = 0)]
    wait_states: u64,
}

/// One instruction of a translated block.
#[derive(Debug, Clone)]
struct Instruction {
    address: u32,
    size: u32,
    mnemonic: String,
    operands: String,
}

/// What an instruction costs, low and high, before what follows it is
/// known: branches are charged once the next block shows whether they were
/// taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    /// Fixed cycles, low and high.
    Fixed(u64, u64),
    /// A single load or store: 1 cycle after another one (low), else 2.
    Single,
    /// `extra` plus one cycle per register moved, the first access as a
    /// single load's.
    Multiple { registers: u64, extra: u64 },
    /// A branch: 1 cycle, plus the refill when it is taken.
    Branch,
    /// A load into the program counter: a branch after `registers` loads.
    LoadPc { registers: u64 },
}

/// The cycle counts of a trace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    instructions: u64,
    low: u64,
    high: u64,
    /// Taken branches: where a wait-stated fetch would restart.
    taken: u64,
}

/// Strips a condition code or a width or data-type suffix.
fn base_mnemonic(mnemonic: &str) -> &str {
    let m = mnemonic.split('.').next().unwrap_or(mnemonic);
    const CONDITIONS: [&str; 14] = [
        "eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt",
    ];
    const MORE: [&str; 3] = ["gt", "le", "al"];
    // Names a condition would shorten wrongly (`bls` is `b` + `ls`, but
    // `bls` is no other instruction; `movs`, `muls`, `vcmpe` stay).
    for condition in CONDITIONS.iter().chain(&MORE) {
        if let Some(stem) = m.strip_suffix(condition) {
            if KNOWN_STEMS.contains(&stem) {
                return stem;
            }
        }
    }
    m
}

/// Mnemonics a condition suffix may follow (the ones the classes below
/// name, with `s` where flags are set).
const KNOWN_STEMS: [&str; 40] = [
    "b", "bx", "bl", "blx", "mov", "movs", "add", "adds", "sub", "subs", "ldr", "ldrb", "ldrh", "str",
    "strb", "strh", "cmp", "cmn", "and", "ands", "orr", "orrs", "eor", "eors", "mvn", "mvns", "lsl", "lsls",
    "lsr", "lsrs", "vmov", "vadd", "vsub", "vmul", "vmla", "vfma", "vcmp", "vcmpe", "vldr", "vstr",
];

/// The number of registers in a register list `{r4, r5, lr}` or a range
/// `{s16-s31}` / `{d8-d15}` (a double counts as two singles).
fn registers(operands: &str) -> u64 {
    let Some(list) = operands.split('{').nth(1).and_then(|l| l.split('}').next()) else {
        return 1;
    };
    list.split(',')
        .map(|item| {
            let item = item.trim();
            let width = if item.starts_with('d') { 2 } else { 1 };
            match item.split_once('-') {
                Some((first, last)) => {
                    let number = |r: &str| r.trim().trim_start_matches(['r', 's', 'd']).parse::<u64>().ok();
                    match (number(first), number(last)) {
                        (Some(a), Some(b)) if b >= a => (b - a + 1) * width,
                        _ => width,
                    }
                }
                None => width,
            }
        })
        .sum()
}

impl Instruction {
    /// Its cost class.
    fn cost(&self) -> Cost {
        let m = base_mnemonic(&self.mnemonic);
        let ops = self.operands.as_str();
        let writes_pc = ops.split(',').next().is_some_and(|d| d.trim() == "pc");
        match m {
            "b" | "bl" | "bx" | "blx" | "cbz" | "cbnz" => Cost::Branch,
            "tbb" | "tbh" => Cost::Fixed(3, 5),
            "pop" | "ldm" | "ldmia" | "ldmfd" if ops.contains("pc") => Cost::LoadPc {
                registers: registers(ops),
            },
            "push" | "pop" | "ldm" | "ldmia" | "ldmfd" | "ldmdb" | "stm" | "stmia" | "stmea" | "stmdb"
            | "stmfd" => Cost::Multiple {
                registers: registers(ops),
                extra: 0,
            },
            "vpush" | "vpop" | "vldm" | "vldmia" | "vldmdb" | "vstm" | "vstmia" | "vstmdb" => {
                Cost::Multiple {
                    registers: registers(ops),
                    extra: 0,
                }
            }
            "ldrd" | "strd" => Cost::Multiple {
                registers: 2,
                extra: 0,
            },
            "ldr" | "ldrb" | "ldrh" | "ldrsb" | "ldrsh" if writes_pc => Cost::LoadPc { registers: 1 },
            "ldr" | "ldrb" | "ldrh" | "ldrsb" | "ldrsh" | "ldrex" | "str" | "strb" | "strh" | "strex"
            | "vldr" | "vstr" => Cost::Single,
            "mla" | "mls" => Cost::Fixed(2, 2),
            "sdiv" | "udiv" => Cost::Fixed(2, 12),
            "vmla" | "vmls" | "vnmla" | "vnmls" | "vfma" | "vfms" | "vfnma" | "vfnms" => Cost::Fixed(3, 3),
            "vdiv" | "vsqrt" => Cost::Fixed(14, 14),
            "it" | "itt" | "ite" | "ittt" | "itte" | "itet" | "itee" | "itttt" => Cost::Fixed(0, 1),
            "vmov" if ops.split(',').count() == 4 => Cost::Fixed(2, 2),
            _ if writes_pc => Cost::Branch,
            _ => Cost::Fixed(1, 1),
        }
    }
}

/// Adds up a trace's cycles block by block.
#[derive(Default)]
struct Estimator {
    blocks: HashMap<(u32, u32), Vec<Instruction>>,
    /// The block executed last, charged but for its branch, which waits for
    /// the next block to show whether it was taken.
    pending: Option<(u32, u32)>,
    /// Whether the last instruction charged was a single load or store.
    after_access: bool,
    totals: Totals,
}

/// Refill cycles after a taken branch, low and high.
const REFILL: (u64, u64) = (1, 3);

impl Estimator {
    /// Charges block `key`'s instructions, its last branch once `next` (the
    /// address of the block run after it) shows where it went.
    fn execute(&mut self, key: (u32, u32)) {
        if let Some(previous) = self.pending.take() {
            self.finish(previous, Some(key.0));
        }
        let Some(block) = self.blocks.get(&key) else {
            return;
        };
        let count = block.len();
        let mut low = 0;
        let mut high = 0;
        let mut after = self.after_access;
        for (i, instruction) in block.iter().enumerate() {
            let last = i + 1 == count;
            let cost = instruction.cost();
            if last && matches!(cost, Cost::Branch | Cost::LoadPc { .. }) {
                break;
            }
            let (l, h, access) = charge(cost, after, false);
            low += l;
            high += h;
            after = access;
        }
        self.totals.instructions += count as u64;
        self.totals.low += low;
        self.totals.high += high;
        self.after_access = after;
        self.pending = Some(key);
    }

    /// Charges the last instruction of block `key`, a branch (taken if
    /// `next` is not the address after it) or an ordinary one.
    fn finish(&mut self, key: (u32, u32), next: Option<u32>) {
        let Some(last) = self.blocks.get(&key).and_then(|b| b.last()) else {
            return;
        };
        let cost = last.cost();
        if !matches!(cost, Cost::Branch | Cost::LoadPc { .. }) {
            return;
        }
        let taken = next.is_some_and(|next| next != last.address + last.size);
        let (l, h, access) = charge(cost, self.after_access, taken);
        self.totals.low += l;
        self.totals.high += h;
        self.totals.taken += u64::from(taken);
        self.after_access = access;
    }

    /// The totals, the last block's branch charged as not taken.
    fn totals(&mut self) -> Totals {
        if let Some(previous) = self.pending.take() {
            self.finish(previous, None);
        }
        self.totals
    }
}

/// Cycles of one instruction (low, high) and whether it was a single load
/// or store (the next one may pipeline with it).
fn charge(cost: Cost, after_access: bool, taken: bool) -> (u64, u64, bool) {
    let first_access = if after_access { 1 } else { 2 };
    match cost {
        Cost::Fixed(low, high) => (low, high, false),
        Cost::Single => (first_access, 2, true),
        Cost::Multiple { registers, extra } => {
            (first_access - 1 + registers + extra, 1 + registers + extra, false)
        }
        Cost::Branch if taken => (1 + REFILL.0, 1 + REFILL.1, false),
        Cost::Branch => (1, 1, false),
        Cost::LoadPc { registers } => (
            first_access - 1 + registers + REFILL.0,
            1 + registers + REFILL.1,
            false,
        ),
    }
}

/// Reads QEMU's log: `IN:` blocks (an address, the bytes, the mnemonic and
/// its operands per line) and `Trace` lines (`[cs_base/pc/flags/...]`).
fn run(input: impl BufRead, args: &Args, mut counted: impl FnMut(&Totals)) -> std::io::Result<Totals> {
    let mut estimator = Estimator::default();
    let mut building: Option<Vec<Instruction>> = None;
    let mut skipped: Option<Totals> = None;
    for line in input.lines() {
        let line = line?;
        if line.starts_with("IN:") {
            building = Some(Vec::new());
        } else if let Some(rest) = line.strip_prefix("Trace ") {
            let Some(fields) = rest.split('[').nth(1).and_then(|f| f.split(']').next()) else {
                continue;
            };
            let mut parts = fields.split('/');
            let (_, pc, flags) = (parts.next(), parts.next(), parts.next());
            let parse = |f: Option<&str>| f.and_then(|f| u32::from_str_radix(f, 16).ok());
            let (Some(pc), Some(flags)) = (parse(pc), parse(flags)) else {
                continue;
            };
            if let Some(block) = building.take() {
                estimator.blocks.insert((pc, flags), block);
            }
            if skipped.is_none() && estimator.totals.instructions >= args.skip {
                skipped = Some(estimator.totals);
            }
            estimator.execute((pc, flags));
            let totals = estimator.totals;
            if let Some(start) = skipped {
                if args.instructions > 0 && totals.instructions - start.instructions >= args.instructions {
                    break;
                }
            }
            counted(&totals);
        } else if let Some(block) = building.as_mut() {
            if let Some(instruction) = parse_instruction(&line) {
                block.push(instruction);
            }
        }
    }
    let end = estimator.totals();
    let start = skipped.unwrap_or_default();
    Ok(Totals {
        instructions: end.instructions - start.instructions,
        low: end.low - start.low,
        high: end.high - start.high,
        taken: end.taken - start.taken,
    })
}

/// `0x00000404:  480e       ldr      r0, [pc, #0x38]`: address, encoding
/// (2 or 4 bytes, as one or two half-words), mnemonic, operands.
fn parse_instruction(line: &str) -> Option<Instruction> {
    let (address, rest) = line.split_once(':')?;
    let address = u32::from_str_radix(address.trim().strip_prefix("0x")?, 16).ok()?;
    let mut words = rest.split_whitespace().peekable();
    let mut size = 0;
    while let Some(word) = words.peek() {
        if word.len() == 4 && word.chars().all(|c| c.is_ascii_hexdigit()) && size < 4 {
            size += 2;
            words.next();
        } else {
            break;
        }
    }
    let mnemonic = words.next()?.to_string();
    let operands = words.collect::<Vec<_>>().join(" ");
    Some(Instruction {
        address,
        size: size.max(2),
        mnemonic,
        operands,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let stdin = std::io::stdin();
    let totals = match run(stdin.lock(), &args, |_| ()) {
        Ok(totals) => totals,
        Err(e) => {
            eprintln!("error: reading the trace: {e}");
            return ExitCode::FAILURE;
        }
    };
    let waited = totals.high + totals.taken * args.wait_states;
    let mut out = std::io::stdout().lock();
    let written = writeln!(
        out,
        "instructions={} cycles_low={} cycles_high={} cycles_high_waited={} taken_branches={}",
        totals.instructions, totals.low, totals.high, waited, totals.taken,
    );
    if written.is_err() {
        return ExitCode::FAILURE;
    }
    if totals.instructions == 0 {
        eprintln!("error: no executed instructions in the trace (was QEMU run with -d in_asm,exec,nochain?)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dot product's loop as QEMU logs it: translated once, run ten
    /// times, its branch taken nine times.
    fn dot_product_trace() -> String {
        let mut trace = String::from(
            "----------------\nIN: dot\n\
             0x00001000:  f850 3b04  ldr      r3, [r0], #4\n\
             0x00001004:  f851 4b04  ldr      r4, [r1], #4\n\
             0x00001008:  fb03 2204  mla      r2, r3, r4, r2\n\
             0x0000100c:  3d01       subs     r5, #1\n\
             0x0000100e:  d1f7       bne      #0x1000\n\n",
        );
        for _ in 0..10 {
            trace.push_str("Trace 0: 0x7f0000000100 [00800408/00001000/00000110/ff020200] dot\n");
        }
        trace.push_str("----------------\nIN: after\n0x00001010:  4770       bx       lr\n\n");
        trace.push_str("Trace 0: 0x7f0000000200 [00800408/00001010/00000110/ff020200] after\n");
        trace
    }

    /// Counted by hand from the manual's table: each pass is `ldr` (2),
    /// `ldr` (1 low, pipelined; 2 high), `mla` (2), `subs` (1), `bne` (1,
    /// plus a refill of 1 low or 3 high when taken); the first `ldr` of a
    /// pass after the taken branch does not pipeline. Nine passes branch
    /// back, the tenth falls through; then `bx lr` (1, not taken: the trace
    /// ends).
    #[test]
    fn a_loop_counted_by_hand() {
        let args = Args {
            skip: 0,
            instructions: 0,
            wait_states: 0,
        };
        let totals = run(dot_product_trace().as_bytes(), &args, |_| ()).unwrap();
        let low_taken = 2 + 1 + 2 + 1 + (1 + 1);
        let high_taken = 2 + 2 + 2 + 1 + (1 + 3);
        let low_last = 2 + 1 + 2 + 1 + 1;
        let high_last = 2 + 2 + 2 + 1 + 1;
        assert_eq!(totals.instructions, 10 * 5 + 1);
        assert_eq!(totals.taken, 9);
        assert_eq!(totals.low, 9 * low_taken + low_last + 1);
        assert_eq!(totals.high, 9 * high_taken + high_last + 1);
    }

    /// Skipping the first pass leaves nine: the skip ends at a block's end.
    #[test]
    fn skipped_instructions_are_not_counted() {
        let args = Args {
            skip: 5,
            instructions: 0,
            wait_states: 0,
        };
        let totals = run(dot_product_trace().as_bytes(), &args, |_| ()).unwrap();
        assert_eq!(totals.instructions, 9 * 5 + 1);
    }

    #[test]
    fn lists_and_suffixes_are_read() {
        assert_eq!(registers("{r4, r5, r6, r7, lr}"), 5);
        assert_eq!(registers("{s16-s31}"), 16);
        assert_eq!(registers("{d8-d11}"), 8);
        assert_eq!(base_mnemonic("bne"), "b");
        assert_eq!(base_mnemonic("ldr.w"), "ldr");
        assert_eq!(base_mnemonic("vmla.f32"), "vmla");
        assert_eq!(base_mnemonic("movs"), "movs");
        assert_eq!(base_mnemonic("bls"), "b");
        assert_eq!(base_mnemonic("cmple"), "cmp");
        let pop = Instruction {
            address: 0,
            size: 2,
            mnemonic: "pop".into(),
            operands: "{r4, r5, r7, pc}".into(),
        };
        assert_eq!(pop.cost(), Cost::LoadPc { registers: 4 });
        assert_eq!(charge(pop.cost(), false, true), (1 + 4 + 1, 1 + 4 + 3, false));
    }
}
