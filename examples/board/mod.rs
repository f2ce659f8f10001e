//! What the firmware examples share. On a Cortex-M board (QEMU's MPS2, or a
//! real chip's machine: `TINYCNN_BOARD`, see `build.rs`) they
//! print through semihosting, exit with the program's status, count
//! instructions and measure the stack; on the host the same examples run
//! natively, so CI can compare the two.
#![allow(dead_code, unused_macros, unused_imports)]

use static_cell::ConstStaticCell;
use tinycnn::data::Samples;
use tinycnn::weights::Aligned;
use tinycnn::Error;

/// A model trained on the host with the `adam` recipe (20 epochs, seed 1, full
/// Fashion-MNIST) and written by the `export` example.
pub static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("fashion-adam.tcnn"));

/// The deep model (`tinycnn::stack::Deep`) trained on the host with the
/// `adam` recipe (20 epochs, seed 1, full Fashion-MNIST) and written by
/// `export --model deep`.
pub static MODEL_DEEP: &Aligned<[u8]> = &Aligned(*include_bytes!("deep-adam.tcns"));

/// The test images the deep model classifies on the board: its 4.4 times
/// the work per image of the book's model takes the first 100.
pub const DEEP_IMAGES: usize = 100;

/// The same model quantized to int8 by the `quantize` example.
pub static MODEL_INT8: &Aligned<[u8]> = &Aligned(*include_bytes!("fashion-adam.q8"));

/// Fashion-MNIST test images, embedded: the first 500 of the test set.
pub static TEST: Embedded = Embedded {
    images: include_bytes!(concat!(env!("OUT_DIR"), "/t10k_images.bin")),
    labels: include_bytes!(concat!(env!("OUT_DIR"), "/t10k_labels.bin")),
    inverted: false,
};

/// Fashion-MNIST training images, embedded: the first 2,000 of the training set.
pub static TRAIN: Embedded = Embedded {
    images: include_bytes!(concat!(env!("OUT_DIR"), "/train_images.bin")),
    labels: include_bytes!(concat!(env!("OUT_DIR"), "/train_labels.bin")),
    inverted: false,
};

/// A count set when the example is built (`TINYCNN_EPOCHS=10 cargo m4 m4_train`),
/// else `default`.
pub const fn build_setting(value: Option<&str>, default: usize) -> usize {
    let Some(text) = value else { return default };
    let bytes = text.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while i < bytes.len() {
        assert!(
            bytes[i].is_ascii_digit(),
            "a build setting must be a whole number"
        );
        n = n * 10 + (bytes[i] - b'0') as usize;
        i += 1;
    }
    n
}

/// Raw `u8` images (28x28, row-major) and labels in flash.
#[derive(Clone, Copy)]
pub struct Embedded {
    pub images: &'static [u8],
    pub labels: &'static [u8],
    inverted: bool,
}

impl Embedded {
    /// The first `n` samples (all of them when there are fewer).
    pub fn first(self, n: usize) -> Self {
        let n = n.min(self.labels.len());
        Self {
            images: &self.images[..n * 784],
            labels: &self.labels[..n],
            inverted: self.inverted,
        }
    }

    /// Samples `start..end`.
    pub fn range(self, start: usize, end: usize) -> Self {
        let end = end.min(self.labels.len());
        let start = start.min(end);
        Self {
            images: &self.images[start * 784..end * 784],
            labels: &self.labels[start..end],
            inverted: self.inverted,
        }
    }

    /// The same samples with every pixel inverted (`1 - p`): a shifted data set.
    pub fn inverted(self) -> Self {
        Self {
            inverted: true,
            ..self
        }
    }
}

impl Samples<28, 28> for Embedded {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn read(&self, index: usize, image: &mut [[f32; 28]; 28]) -> Result<usize, Error> {
        let len = self.labels.len();
        let label = *self
            .labels
            .get(index)
            .ok_or(Error::IndexOutOfRange { index, len })?;
        for (out, &p) in image
            .as_flattened_mut()
            .iter_mut()
            .zip(&self.images[index * 784..(index + 1) * 784])
        {
            let v = f32::from(p) / 255.0;
            *out = if self.inverted { 1.0 - v } else { v };
        }
        Ok(usize::from(label))
    }
}

