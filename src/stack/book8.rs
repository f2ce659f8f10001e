//! The book's network with dense1's kernel in 8 bits: the parameters that
//! train on a microcontroller with 256 KiB of RAM.

crate::stack! {
    /// The book's network at the default sizes with dense1's kernel
    /// (196,000 of its 197,210 parameters) in 8 bits, one scale per hidden
    /// unit ([`Dense8`](super::Dense8)); the convolution, dense2 and the
    /// biases stay `f32`. 201,240 bytes of parameters against the `f32`
    /// network's 788,840; [`StreamingSgdTrainer`](crate::train::StreamingSgdTrainer)
    /// updates the 8-bit kernel in place, stochastically rounded. Its `f32`
    /// export is the book's network ([`Book`](super::Book), [`Params`](crate::Params)).
    ///
    /// ```
    /// use tinycnn::stack::{Book8, Stack};
    /// assert_eq!(Book8::PARAMETER_BYTES, 201_240);
    /// ```
    pub struct Book8: [28, 28, 1] => {
        Conv2d(10, 3), Relu, MaxPool2, Flatten, Dropout, Dense(100, i8), Relu, Dense(10)
    }
}
