//! A convolution fused with the ReLU, and the 2x2 max-pool if any, after it.

use super::dense::{view, view_mut};
use super::{Layer, Tensor, Zeroed};
use crate::kernels::conv::conv_relu_pool_backward_listed;
use crate::kernels::{conv_relu_pool, conv_relu_pool_channels, conv_relu_pool_channels_backward, ConvKernel};
use crate::model::{fill_uniform, glorot_limit};
use bytemuck::Pod;
use core::marker::PhantomData;
use rand_core::RngCore;

/// `Conv2d(COUT, KS)` (SAME, stride 1, bias) over an `H`x`W`x`CIN` map of
/// type `I`, then ReLU and the pooling `P` ([`MaxPool2`] or [`Full`]): `FLAT` outputs,
/// height-width-channel (`(H/2)(W/2)COUT` pooled, `H W COUT` not). The
/// pooled map is built two convolution rows at a time; the full-resolution
/// map never exists.
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::type_complexity)]
pub struct ConvRelu<
    const H: usize,
    const W: usize,
    const CIN: usize,
    const COUT: usize,
    const KS: usize,
    const FLAT: usize,
    I,
    P,
>(PhantomData<(I, P)>);

/// Whether a [`ConvRelu`] pools its map: [`MaxPool2`] or [`Full`].
pub trait Pooling {
    /// `true` for a 2x2 max-pool.
    const POOL: bool;

    /// [`conv_relu_pool_channels`] with this pooling.
    fn channels_forward<
        const H: usize,
        const W: usize,
        const CIN: usize,
        const COUT: usize,
        const KS: usize,
        const FLAT: usize,
    >(
        input: &[f32],
        kernel: &[f32],
        bias: &[f32; COUT],
        out: &mut [f32; FLAT],
        argmax: Option<&mut [u8; FLAT]>,
    );

    /// [`conv_relu_pool_channels_backward`] with this pooling.
    #[allow(clippy::too_many_arguments)]
    fn channels_backward<
        const H: usize,
        const W: usize,
        const CIN: usize,
        const COUT: usize,
        const KS: usize,
        const FLAT: usize,
    >(
        input: &[f32],
        kernel: &[f32],
        out: (&[f32; FLAT], &[u8; FLAT]),
        out_grad: &[f32; FLAT],
        active: Option<&[u16]>,
        kernel_grad: &mut [f32],
        bias_grad: &mut [f32; COUT],
        input_grad: Option<&mut [f32]>,
    );

    /// Forward of a one-channel 3x3 convolution on the kernels tuned for it,
    /// if this pooling has them; `false` if not.
    fn single_channel_forward<const H: usize, const W: usize, const COUT: usize, const FLAT: usize>(
        image: &[[f32; W]; H],
        kernel: &ConvKernel<COUT>,
        bias: &[f32; COUT],
        pooled: &mut [f32; FLAT],
        argmax: Option<&mut [u8; FLAT]>,
    ) -> bool {
        let _ = (image, kernel, bias, pooled, argmax);
        false
    }

    /// Its backward, given the next layer's list of the output's non-zero
    /// cells; `false` if this pooling has no such kernel.
    fn single_channel_backward<const H: usize, const W: usize, const COUT: usize, const FLAT: usize>(
        image: &[[f32; W]; H],
        pooled: (&[f32; FLAT], &[u8; FLAT]),
        active: &[u16],
        pooled_grad: &[f32; FLAT],
        kernel_grad: &mut ConvKernel<COUT>,
        bias_grad: &mut [f32; COUT],
    ) -> bool {
        let _ = (image, pooled, active, pooled_grad, kernel_grad, bias_grad);
        false
    }
}

/// A 2x2 max-pool after the convolution's ReLU.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxPool2;

/// No pooling: the convolution's full map, after ReLU.
#[derive(Debug, Clone, Copy, Default)]
pub struct Full;

