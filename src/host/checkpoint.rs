//! Training checkpoints: everything a run needs to continue exactly where it
//! stopped, in one safetensors file written atomically.

use super::safetensors::{read_f32, serialize_f32};
use super::{write_atomically, HostError};
use crate::model::{ParamBuffer, Params};
use crate::stack::{Book, Stack};
use crate::train::Adam;
use safetensors::SafeTensors;
use std::boxed::Box;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

const EPOCHS_DONE: &str = "tinycnn.epochs_done";
const ADAM_STEPS: &str = "tinycnn.adam_steps";

/// Adam's state in a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    /// Steps taken.
    pub steps: u32,
    /// First moment, flat.
    pub m: Vec<f32>,
    /// Second moment, flat.
    pub v: Vec<f32>,
}

/// A training run as saved after an epoch.
#[derive(Debug, Clone)]
pub struct Checkpoint<
    const H: usize = 28,
    const W: usize = 28,
    const K: usize = 10,
    const FLAT: usize = 1960,
    const HIDDEN: usize = 100,
    const CLASSES: usize = 10,
> {
    /// The parameters after `epochs_done` epochs.
    pub params: Box<Params<H, W, K, FLAT, HIDDEN, CLASSES>>,
    /// Adam's state, when the run uses Adam.
    pub adam: Option<AdamState>,
    /// Epochs completed.
    pub epochs_done: usize,
    /// The caller's own entries (settings, history, ...).
    pub info: BTreeMap<String, String>,
}

/// A training run of stack `S` as saved after an epoch.
#[derive(Debug, Clone)]
pub struct StackCheckpoint<S: Stack> {
    /// The parameters after `epochs_done` epochs.
    pub params: Box<S::Params>,
    /// Adam's state, when the run uses Adam.
    pub adam: Option<AdamState>,
    /// Epochs completed.
    pub epochs_done: usize,
    /// The caller's own entries (settings, history, ...).
    pub info: BTreeMap<String, String>,
}

/// Writes a checkpoint atomically: a reader (or a run killed while writing)
/// sees the previous checkpoint or this one, never a mix.
///
/// ```
/// use std::collections::BTreeMap;
/// use tinycnn::host::{load_checkpoint, save_checkpoint};
/// let path = std::env::temp_dir().join("tinycnn-doc-checkpoint.safetensors");
/// let params = tinycnn::FashionParams::boxed();
/// let info = BTreeMap::from([("recipe".to_string(), "sgd".to_string())]);
/// save_checkpoint(&path, &params, None, 3, &info).unwrap();
/// let back: tinycnn::host::Checkpoint = load_checkpoint(&path).unwrap();
/// assert_eq!((back.epochs_done, back.info["recipe"].as_str()), (3, "sgd"));
/// ```
///
/// # Errors
/// [`HostError::Io`] or [`HostError::Safetensors`], naming the file.
pub fn save_checkpoint<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    path: &Path,
    params: &Params<H, W, K, FLAT, HIDDEN, CLASSES>,
    adam: Option<&Adam<Params<H, W, K, FLAT, HIDDEN, CLASSES>>>,
    epochs_done: usize,
    info: &BTreeMap<String, String>,
) -> Result<(), HostError> {
    save_stack_checkpoint::<Book<H, W, K, FLAT, HIDDEN, CLASSES>>(path, params, adam, epochs_done, info)
}

/// [`save_checkpoint`] for any stack: its tensors under the stack's names
/// (see [`Tensor`](crate::stack::Tensor)), Adam's moments, and `info`.
///
/// # Errors
/// [`HostError::Io`] or [`HostError::Safetensors`], naming the file.
pub fn save_stack_checkpoint<S: Stack>(
    path: &Path,
    params: &S::Params,
    adam: Option<&Adam<S::Params>>,
    epochs_done: usize,
    info: &BTreeMap<String, String>,
) -> Result<(), HostError> {
    let flat = params.as_flat();
    let mut named = Vec::new();
    S::for_each_tensor(|t| named.push((t.name::<S>(), t.dims().to_vec(), t.at..t.at + t.len())));
    let mut tensors: Vec<(&str, Vec<usize>, &[f32])> = named
        .iter()
        .map(|(name, dims, range)| {
            (
                name.as_str(),
                dims.clone(),
                flat.get(range.clone()).unwrap_or_default(),
            )
        })
        .collect();
    let mut metadata: HashMap<String, String> = info.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    metadata.insert(EPOCHS_DONE.to_string(), epochs_done.to_string());
    if let Some(adam) = adam {
        let (m, v) = adam.moments();
        tensors.push(("adam.m", std::vec![S::PARAMETERS], m.as_flat()));
        tensors.push(("adam.v", std::vec![S::PARAMETERS], v.as_flat()));
        metadata.insert(ADAM_STEPS.to_string(), adam.steps().to_string());
    }
    let bytes = serialize_f32(&tensors, Some(metadata)).map_err(|detail| HostError::Safetensors {
        path: path.to_path_buf(),
        detail,
    })?;
    write_atomically(path, &bytes)
}

