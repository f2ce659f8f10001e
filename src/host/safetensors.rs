//! Parameters as safetensors, with the tensor names, shapes and layouts of
//! the Keras model, so weights move both ways.

use super::{write_atomically, HostError};
use crate::kernels::all_finite;
use crate::model::Params;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::boxed::Box;
use std::collections::HashMap;
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

/// The parameters as the bytes of a safetensors file: six `F32` tensors named
/// `conv.kernel`, `conv.bias`, `dense1.kernel`, `dense1.bias`,
/// `dense2.kernel`, `dense2.bias`, in the Keras shapes.
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
    serialize_f32(&params_tensors(params), None)
}

/// The parameters as `(name, shape, values)`, in storage order.
pub(crate) fn params_tensors<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
) -> Vec<(&'static str, Vec<usize>, &[f32])> {
    params
        .tensors()
        .iter()
        .map(|t| (t.name, t.dims().to_vec(), t.values))
        .collect()
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
    let file = SafeTensors::deserialize(bytes).map_err(|e| std::format!("not a safetensors file ({e})"))?;
    let mut params = bytemuck::zeroed_box::<Params<H, W, K, FLAT, HIDDEN, CLASSES>>();
    let shapes = Params::<H, W, K, FLAT, HIDDEN, CLASSES>::TENSOR_SHAPES;
    for ((name, shape, rank), values) in shapes.into_iter().zip(params.tensor_values_mut()) {
        read_f32(&file, name, &shape[..rank], values)?;
    }
    Ok(params)
}
