//! Weights blob.
