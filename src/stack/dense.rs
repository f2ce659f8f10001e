//! A dense layer: its input as the list of its non-zero cells (the input
//! came out of a ReLU), with dropout before it and ReLU after it where the
//! stack has them.

use super::{Layer, Streamed, Tensor, Zeroed};
use crate::kernels::dense::{dense_backward_listed, dense_listed, nonzero_positions};
use crate::kernels::dropout::dropout;
use crate::kernels::{axpy, relu};
use crate::model::{fill_uniform, glorot_limit};
use bytemuck::Pod;
use core::marker::PhantomData;
use rand_core::RngCore;

/// `OUT` outputs from the `IN` values of a map of type `I` (flattened in
/// memory order), with bias; dropout on the input first when `DROPOUT`,
/// ReLU after when `RELU`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dense<const IN: usize, const OUT: usize, I, const RELU: bool, const DROPOUT: bool>(PhantomData<I>);

/// A [`Dense`] layer's parameters: `kernel` `(in, out)` and `bias`, as
/// Keras shapes them.
///
/// ```
/// let params = tinycnn::stack::DenseParams::<3, 2> { kernel: [[1.0, 2.0]; 3], bias: [0.5, -0.5] };
/// assert_eq!(bytemuck::cast_slice::<_, f32>(core::slice::from_ref(&params)).len(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct DenseParams<const IN: usize, const OUT: usize> {
    /// The kernel, a row of `OUT` weights per input.
    pub kernel: [[f32; OUT]; IN],
    /// The bias.
    pub bias: [f32; OUT],
}

// SAFETY: `repr(C)` and only `f32` arrays: no padding, every bit pattern valid.
unsafe impl<const IN: usize, const OUT: usize> bytemuck::Zeroable for DenseParams<IN, OUT> {}
// SAFETY: as above; the type is `Copy` and `'static`.
unsafe impl<const IN: usize, const OUT: usize> Pod for DenseParams<IN, OUT> {}

impl<const IN: usize, const OUT: usize> Zeroed for DenseParams<IN, OUT> {
    const ZERO: Self = Self {
        kernel: [[0.0; OUT]; IN],
        bias: [0.0; OUT],
    };
}

impl<const IN: usize, const OUT: usize> crate::ParamBuffer for DenseParams<IN, OUT> {
    const ZERO: Self = <Self as Zeroed>::ZERO;
}

/// What a [`Dense`] layer keeps of a sample: its outputs and the positions
/// of its input's non-zero cells.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct DenseState<const IN: usize, const OUT: usize> {
    pub(crate) out: [f32; OUT],
    pub(crate) positions: [u16; IN],
    pub(crate) len: usize,
}

// SAFETY: `f32` and `u16` arrays and a `usize`: all zero bytes form a
// valid value (no listed cells).
unsafe impl<const IN: usize, const OUT: usize> bytemuck::Zeroable for DenseState<IN, OUT> {}

impl<const IN: usize, const OUT: usize> Zeroed for DenseState<IN, OUT> {
    const ZERO: Self = Self {
        out: [0.0; OUT],
        positions: [0; IN],
        len: 0,
    };
}

impl<const IN: usize, const OUT: usize> DenseState<IN, OUT> {
    /// The positions of the input's non-zero cells forward listed.
    pub(crate) fn active(&self) -> &[u16] {
        self.positions.get(..self.len).unwrap_or_default()
    }
}

/// The gradient at a dropout's input from the gradient at its output, in
/// place at the `active` cells: kept values were scaled by `1 / (1 - rate)`
/// on the way forward; the gradient elsewhere is zero.
#[inline]
pub(super) fn scale_kept<const IN: usize>(grad: &mut [f32; IN], active: &[u16], rate: f32) {
    let keep_scale = 1.0 / (1.0 - rate);
    for &cell in active {
        if let Some(d) = grad.get_mut(usize::from(cell)) {
            *d *= keep_scale;
        }
    }
}

/// The first `size_of::<T>()` bytes of `values` as a `T`.
#[inline]
pub(super) fn view<T: Pod>(values: &[f32]) -> &T {
    bytemuck::from_bytes(bytemuck::cast_slice(&values[..size_of::<T>() / 4]))
}

/// The same, to change.
#[inline]
pub(super) fn view_mut<T: Pod>(values: &mut [f32]) -> &mut T {
    bytemuck::from_bytes_mut(bytemuck::cast_slice_mut(&mut values[..size_of::<T>() / 4]))
}

impl<const IN: usize, const OUT: usize, I: Pod, const RELU: bool, const DROPOUT: bool>
    Dense<IN, OUT, I, RELU, DROPOUT>
{
    const SIZES: () = {
        assert!(
            size_of::<I>() == 4 * IN,
            "Dense: the input map does not hold IN values"
        );
        assert!(
            IN <= 1 << 16,
            "Dense: at most 65,536 inputs (their positions are listed in 16 bits)"
        );
    };
}