/// Prints a line: on the board through semihosting, or with the `defmt`
/// feature as a defmt frame that the runner decodes (the text is formatted on
/// the board, so both print the same lines); stdout on the host.
macro_rules! out {
    ($($arg:tt)*) => {{
        #[cfg(all(target_os = "none", not(feature = "defmt")))]
        cortex_m_semihosting::hprintln!($($arg)*);
        #[cfg(all(target_os = "none", feature = "defmt"))]
        {
            use core::fmt::Write as _;
            let mut line = heapless::String::<320>::new();
            let _ = write!(line, $($arg)*);
            defmt::println!("{=str}", line.as_str());
        }
        #[cfg(not(target_os = "none"))]
        println!($($arg)*);
    }};
}
pub(crate) use out;

/// A line of text built without `core::fmt`, whose float formatting alone
/// takes more flash than a micro:bit can spare: words, whole numbers, hex
/// and fixed-point ratios.
pub struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }

    pub fn text(mut self, text: &str) -> Self {
        for &b in text.as_bytes() {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        self
    }

    pub fn number(self, mut n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.text(core::str::from_utf8(&digits[i..]).unwrap_or(""))
    }

    pub fn hex(self, n: u32) -> Self {
        let mut digits = [0u8; 8];
        for (i, d) in digits.iter_mut().enumerate() {
            let nibble = (n >> (28 - 4 * i)) & 0xF;
            *d = b"0123456789abcdef"[nibble as usize];
        }
        self.text(core::str::from_utf8(&digits).unwrap_or(""))
    }

    /// `num / den` with four decimals, rounded half up (`den` > 0).
    pub fn ratio(self, num: u64, den: u64) -> Self {
        let scaled = (num * 10_000 + den / 2) / den.max(1);
        let fraction = scaled % 10_000;
        let mut line = self.number(scaled / 10_000).text(".");
        for digit in [1000, 100, 10, 1] {
            line = line.number(fraction / digit % 10);
        }
        line
    }

    /// Prints the line and a newline: semihosting on the board, stdout on the host.
    pub fn print(self) {
        let line = self.text("\n");
        let bytes = line.bytes.get(..line.len).unwrap_or_default();
        #[cfg(target_os = "none")]
        if let Ok(mut out) = cortex_m_semihosting::hio::hstdout() {
            let _ = out.write_all(bytes);
        }
        #[cfg(not(target_os = "none"))]
        {
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(bytes);
        }
    }
}

/// Counts instructions between two points, when the board can.
pub struct Meter {
    start: u64,
}

impl Meter {
    /// Starts counting.
    pub fn start() -> Self {
        Self {
            start: instructions(),
        }
    }

    /// Instructions since `start` (0 on the host, which does not count).
    pub fn read(&self) -> u64 {
        instructions().saturating_sub(self.start)
    }
}

/// `epochs` epochs of plain SGD at rate `lr` (streaming SGD: any schedule
/// trained with [`Sgd`](tinycnn::train::Sgd)) over `train` in batches of
/// `batch`, the settings and each epoch's loss printed; returns the last
/// epoch's loss and the instructions per training image, or `None` after
/// printing the error.
pub fn train_streaming<
    M: ?Sized,
    T: tinycnn::train::Train<M, tinycnn::train::Sgd, Input = [[f32; 28]; 28]>,
>(
    trainer: &mut T,
    params: &mut M,
    lr: f32,
    train: &Embedded,
    (epochs, batch): (usize, usize),
    order: &mut [u32],
    rng: &mut impl rand_core::RngCore,
) -> Option<(f32, u64)> {
    let mut sgd = match tinycnn::train::Sgd::new(lr) {
        Ok(sgd) => sgd,
        Err(e) => {
            out!("error: {}", e);
            return None;
        }
    };
    out!(
        "SGD lr {} on {} images, {} epochs, batch {}",
        lr,
        train.len(),
        epochs,
        batch
    );
    train_epochs(epochs, train.len(), batch, order, rng, (), |epoch| {
        trainer.train_epoch(params, &mut sgd, train, epoch)
    })
}

