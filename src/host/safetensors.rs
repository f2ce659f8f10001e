//! Parameters as safetensors, with the tensor names, shapes and layouts of
//! the Keras model, so weights move both ways.

use super::{write_atomically, HostError};
use crate::kernels::all_finite;
use crate::model::{ParamBuffer, Params};
use crate::stack::{Book, Stack};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::boxed::Box;
use std::collections::HashMap;
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

/// The parameters as the bytes of a safetensors file: six `F32` tensors named
/// `conv.kernel`, `conv.bias`, `dense1.kernel`, `dense1.bias`,
/// `dense2.kernel`, `dense2.bias`, in the Keras shapes (the book's network,
/// [`Book`], as [`stack_safetensors_bytes`] writes it).
///
/// # Errors
/// A description when the safetensors library refuses the tensors.
pub fn safetensors_bytes<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
) -> Result<Vec<u8>, String> {
    stack_safetensors_bytes::<Book<H, W, K, FLAT, HIDDEN, CLASSES>>(params)
}

/// The parameters of stack `S` as the bytes of a safetensors file: an `F32`
/// tensor for each kernel and bias, named and shaped as Keras's (the rule is
/// in [`Tensor`](crate::stack::Tensor)).
///
/// ```
/// use tinycnn::stack::Stack;
/// use tinycnn::ParamBuffer;
/// tinycnn::stack! {
///     pub struct Rgb: [4, 4, 3] => { Conv2d(2, 3), Relu, MaxPool2, Flatten, Dense(2) }
/// }
/// let mut params = <Rgb as Stack>::Params::ZERO;
/// params[5] = 0.5;
/// let bytes = tinycnn::host::stack_safetensors_bytes::<Rgb>(&params).unwrap();
/// let back = tinycnn::host::stack_from_safetensors::<Rgb>(&bytes).unwrap();
/// assert_eq!(back[5], 0.5);
/// ```
///
/// # Errors
/// A description when the safetensors library refuses the tensors.
pub fn stack_safetensors_bytes<S: Stack>(params: &S::Params) -> Result<Vec<u8>, String> {
    const {
        assert!(
            !<S::Layers as crate::stack::Layer>::INT8,
            "a stack with a Dense(_, i8) layer is saved and read through its f32 export (Stack::export, Stack::import)"
        )
    };
    let flat = params.as_flat();
    let mut named = Vec::new();
    S::for_each_tensor(|t| named.push((t.name::<S>(), t.dims().to_vec(), flat.get(t.at..t.at + t.len()))));
    let tensors = named
        .iter()
        .map(|(name, dims, values)| Ok((name.as_str(), dims.clone(), values.ok_or("parameters too short")?)))
        .collect::<Result<Vec<_>, String>>()?;
    serialize_f32(&tensors, None)
}

/// The parameters of stack `S` from the bytes of a safetensors file; every
/// tensor of the stack must be there, `F32`, of its shape, finite.
///
/// # Errors
/// A description of the first problem found.
pub fn stack_from_safetensors<S: Stack>(bytes: &[u8]) -> Result<Box<S::Params>, String> {
    const {
        assert!(
            !<S::Layers as crate::stack::Layer>::INT8,
            "a stack with a Dense(_, i8) layer is saved and read through its f32 export (Stack::export, Stack::import)"
        )
    };
    let file = SafeTensors::deserialize(bytes).map_err(|e| std::format!("not a safetensors file ({e})"))?;
    let mut params = bytemuck::zeroed_box::<S::Params>();
    let flat = params.as_flat_mut();
    let mut result = Ok(());
    S::for_each_tensor(|t| {
        if result.is_ok() {
            result = match flat.get_mut(t.at..t.at + t.len()) {
                Some(values) => read_f32(&file, &t.name::<S>(), t.dims(), values),
                None => Err("parameters too short".to_string()),
            };
        }
    });
    result.map(|()| params)
}

