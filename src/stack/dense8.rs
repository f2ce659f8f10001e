//! A dense layer whose kernel lives in 8 bits, one scale per output: a
//! quarter of the `f32` kernel's bytes, trained in place by
//! [`StreamingSgdTrainer`](crate::train::StreamingSgdTrainer) with
//! stochastic rounding. `Dense(OUT, i8)` in [`stack!`](crate::stack!).

use super::dense::{scale_kept, view, view_mut, DenseState};
use super::{Layer, Streamed, Tensor, Zeroed};
use crate::kernels::dense::nonzero_positions;
use crate::kernels::dropout::dropout;
use crate::kernels::{
    add_outer_stochastic, axpy, dense_scaled_i8_listed, relu, scaled_i8_input_grad_listed, GRID_MAX,
};
use crate::model::int8_kernel::{dequantize_into, nearest_step, quantize_into, quantize_with_into};
use crate::model::{glorot_limit, uniform, Int8Kernel};
use crate::Error;
use bytemuck::Pod;
use core::marker::PhantomData;
use rand_core::RngCore;

/// `OUT` outputs from the `IN` values of a map of type `I`, the kernel in
/// 8 bits (weight `values[i][j] * scales[j]`, values in `-127..=127`), with
/// an `f32` bias; dropout on the input first when `DROPOUT`, ReLU after when
/// `RELU`. Its inputs are rounded to fixed point in place as it reads them
/// (each sum is an exact integer sum).
///
/// In a stack's flat parameters it takes `OUT` scales, then the values
/// (four to an `f32` slot), then the bias: [`Dense8Params`]' layout. Its
/// kernel's gradient is never formed: a stack with one trains with
/// [`StreamingSgdTrainer`](crate::train::StreamingSgdTrainer), which adds
/// each sample's update to the grid in place.
///
/// ```
/// use rand_core::SeedableRng;
/// use tinycnn::stack::{Stack, Workspace};
/// use tinycnn::ParamBuffer;
/// tinycnn::stack! {
///     pub struct Small8: [4, 4, 1] => { Conv2d(2, 3), Relu, MaxPool2, Flatten, Dense(4, i8), Relu, Dense(2) }
/// }
/// // 9 * 2 + 2 for the convolution; 4 scales, 8 * 4 values in 8 slots and
/// // 4 biases; 4 * 2 + 2 for the logits.
/// assert_eq!(Small8::PARAMETERS, 20 + (4 + 8 + 4) + 10);
/// let mut params = <Small8 as Stack>::Params::ZERO;
/// Small8::init_glorot(&mut params, &mut rand_pcg::Pcg32::seed_from_u64(1));
/// assert!(Workspace::<Small8>::new().predict(&params, &[[0.5; 4]; 4]).unwrap() < 2);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Dense8<const IN: usize, const OUT: usize, I, const RELU: bool, const DROPOUT: bool>(
    PhantomData<I>,
);

/// A [`Dense8`] layer's parameters: the kernel in 8 bits, then the bias.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Dense8Params<const IN: usize, const OUT: usize> {
    /// The kernel.
    pub kernel: Int8Kernel<IN, OUT>,
    /// The bias.
    pub bias: [f32; OUT],
}

// SAFETY: `f32` and `i8` arrays: all zero bytes form a valid value.
unsafe impl<const IN: usize, const OUT: usize> bytemuck::Zeroable for Dense8Params<IN, OUT> {}

impl<const IN: usize, const OUT: usize> Zeroed for Dense8Params<IN, OUT> {
    const ZERO: Self = Self {
        kernel: Int8Kernel::zeroed(),
        bias: [0.0; OUT],
    };
}

/// The `f32` slots the kernel's values take, four to a slot.
const fn value_slots(values: usize) -> usize {
    values.div_ceil(4)
}

/// The layer's parameters in place in a stack's flat `f32` slots.
struct Parts<'a, const IN: usize, const OUT: usize> {
    scales: &'a [f32; OUT],
    values: &'a [[i8; OUT]; IN],
    bias: &'a [f32; OUT],
}

