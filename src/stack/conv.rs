//! A convolution fused with the ReLU and the 2x2 max-pool after it.

use super::dense::{view, view_mut};
use super::{Layer, Zeroed};
use crate::kernels::conv::conv_relu_pool_backward_listed;
use crate::kernels::{conv_relu_pool, conv_relu_pool_channels, conv_relu_pool_channels_backward, ConvKernel};
use crate::model::{fill_uniform, glorot_limit};
use bytemuck::Pod;
use core::marker::PhantomData;
use rand_core::RngCore;

/// `Conv2d(COUT, KS)` (SAME, stride 1, bias) over an `H`x`W`x`CIN` map of
/// type `I`, then ReLU and a 2x2 max-pool: `FLAT = (H/2)(W/2)COUT` outputs,
/// height-width-channel. The pooled map is built two convolution rows at a
/// time; the full-resolution map never exists.
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::type_complexity)]
pub struct ConvReluPool<
    const H: usize,
    const W: usize,
    const CIN: usize,
    const COUT: usize,
    const KS: usize,
    const FLAT: usize,
    I,
>(PhantomData<I>);

/// What a [`ConvReluPool`] keeps of a sample: the pooled map and each
/// pooling window's winner.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct ConvState<const FLAT: usize> {
    pooled: [f32; FLAT],
    argmax: [u8; FLAT],
}

// SAFETY: `f32` and `u8` arrays: all zero bytes form a valid value.
unsafe impl<const FLAT: usize> bytemuck::Zeroable for ConvState<FLAT> {}

impl<const FLAT: usize> Zeroed for ConvState<FLAT> {
    const ZERO: Self = Self {
        pooled: [0.0; FLAT],
        argmax: [0; FLAT],
    };
}

impl<
        const H: usize,
        const W: usize,
        const CIN: usize,
        const COUT: usize,
        const KS: usize,
        const FLAT: usize,
        I: Pod,
    > ConvReluPool<H, W, CIN, COUT, KS, FLAT, I>
{
    const KERNEL: usize = KS * KS * CIN * COUT;
    const SIZES: () = {
        assert!(
            size_of::<I>() == 4 * H * W * CIN,
            "Conv2d: the input map does not hold H*W*CIN values"
        );
        assert!(KS % 2 == 1, "Conv2d: the kernel size must be odd (SAME padding)");
        assert!(
            H.is_multiple_of(2) && W.is_multiple_of(2),
            "MaxPool2: the height and width must be even"
        );
        assert!(
            FLAT == H / 2 * (W / 2) * COUT,
            "MaxPool2: FLAT must be (H/2)*(W/2)*COUT"
        );
    };

    /// The one-channel 3x3 case, which the book's model runs through the
    /// kernels it was tuned with: the image and kernel as they take them.
    #[inline]
    fn single_channel<'a>(
        input: &'a I,
        kernel: &'a [f32],
    ) -> Option<(&'a [[f32; W]; H], &'a ConvKernel<COUT>)> {
        if CIN != 1 || KS != 3 {
            return None;
        }
        let image = bytemuck::try_cast_ref(input).ok()?;
        let kernel = bytemuck::try_from_bytes(bytemuck::cast_slice(kernel.get(..9 * COUT)?)).ok()?;
        Some((image, kernel))
    }
}

impl<
        const H: usize,
        const W: usize,
        const CIN: usize,
        const COUT: usize,
        const KS: usize,
        const FLAT: usize,
        I: Pod,
    > Layer for ConvReluPool<H, W, CIN, COUT, KS, FLAT, I>
{
    type In = I;
    type Out = [f32; FLAT];
    type State = ConvState<FLAT>;
    const PARAMS: usize = Self::KERNEL + COUT;

    fn init_glorot(params: &mut [f32], rng: &mut impl RngCore) {
        let (kernel, bias) = params.split_at_mut(Self::KERNEL);
        fill_uniform(kernel, glorot_limit(KS * KS * CIN, KS * KS * COUT), rng);
        bias.iter_mut().take(COUT).for_each(|b| *b = 0.0);
    }

    #[inline]
    fn forward(params: &[f32], input: &mut I, state: &mut Self::State, _rate: f32, _rng: &mut impl RngCore) {
        let () = Self::SIZES;
        let (kernel, bias) = params.split_at(Self::KERNEL);
        let bias: &[f32; COUT] = view(bias);
        if let Some((image, kernel)) = Self::single_channel(input, kernel) {
            return conv_relu_pool(image, kernel, bias, &mut state.pooled, Some(&mut state.argmax));
        }
        conv_relu_pool_channels::<H, W, CIN, COUT, KS, FLAT>(
            bytemuck::cast_slice(core::slice::from_ref(input)),
            kernel,
            bias,
            &mut state.pooled,
            Some(&mut state.argmax),
        );
    }

    #[inline]
    fn output(state: &Self::State) -> &Self::Out {
        &state.pooled
    }

    #[inline]
    fn output_mut(state: &mut Self::State) -> &mut Self::Out {
        &mut state.pooled
    }

    #[inline]
    fn listed(_: &Self::State) -> Option<&[u16]> {
        None
    }

    #[inline]
    fn backward(
        params: &[f32],
        grads: &mut [f32],
        input: &I,
        state: &mut Self::State,
        out_grad: &Self::Out,
        active: Option<&[u16]>,
        _rate: f32,
        input_grad: Option<&mut I>,
    ) {
        let (kernel, _) = params.split_at(Self::KERNEL);
        let (kernel_grad, bias_grad) = grads.split_at_mut(Self::KERNEL);
        let bias_grad: &mut [f32; COUT] = view_mut(bias_grad);
        if let (Some((image, _)), Some(active), None) =
            (Self::single_channel(input, kernel), active, &input_grad)
        {
            let kernel_grad: &mut ConvKernel<COUT> = view_mut(kernel_grad);
            return conv_relu_pool_backward_listed(
                image,
                &state.pooled,
                active,
                &state.argmax,
                out_grad,
                kernel_grad,
                bias_grad,
            );
        }
        let input_grad = input_grad.map(|grad| {
            let grad: &mut [f32] = bytemuck::cast_slice_mut(core::slice::from_mut(grad));
            grad.fill(0.0);
            grad
        });
        conv_relu_pool_channels_backward::<H, W, CIN, COUT, KS, FLAT>(
            bytemuck::cast_slice(core::slice::from_ref(input)),
            kernel,
            &state.pooled,
            &state.argmax,
            out_grad,
            active,
            kernel_grad,
            bias_grad,
            input_grad,
        );
    }
}