/// Reads a checkpoint written by [`save_checkpoint`].
///
/// # Errors
/// [`HostError::Io`], or [`HostError::Safetensors`] for a malformed file.
pub fn load_checkpoint<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    path: &Path,
) -> Result<Checkpoint<H, W, K, FLAT, HIDDEN, CLASSES>, HostError> {
    let bytes = super::files::read_file(path)?;
    checkpoint_from_safetensors(&bytes).map_err(|detail| HostError::Safetensors {
        path: path.to_path_buf(),
        detail,
    })
}

/// Reads a checkpoint of stack `S` written by [`save_stack_checkpoint`].
///
/// # Errors
/// [`HostError::Io`], or [`HostError::Safetensors`] for a malformed file or
/// one of another stack (naming the tensor missing or misshapen).
pub fn load_stack_checkpoint<S: Stack>(path: &Path) -> Result<StackCheckpoint<S>, HostError> {
    let bytes = super::files::read_file(path)?;
    stack_checkpoint_from_safetensors::<S>(&bytes).map_err(|detail| HostError::Safetensors {
        path: path.to_path_buf(),
        detail,
    })
}

/// A checkpoint from the bytes of its file.
///
/// # Errors
/// A description of the first problem found.
pub fn checkpoint_from_safetensors<
    const H: usize,
    const W: usize,
    const K: usize,
    const FLAT: usize,
    const HIDDEN: usize,
    const CLASSES: usize,
>(
    bytes: &[u8],
) -> Result<Checkpoint<H, W, K, FLAT, HIDDEN, CLASSES>, String> {
    let StackCheckpoint {
        params,
        adam,
        epochs_done,
        info,
    } = stack_checkpoint_from_safetensors::<Book<H, W, K, FLAT, HIDDEN, CLASSES>>(bytes)?;
    Ok(Checkpoint {
        params,
        adam,
        epochs_done,
        info,
    })
}

/// A checkpoint of stack `S` from the bytes of its file.
///
/// # Errors
/// A description of the first problem found.
pub fn stack_checkpoint_from_safetensors<S: Stack>(bytes: &[u8]) -> Result<StackCheckpoint<S>, String> {
    let params = super::stack_from_safetensors::<S>(bytes)?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| std::format!("not a safetensors file ({e})"))?;
    let mut info: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let number = |info: &mut BTreeMap<String, String>, key: &str| -> Result<Option<u64>, String> {
        info.remove(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| std::format!("metadata `{key}` is not a number: {v:?}"))
            })
            .transpose()
    };
    let epochs_done = number(&mut info, EPOCHS_DONE)?.ok_or("not a checkpoint: no epoch count")? as usize;
    let adam = match number(&mut info, ADAM_STEPS)? {
        None => None,
        Some(steps) => {
            let file =
                SafeTensors::deserialize(bytes).map_err(|e| std::format!("not a safetensors file ({e})"))?;
            let count = S::PARAMETERS;
            let (mut m, mut v) = (std::vec![0.0; count], std::vec![0.0; count]);
            read_f32(&file, "adam.m", &[count], &mut m)?;
            read_f32(&file, "adam.v", &[count], &mut v)?;
            let steps = u32::try_from(steps).map_err(|_| "Adam step count out of range".to_string())?;
            Some(AdamState { steps, m, v })
        }
    };
    Ok(StackCheckpoint {
        params,
        adam,
        epochs_done,
        info,
    })
}