/// Writes the parameters of stack `S` to a safetensors file, atomically.
///
/// # Errors
/// [`HostError::Io`], or [`HostError::Safetensors`].
pub fn save_stack<S: Stack>(params: &S::Params, path: &Path) -> Result<(), HostError> {
    let bytes = stack_safetensors_bytes::<S>(params).map_err(|detail| HostError::Safetensors {
        path: path.to_path_buf(),
        detail,
    })?;
    write_atomically(path, &bytes)
}

/// Reads the parameters of stack `S` from a safetensors file (such as one
/// exported from Keras).
///
/// # Errors
/// [`HostError::Io`], or [`HostError::Safetensors`] naming the missing
/// tensor, the wrong shape or dtype, or NaN and infinite values.
pub fn load_stack<S: Stack>(path: &Path) -> Result<Box<S::Params>, HostError> {
    let bytes = super::files::read_file(path)?;
    stack_from_safetensors::<S>(&bytes).map_err(|detail| HostError::Safetensors {
        path: path.to_path_buf(),
        detail,
    })
}

/// `F32` tensors (stored little-endian) and optional metadata as safetensors bytes.
pub(crate) fn serialize_f32(
    tensors: &[(&str, Vec<usize>, &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let little_endian: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&little_endian)
        .map(|((name, dims, _), bytes)| Ok((*name, TensorView::new(Dtype::F32, dims.clone(), bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| e.to_string())?;
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
}

/// Reads `F32` tensor `name` of exactly `shape` into `out`, refusing NaN and infinity.
pub(crate) fn read_f32(
    file: &SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    out: &mut [f32],
) -> Result<(), String> {
    let tensor = file
        .tensor(name)
        .map_err(|_| std::format!("tensor `{name}` is missing"))?;
    if tensor.dtype() != Dtype::F32 {
        return Err(std::format!(
            "tensor `{name}` has dtype {:?}, expected F32",
            tensor.dtype()
        ));
    }
    if tensor.shape() != shape {
        return Err(std::format!(
            "tensor `{name}` has shape {:?}, expected {:?}",
            tensor.shape(),
            shape
        ));
    }
    for (value, chunk) in out.iter_mut().zip(tensor.data().chunks_exact(4)) {
        *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    if !all_finite(out) {
        return Err(std::format!("tensor `{name}` contains NaN or infinity"));
    }
    Ok(())
}

/// Writes the parameters to a safetensors file, atomically.
///
/// ```
/// let path = std::env::temp_dir().join("tinycnn-doc-save.safetensors");
/// let mut params = tinycnn::FashionParams::boxed();
/// params.conv_bias[2] = 0.25;
/// tinycnn::host::save_safetensors(&params, &path).unwrap();
/// let loaded: Box<tinycnn::FashionParams> = tinycnn::host::load_safetensors(&path).unwrap();
/// assert_eq!(loaded.conv_bias[2], 0.25);
/// ```
///
/// # Errors
/// [`HostError::Io`], or [`HostError::Safetensors`].
pub fn save_safetensors<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    path: &Path,
) -> Result<(), HostError> {
    let bytes = safetensors_bytes(params).map_err(|detail| HostError::Safetensors {
        path: path.to_path_buf(),
        detail,
    })?;
    write_atomically(path, &bytes)
}

/// Reads parameters from a safetensors file (such as one exported from Keras).
///
/// # Errors
/// [`HostError::Io`], or [`HostError::Safetensors`] naming the missing
/// tensor, the wrong shape or dtype, or NaN and infinite values.
pub fn load_safetensors<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    path: &Path,
) -> Result<Box<Params<H, W, K, FLAT, HIDDEN, CLASSES>>, HostError> {
    let bytes = super::files::read_file(path)?;
    params_from_safetensors(&bytes).map_err(|detail| HostError::Safetensors {
        path: path.to_path_buf(),
        detail,
    })
}

/// Parameters from the bytes of a safetensors file.
///
/// # Errors
/// A description of the first problem found.
pub fn params_from_safetensors<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    bytes: &[u8],
) -> Result<Box<Params<H, W, K, FLAT, HIDDEN, CLASSES>>, String> {
    stack_from_safetensors::<Book<H, W, K, FLAT, HIDDEN, CLASSES>>(bytes)
}