/// The multi-channel kernels with pooling `$pool` (a literal: a const
/// argument cannot name `Self::POOL`).
macro_rules! channel_kernels {
    ($pool:literal) => {
        #[inline]
        fn channels_forward<
            const H: usize,
            const W: usize,
            const CIN: usize,
            const COUT: usize,
            const KS: usize,
            const FLAT: usize,
        >(
            input: &[f32],
            kernel: &[f32],
            bias: &[f32; COUT],
            out: &mut [f32; FLAT],
            argmax: Option<&mut [u8; FLAT]>,
        ) {
            conv_relu_pool_channels::<H, W, CIN, COUT, KS, FLAT, $pool>(input, kernel, bias, out, argmax);
        }

        #[inline]
        fn channels_backward<
            const H: usize,
            const W: usize,
            const CIN: usize,
            const COUT: usize,
            const KS: usize,
            const FLAT: usize,
        >(
            input: &[f32],
            kernel: &[f32],
            (out, argmax): (&[f32; FLAT], &[u8; FLAT]),
            out_grad: &[f32; FLAT],
            active: Option<&[u16]>,
            kernel_grad: &mut [f32],
            bias_grad: &mut [f32; COUT],
            input_grad: Option<&mut [f32]>,
        ) {
            conv_relu_pool_channels_backward::<H, W, CIN, COUT, KS, FLAT, $pool>(
                input,
                kernel,
                out,
                argmax,
                out_grad,
                active,
                kernel_grad,
                bias_grad,
                input_grad,
            );
        }
    };
}

impl Pooling for MaxPool2 {
    const POOL: bool = true;

    channel_kernels!(true);

    #[inline]
    fn single_channel_forward<const H: usize, const W: usize, const COUT: usize, const FLAT: usize>(
        image: &[[f32; W]; H],
        kernel: &ConvKernel<COUT>,
        bias: &[f32; COUT],
        pooled: &mut [f32; FLAT],
        argmax: Option<&mut [u8; FLAT]>,
    ) -> bool {
        conv_relu_pool(image, kernel, bias, pooled, argmax);
        true
    }

    #[inline]
    fn single_channel_backward<const H: usize, const W: usize, const COUT: usize, const FLAT: usize>(
        image: &[[f32; W]; H],
        (pooled, argmax): (&[f32; FLAT], &[u8; FLAT]),
        active: &[u16],
        pooled_grad: &[f32; FLAT],
        kernel_grad: &mut ConvKernel<COUT>,
        bias_grad: &mut [f32; COUT],
    ) -> bool {
        conv_relu_pool_backward_listed(image, pooled, active, argmax, pooled_grad, kernel_grad, bias_grad);
        true
    }
}

impl Pooling for Full {
    const POOL: bool = false;

    channel_kernels!(false);
}

/// A [`ConvRelu`]'s parameters: `kernel` `(ky, kx, in, out)` and `bias`,
/// as Keras shapes them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ConvParams<const KS: usize, const CIN: usize, const COUT: usize> {
    /// The kernel.
    pub kernel: [[[[f32; COUT]; CIN]; KS]; KS],
    /// The bias.
    pub bias: [f32; COUT],
}

// SAFETY: `repr(C)` and only `f32` arrays: no padding, every bit pattern valid.
unsafe impl<const KS: usize, const CIN: usize, const COUT: usize> bytemuck::Zeroable
    for ConvParams<KS, CIN, COUT>
{
}
// SAFETY: as above; the type is `Copy` and `'static`.
unsafe impl<const KS: usize, const CIN: usize, const COUT: usize> Pod for ConvParams<KS, CIN, COUT> {}

impl<const KS: usize, const CIN: usize, const COUT: usize> Zeroed for ConvParams<KS, CIN, COUT> {
    const ZERO: Self = Self {
        kernel: [[[[0.0; COUT]; CIN]; KS]; KS],
        bias: [0.0; COUT],
    };
}

