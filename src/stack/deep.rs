//! A deeper network than the book's, the anchor of what a stack of several
//! convolutions does: Keras's reference model for the same data.

crate::stack! {
    /// Two convolutions over the Fashion-MNIST image: `Conv 3x3 16 ->
    /// MaxPool 2 -> Conv 3x3 32 -> MaxPool 2 -> Flatten (1,568) -> Dropout ->
    /// Dense 100 + ReLU -> Dense 10` (162,710 parameters), as
    /// `../shared/peers/deep_model.py` builds it in Keras.
    ///
    /// ```
    /// use tinycnn::stack::{Deep, Stack};
    /// assert_eq!(<Deep as Stack>::PARAMETERS, 162_710);
    /// ```
    pub struct Deep: [28, 28, 1] => {
        Conv2d(16, 3), Relu, MaxPool2,
        Conv2d(32, 3), Relu, MaxPool2,
        Flatten, Dropout, Dense(100), Relu, Dense(10)
    }
}