impl<const IN: usize, const OUT: usize, I: Pod + Send + Sync, const RELU: bool, const DROPOUT: bool> Layer
    for Dense<IN, OUT, I, RELU, DROPOUT>
{
    type In = I;
    type Out = [f32; OUT];
    type Junctions = ();
    type State = DenseState<IN, OUT>;
    type Params = DenseParams<IN, OUT>;
    const PARAMS: usize = IN * OUT + OUT;

    const FRAME_BYTES: usize = 0;
    const CONVS: usize = 0;
    const DENSES: usize = 1;

    fn tensors(at: usize, _: usize, denses: usize, f: &mut impl FnMut(Tensor)) {
        let number = denses + 1;
        f(Tensor {
            conv: false,
            number,
            bias: false,
            shape: [IN, OUT, 0, 0],
            rank: 2,
            at,
        });
        f(Tensor {
            conv: false,
            number,
            bias: true,
            shape: [OUT, 0, 0, 0],
            rank: 1,
            at: at + IN * OUT,
        });
    }

    fn init_glorot(params: &mut [f32], rng: &mut impl RngCore) {
        let (kernel, bias) = params.split_at_mut(IN * OUT);
        fill_uniform(kernel, glorot_limit(IN, OUT), rng);
        bias.iter_mut().take(OUT).for_each(|b| *b = 0.0);
    }

    #[inline]
    fn forward(params: &[f32], input: &mut I, state: &mut Self::State, rate: f32, rng: &mut impl RngCore) {
        let () = Self::SIZES;
        let input: &mut [f32; IN] = bytemuck::cast_mut(input);
        if DROPOUT && rate > 0.0 {
            dropout(input, rate, rng);
        }
        state.len = nonzero_positions(input, &mut state.positions);
        let (kernel, bias) = params.split_at(IN * OUT);
        let DenseState { out, positions, len } = state;
        let active = positions.get(..*len).unwrap_or_default();
        dense_listed(input, active, view(kernel), view(bias), out);
        if RELU {
            relu(out);
        }
    }

    #[inline]
    fn output(state: &Self::State) -> &Self::Out {
        &state.out
    }

    #[inline]
    fn output_mut(state: &mut Self::State) -> &mut Self::Out {
        &mut state.out
    }

    #[inline]
    fn listed(state: &Self::State) -> Option<&[u16]> {
        Some(state.active())
    }

    #[inline]
    fn backward(
        params: &[f32],
        grads: &mut [f32],
        input: &I,
        state: &Self::State,
        _: &mut (),
        out_grad: &Self::Out,
        _active: Option<&[u16]>,
        rate: f32,
        mut input_grad: Option<&mut I>,
    ) {
        let input: &[f32; IN] = bytemuck::cast_ref(input);
        let (kernel, _) = params.split_at(IN * OUT);
        let (kernel_grad, bias_grad) = grads.split_at_mut(IN * OUT);
        let active = state.active();
        dense_backward_listed(
            input,
            active,
            view(kernel),
            out_grad,
            Some(view_mut(kernel_grad)),
            view_mut(bias_grad),
            input_grad.as_deref_mut().map(bytemuck::cast_mut),
        );
        if let Some(input_grad) = input_grad.filter(|_| DROPOUT && rate > 0.0) {
            scale_kept::<IN>(bytemuck::cast_mut(input_grad), active, rate);
        }
    }
}

impl<const IN: usize, const OUT: usize, I: Pod + Send + Sync, const RELU: bool, const DROPOUT: bool> Streamed
    for Dense<IN, OUT, I, RELU, DROPOUT>
{
    fn drop_out(input: &mut I, rate: f32, rng: &mut impl RngCore) {
        if DROPOUT && rate > 0.0 {
            dropout(bytemuck::cast_mut::<I, [f32; IN]>(input), rate, rng);
        }
    }

    fn backward_inputs(
        params: &[f32],
        input: &I,
        state: &mut Self::State,
        out_grad: &[f32; OUT],
        bias_grad: &mut [f32; OUT],
        input_grad: &mut I,
        rate: f32,
    ) {
        let input: &[f32; IN] = bytemuck::cast_ref(input);
        let input_grad: &mut [f32; IN] = bytemuck::cast_mut(input_grad);
        let (kernel, _) = params.split_at(IN * OUT);
        let active = state.active();
        dense_backward_listed(
            input,
            active,
            view(kernel),
            out_grad,
            None,
            bias_grad,
            Some(&mut *input_grad),
        );
        if DROPOUT && rate > 0.0 {
            scale_kept(input_grad, active, rate);
        }
    }

    fn step_kernel(params: &mut [f32], input: &I, out_grad: &[f32; OUT], lr: f32, _: &mut impl RngCore) {
        let input: &[f32; IN] = bytemuck::cast_ref(input);
        let (kernel, _) = params.split_at_mut(IN * OUT);
        let kernel: &mut [[f32; OUT]; IN] = view_mut(kernel);
        for (&x, row) in input.iter().zip(kernel.iter_mut()) {
            if x != 0.0 {
                axpy(-lr * x, out_grad, row);
            }
        }
    }
}