/// The same, to change.
struct PartsMut<'a, const IN: usize, const OUT: usize> {
    scales: &'a mut [f32; OUT],
    values: &'a mut [[i8; OUT]; IN],
    bias: &'a mut [f32; OUT],
}

fn parts<const IN: usize, const OUT: usize>(params: &[f32]) -> Parts<'_, IN, OUT> {
    let (scales, rest) = params.split_at(OUT);
    let (values, bias) = rest.split_at(value_slots(IN * OUT));
    let bytes: &[u8] = bytemuck::cast_slice(values);
    Parts {
        scales: view(scales),
        values: bytemuck::from_bytes(&bytes[..IN * OUT]),
        bias: view(bias),
    }
}

fn parts_mut<const IN: usize, const OUT: usize>(params: &mut [f32]) -> PartsMut<'_, IN, OUT> {
    let (scales, rest) = params.split_at_mut(OUT);
    let (values, bias) = rest.split_at_mut(value_slots(IN * OUT));
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(values);
    PartsMut {
        scales: view_mut(scales),
        values: bytemuck::from_bytes_mut(&mut bytes[..IN * OUT]),
        bias: view_mut(bias),
    }
}

impl<const IN: usize, const OUT: usize, I: Pod, const RELU: bool, const DROPOUT: bool>
    Dense8<IN, OUT, I, RELU, DROPOUT>
{
    const SIZES: () = {
        assert!(
            size_of::<I>() == 4 * IN,
            "Dense(_, i8): the input map does not hold IN values"
        );
        assert!(
            IN <= 1 << 16,
            "Dense(_, i8): at most 65,536 inputs (their positions are listed in 16 bits)"
        );
    };
}

impl<const IN: usize, const OUT: usize, I: Pod + Send + Sync, const RELU: bool, const DROPOUT: bool> Layer
    for Dense8<IN, OUT, I, RELU, DROPOUT>
{
    type In = I;
    type Out = [f32; OUT];
    type Junctions = ();
    type State = DenseState<IN, OUT>;
    type Params = Dense8Params<IN, OUT>;
    const PARAMS: usize = 2 * OUT + value_slots(IN * OUT);
    const F32_PARAMS: usize = IN * OUT + OUT;
    const INT8: bool = true;

    const FRAME_BYTES: usize = 0;
    const CONVS: usize = 0;
    const DENSES: usize = 1;

    fn tensors(at: usize, _: usize, denses: usize, f: &mut impl FnMut(Tensor)) {
        <super::Dense<IN, OUT, I, RELU, DROPOUT> as Layer>::tensors(at, 0, denses, f);
    }

    /// Glorot-uniform weights drawn as the `f32` layer draws them (one draw
    /// per weight, in order), each rounded to the nearest step of twice
    /// the Glorot limit over 127: within +-64 steps, room to grow.
    fn init_glorot(params: &mut [f32], rng: &mut impl RngCore) {
        let limit = glorot_limit(IN, OUT);
        let scale = 2.0 * limit / f32::from(GRID_MAX);
        let PartsMut { scales, values, bias } = parts_mut::<IN, OUT>(params);
        *scales = [scale; OUT];
        for v in values.as_flattened_mut() {
            *v = nearest_step(uniform(limit, rng) / scale);
        }
        *bias = [0.0; OUT];
    }

    #[inline]
    fn forward(params: &[f32], input: &mut I, state: &mut Self::State, rate: f32, rng: &mut impl RngCore) {
        let () = Self::SIZES;
        let input: &mut [f32; IN] = bytemuck::cast_mut(input);
        if DROPOUT && rate > 0.0 {
            dropout(input, rate, rng);
        }
        state.len = nonzero_positions(input, &mut state.positions);
        let Parts { scales, values, bias } = parts::<IN, OUT>(params);
        let DenseState { out, positions, len } = state;
        let active = positions.get(..*len).unwrap_or_default();
        dense_scaled_i8_listed(input, active, values, scales, bias, out);
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

    /// The bias's gradient and the input's; the kernel's is not formed
    /// (its slots in `grads` are left as they are).
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
        input_grad: Option<&mut I>,
    ) {
        let bias_grad: &mut [f32; OUT] = view_mut(&mut grads[OUT + value_slots(IN * OUT)..]);
        backward_inputs::<IN, OUT, DROPOUT>(
            params,
            bytemuck::cast_ref(input),
            state.active(),
            out_grad,
            bias_grad,
            input_grad.map(bytemuck::cast_mut),
            rate,
        );
    }

    fn export(params: &[f32], f32_params: &mut [f32]) {
        let Parts { scales, values, bias } = parts::<IN, OUT>(params);
        let (kernel, f32_bias) = f32_params.split_at_mut(IN * OUT);
        dequantize_into(scales, values, view_mut(kernel));
        f32_bias[..OUT].copy_from_slice(bias);
    }

    fn import(f32_params: &[f32], params: &mut [f32], scales: &mut &[f32]) -> Result<(), Error> {
        let (kernel, f32_bias) = f32_params.split_at(IN * OUT);
        let given = scales.get(..OUT);
        let PartsMut {
            scales: own_scales,
            values,
            bias,
        } = parts_mut::<IN, OUT>(params);
        match given {
            Some(given) if !given.is_empty() => {
                quantize_with_into(own_scales, values, view(kernel), view(given))?;
                *scales = scales.get(OUT..).unwrap_or_default();
            }
            _ => quantize_into(own_scales, values, view(kernel))?,
        }
        bias.copy_from_slice(&f32_bias[..OUT]);
        Ok(())
    }

    fn scales(params: &[f32], f: &mut impl FnMut(&[f32])) {
        f(parts::<IN, OUT>(params).scales);
    }

    fn each_exported(params: &[f32], f: &mut impl FnMut(f32)) {
        let Parts { scales, values, bias } = parts::<IN, OUT>(params);
        for row in values {
            for (&v, &scale) in row.iter().zip(scales) {
                f(f32::from(v) * scale);
            }
        }
        bias.iter().for_each(|&b| f(b));
    }
}