impl<const KS: usize, const CIN: usize, const COUT: usize> crate::ParamBuffer for ConvParams<KS, CIN, COUT> {
    const ZERO: Self = <Self as Zeroed>::ZERO;
}

/// What a [`ConvRelu`] keeps of a sample: its output map and each pooling
/// window's winner.
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
        P: Pooling,
    > ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>
{
    const KERNEL: usize = KS * KS * CIN * COUT;
    const SIZES: () = {
        assert!(
            size_of::<I>() == 4 * H * W * CIN,
            "Conv2d: the input map does not hold H*W*CIN values"
        );
        assert!(KS % 2 == 1, "Conv2d: the kernel size must be odd (SAME padding)");
        assert!(
            !P::POOL || (H.is_multiple_of(2) && W.is_multiple_of(2)),
            "MaxPool2: the height and width must be even"
        );
        assert!(
            FLAT == if P::POOL {
                H / 2 * (W / 2) * COUT
            } else {
                H * W * COUT
            },
            "Conv2d: FLAT must be H*W*COUT, or (H/2)*(W/2)*COUT pooled"
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
        I: Pod + Send + Sync,
        P: Pooling,
    > Layer for ConvRelu<H, W, CIN, COUT, KS, FLAT, I, P>
{
    type In = I;
    type Out = [f32; FLAT];
    type Junctions = ();
    type State = ConvState<FLAT>;
    type Params = ConvParams<KS, CIN, COUT>;
    const PARAMS: usize = Self::KERNEL + COUT;

    // Two convolution rows, in either kernel.
    const FRAME_BYTES: usize = 2 * W * COUT * 4;
    const CONVS: usize = 1;
    const DENSES: usize = 0;

    fn tensors(at: usize, convs: usize, _: usize, f: &mut impl FnMut(Tensor)) {
        let number = convs + 1;
        f(Tensor {
            conv: true,
            number,
            bias: false,
            shape: [KS, KS, CIN, COUT],
            rank: 4,
            at,
        });
        f(Tensor {
            conv: true,
            number,
            bias: true,
            shape: [COUT, 0, 0, 0],
            rank: 1,
            at: at + Self::KERNEL,
        });
    }

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
        let ConvState { pooled, argmax } = state;
        if let Some((image, kernel)) = Self::single_channel(input, kernel) {
            if P::single_channel_forward(image, kernel, bias, pooled, Some(&mut *argmax)) {
                return;
            }
        }
        P::channels_forward::<H, W, CIN, COUT, KS, FLAT>(
            bytemuck::cast_slice(core::slice::from_ref(input)),
            kernel,
            bias,
            pooled,
            Some(argmax),
        );
    }

    /// The one-channel 3x3 convolution without its pooling winners; any
    /// other as [`forward`](Layer::forward) (one instance of the
    /// multi-channel kernel keeps it inlined).
    #[inline]
    fn infer(params: &[f32], input: &mut I, state: &mut Self::State) {
        let (kernel, bias) = params.split_at(Self::KERNEL);
        if let Some((image, kernel)) = Self::single_channel(input, kernel) {
            if P::single_channel_forward(image, kernel, view(bias), &mut state.pooled, None) {
                return;
            }
        }
        Self::forward(params, input, state, 0.0, &mut super::workspace::NoDraws);
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
        state: &Self::State,
        _: &mut (),
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
            let pooled = (&state.pooled, &state.argmax);
            if P::single_channel_backward(image, pooled, active, out_grad, kernel_grad, bias_grad) {
                return;
            }
        }
        let input_grad = input_grad.map(|grad| {
            let grad: &mut [f32] = bytemuck::cast_slice_mut(core::slice::from_mut(grad));
            grad.fill(0.0);
            grad
        });
        P::channels_backward::<H, W, CIN, COUT, KS, FLAT>(
            bytemuck::cast_slice(core::slice::from_ref(input)),
            kernel,
            (&state.pooled, &state.argmax),
            out_grad,
            active,
            kernel_grad,
            bias_grad,
            input_grad,
        );
    }
}
