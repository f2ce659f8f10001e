//! Host conveniences.