/// Backward through an 8-bit dense layer at the listed inputs: the bias's
/// gradient added to `bias_grad`, the input's written to `input_grad` (in
/// fixed point, an exact integer sum per input), scaled where dropout kept
/// the input.
fn backward_inputs<const IN: usize, const OUT: usize, const DROPOUT: bool>(
    params: &[f32],
    input: &[f32; IN],
    active: &[u16],
    out_grad: &[f32; OUT],
    bias_grad: &mut [f32; OUT],
    input_grad: Option<&mut [f32; IN]>,
    rate: f32,
) {
    let _ = input;
    let Parts { scales, values, .. } = parts::<IN, OUT>(params);
    axpy(1.0, out_grad, bias_grad);
    let Some(input_grad) = input_grad else {
        return;
    };
    let mut scaled = [0.0f32; OUT];
    for ((s, &g), &scale) in scaled.iter_mut().zip(out_grad).zip(scales) {
        *s = g * scale;
    }
    scaled_i8_input_grad_listed(active, values, &scaled, input_grad);
    if DROPOUT && rate > 0.0 {
        scale_kept(input_grad, active, rate);
    }
}

impl<const IN: usize, const OUT: usize, I: Pod + Send + Sync, const RELU: bool, const DROPOUT: bool> Streamed
    for Dense8<IN, OUT, I, RELU, DROPOUT>
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
        // The list of the inputs as forward rounded them.
        let input: &[f32; IN] = bytemuck::cast_ref(input);
        state.len = nonzero_positions(input, &mut state.positions);
        backward_inputs::<IN, OUT, DROPOUT>(
            params,
            input,
            state.active(),
            out_grad,
            bias_grad,
            Some(bytemuck::cast_mut(input_grad)),
            rate,
        );
    }

    /// Adds `-lr * input (outer) out_grad` to the grid, stochastically
    /// rounded with random bits from `rng`.
    fn step_kernel(params: &mut [f32], input: &I, out_grad: &[f32; OUT], lr: f32, rng: &mut impl RngCore) {
        let mut delta = [0.0f32; OUT];
        for (d, &g) in delta.iter_mut().zip(out_grad) {
            *d = -lr * g;
        }
        let PartsMut { scales, values, .. } = parts_mut::<IN, OUT>(params);
        add_outer_stochastic(values, scales, bytemuck::cast_ref(input), &delta, rng);
    }
}