/// Logs every 8th batch so a long run shows it is alive.
#[derive(Clone, Copy)]
pub struct Log;

impl tinycnn::train::Progress for Log {
    fn batch_done(&mut self, epoch: usize, batch: usize, batches: usize, loss: f32) {
        if batch % 8 == 7 {
            out!(
                "epoch {} batch {}/{} loss {:.4}",
                epoch + 1,
                batch + 1,
                batches,
                loss
            );
        }
    }
}

/// `epochs` epochs of `train_epoch` over `images` images in batches of
/// `batch`, telling `progress` of each batch and printing each epoch's loss;
/// returns the last epoch's loss and the instructions per training image,
/// or `None` after printing the error.
pub fn train_epochs<R: rand_core::RngCore, P: tinycnn::train::Progress + Copy>(
    epochs: usize,
    images: usize,
    batch: usize,
    order: &mut [u32],
    rng: &mut R,
    progress: P,
    mut train_epoch: impl FnMut(tinycnn::train::Epoch<'_, R, P>) -> Result<f32, Error>,
) -> Option<(f32, u64)> {
    let (mut loss, mut instructions) = (f32::NAN, 0u64);
    for epoch in 0..epochs {
        let meter = Meter::start();
        let this_epoch = tinycnn::train::Epoch::new(order, batch, rng)
            .number(epoch)
            .progress(progress);
        match train_epoch(this_epoch) {
            Ok(epoch_loss) => loss = epoch_loss,
            Err(e) => {
                out!("error: {}", e);
                return None;
            }
        }
        instructions += meter.read();
        out!("epoch {} train_loss {:.6}", epoch + 1, loss);
    }
    let trained = images / batch * batch * epochs;
    Some((loss, instructions / trained.max(1) as u64))
}

#[cfg(target_os = "none")]
pub use device::*;

#[cfg(not(target_os = "none"))]
pub use host::*;

#[cfg(not(target_os = "none"))]
mod host {
    /// Runs `run` and exits with its status.
    pub fn main(run: fn() -> bool) -> ! {
        std::process::exit(if run() { 0 } else { 1 })
    }

    /// The host does not count instructions.
    pub fn instructions() -> u64 {
        0
    }

    /// Static RAM and peak stack: not measured on the host.
    pub fn ram_report() -> (usize, usize) {
        (0, 0)
    }

    /// Flash: not measured on the host.
    pub fn flash_used() -> usize {
        0
    }
}

#[cfg(target_os = "none")]
mod device {
    use core::sync::atomic::{AtomicU32, Ordering};
    use cortex_m::peripheral::{syst::SystClkSource, SYST};
    use cortex_m_rt::{exception, ExceptionFrame};
    use cortex_m_semihosting::debug;
    #[cfg(feature = "defmt")]
    use defmt_semihosting as _;
    #[cfg(not(board_microbit))]
    use panic_semihosting as _;

    /// On the micro:bit a panic exits QEMU with failure unformatted: the
    /// formatting machinery does not fit its flash beside the model.
    #[cfg(board_microbit)]
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        super::Line::new().text("panic").print();
        exit(false)
    }

    /// The core clock SysTick counts, as QEMU models each board: with
    /// `-icount shift=0` QEMU runs one instruction per virtual nanosecond, so
    /// a tick is `10^9 / CLOCK_HZ` instructions.
    const CLOCK_HZ: u64 = if cfg!(board_netduinoplus2) {
        168_000_000
    } else if cfg!(board_microbit) {
        16_000_000
    } else if cfg!(mps2_an505) {
        20_000_000
    } else {
        25_000_000
    };
    const RELOAD: u32 = 0x00FF_FFFF;
    static WRAPS: AtomicU32 = AtomicU32::new(0);
    /// Words of the stack painted at start, to find the peak later.
    const PAINT: u32 = 0x5A5A_A5A5;

    extern "C" {
        static mut __sbss: u32;
        static mut __ebss: u32;
        static mut __sdata: u32;
        static mut __edata: u32;
        static mut __sheap: u32;
        static _stack_start: u32;
    }

    /// Sets up the instruction counter and paints the free stack, runs `run`,
    /// and exits QEMU with its status.
    pub fn main(run: fn() -> bool) -> ! {
        paint_stack();
        if let Some(mut p) = cortex_m::Peripherals::take() {
            start_systick(&mut p.SYST);
        }
        exit(run())
    }

    fn start_systick(syst: &mut SYST) {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // QEMU loads the counter on the first tick: wait for it.
        while SYST::get_current() == 0 {}
    }

    #[exception]
    fn SysTick() {
        WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Instructions executed since the counter started.
    pub fn instructions() -> u64 {
        loop {
            let wraps = WRAPS.load(Ordering::Relaxed);
            let current = SYST::get_current();
            if WRAPS.load(Ordering::Relaxed) == wraps {
                let ticks = u64::from(wraps) * u64::from(RELOAD + 1) + u64::from(RELOAD - current);
                // A whole number of instructions per tick (the MPS2 boards)
                // takes a multiply; other clocks a 64-bit division, whose
                // call the count of a short span then includes.
                return if 1_000_000_000 % CLOCK_HZ == 0 {
                    ticks * (1_000_000_000 / CLOCK_HZ)
                } else {
                    ticks * 1_000_000_000 / CLOCK_HZ
                };
            }
        }
    }

    fn stack_bounds() -> (usize, usize) {
        // Only the addresses of the linker's symbols are taken, never their values.
        (
            core::ptr::addr_of!(__sheap) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    }

    /// Fills the free stack below the current frame with a pattern.
    fn paint_stack() {
        let (bottom, _) = stack_bounds();
        let sp = cortex_m::register::msp::read() as usize;
        let mut p = bottom;
        while p + 512 < sp {
            // SAFETY: [bottom, sp - 512) lies between the end of the statics and
            // the live stack frames: memory no one uses yet.
            unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
            p += 4;
        }
    }

    /// Bytes of statics (`.data` + `.bss`) and the deepest stack use so far.
    pub fn ram_report() -> (usize, usize) {
        let statics = (core::ptr::addr_of!(__ebss) as usize - core::ptr::addr_of!(__sbss) as usize)
            + (core::ptr::addr_of!(__edata) as usize - core::ptr::addr_of!(__sdata) as usize);
        let (bottom, top) = stack_bounds();
        let mut p = bottom;
        // SAFETY: reads of the stack region, word-aligned, inside RAM.
        while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
            p += 4;
        }
        (statics, top - p)
    }

    /// Ends the QEMU run with success or failure.
    pub fn exit(success: bool) -> ! {
        debug::exit(if success {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        loop {
            cortex_m::asm::wfi();
        }
    }

    #[exception]
    unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
        super::Line::new()
            .text("HardFault at pc 0x")
            .hex(frame.pc())
            .print();
        exit(false)
    }

    extern "C" {
        static __vector_table: u32;
        static __sidata: u32;
    }

    /// Bytes of flash the program takes: from the vector table to the end
    /// of `.data`'s initial values.
    pub fn flash_used() -> usize {
        // Only the addresses of the linker's symbols are taken.
        let start = core::ptr::addr_of!(__vector_table) as usize;
        let data = core::ptr::addr_of!(__edata) as usize - core::ptr::addr_of!(__sdata) as usize;
        core::ptr::addr_of!(__sidata) as usize + data - start
    }
}

/// Classifies the embedded test images with the embedded model and prints the
/// `RESULT` line; `false` on any error.
pub fn infer_test_images() -> bool {
    let params = match tinycnn::FashionParams::from_blob(&MODEL.0) {
        Ok(params) => params,
        Err(e) => {
            out!("error: model blob: {}", e);
            return false;
        }
    };
    static WORKSPACE: ConstStaticCell<tinycnn::Workspace> = ConstStaticCell::new(tinycnn::Workspace::new());
    let workspace = WORKSPACE.take();
    classify(TEST, |image| params.predict(image, workspace))
}

/// Classifies the first [`DEEP_IMAGES`] embedded test images with the deep
/// model, borrowed from flash, and prints the `RESULT` line.
pub fn infer_deep_test_images() -> bool {
    use tinycnn::stack::{Deep, Workspace};
    let params = match tinycnn::weights::StackBlob::<Deep>::view(&MODEL_DEEP.0) {
        Ok(params) => params,
        Err(e) => {
            out!("error: model blob: {}", e);
            return false;
        }
    };
    static WORKSPACE: ConstStaticCell<Workspace<Deep>> = ConstStaticCell::new(Workspace::new());
    let workspace = WORKSPACE.take();
    classify(TEST.first(DEEP_IMAGES), |image| workspace.predict(params, image))
}

/// Runs `predict` on each of `test`'s images, counting its instructions,
/// and prints the `RESULT` line; `false` on any error.
fn classify(test: Embedded, mut predict: impl FnMut(&[[f32; 28]; 28]) -> Result<usize, Error>) -> bool {
    let mut image = [[0.0f32; 28]; 28];
    let (mut correct, mut instructions) = (0usize, 0u64);
    for i in 0..test.len() {
        let Ok(label) = test.read(i, &mut image) else {
            return false;
        };
        let meter = Meter::start();
        let predicted = predict(&image);
        instructions += meter.read();
        match predicted {
            Ok(class) => correct += usize::from(class == label),
            Err(e) => {
                out!("error: image {}: {}", i, e);
                return false;
            }
        }
    }
    let (statics, stack) = ram_report();
    out!(
        "RESULT example={} images={} correct={} accuracy={:.4} instructions_per_image={} ram_static_bytes={} stack_peak_bytes={}",
        env!("CARGO_CRATE_NAME"),
        test.len(),
        correct,
        correct as f32 / test.len() as f32,
        instructions / test.len() as u64,
        statics,
        stack
    );
    true
}

/// Classifies the embedded test images with the int8 model (integer
/// arithmetic only) and prints the `RESULT` line; `false` on any error.
pub fn infer_int8_test_images() -> bool {
    use tinycnn::quant::QuantWorkspace;
    use tinycnn::FashionQuantModel;
    let model = match FashionQuantModel::from_blob(&MODEL_INT8.0) {
        Ok(model) => model,
        Err(e) => {
            out!("error: int8 blob: {}", e);
            return false;
        }
    };
    static WORKSPACE: ConstStaticCell<QuantWorkspace> = ConstStaticCell::new(QuantWorkspace::new());
    let workspace = WORKSPACE.take();
    let test = TEST;
    let (mut correct, mut instructions) = (0usize, 0u64);
    // Every integer logit, hashed: the board's kernels (assembly on a
    // Cortex-M4) must give the host's exactly, not just the same classes.
    let mut logits_hash = 0u32;
    for (i, &label) in test.labels.iter().enumerate() {
        let pixels = &test.images[i * 784..(i + 1) * 784];
        let meter = Meter::start();
        let predicted = model.predict(pixels, workspace);
        instructions += meter.read();
        for &logit in workspace.logits() {
            logits_hash = (logits_hash.rotate_left(5) ^ logit as u32).wrapping_mul(0x9E37_79B1);
        }
        match predicted {
            Ok(class) => correct += usize::from(class == usize::from(label)),
            Err(e) => {
                out!("error: image {}: {}", i, e);
                return false;
            }
        }
    }
    let n = test.labels.len();
    let (statics, stack) = ram_report();
    out!(
        "RESULT example={} images={} correct={} accuracy={:.4} logits_hash={:08x} instructions_per_image={} ram_static_bytes={} stack_peak_bytes={}",
        env!("CARGO_CRATE_NAME"),
        n,
        correct,
        correct as f32 / n as f32,
        logits_hash,
        instructions / n as u64,
        statics,
        stack
    );
    true
}
