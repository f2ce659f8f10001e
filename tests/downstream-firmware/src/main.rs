//! Classifies a blank image with a small zeroed model in a static: enough
//! to link tinycnn's forward pass into the user's firmware.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use cortex_m_rt::entry;
use static_cell::ConstStaticCell;
use tinycnn::{Params, Workspace};

/// 8x8 images, 2 kernels, 16 hidden units, 4 classes.
type Small = Params<8, 8, 2, 32, 16, 4>;

static PARAMS: ConstStaticCell<Small> = ConstStaticCell::new(Small::zeroed());
static WORKSPACE: ConstStaticCell<Workspace<32, 16, 4>> = ConstStaticCell::new(Workspace::new());

#[entry]
fn main() -> ! {
    let params = PARAMS.take();
    let class = params.predict(&[[0.0; 8]; 8], WORKSPACE.take());
    loop {
        cortex_m::asm::nop();
        if class.is_err() {
            cortex_m::asm::bkpt();
        }
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
}
