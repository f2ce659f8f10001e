//! [`stack!`](crate::stack!): a network declared layer by layer, its sizes
//! derived.

/// Declares a network as a stack of layers: a unit struct implementing
/// [`Stack`](crate::stack::Stack), whose layers' sizes follow from the
/// input's `[height, width, channels]`.
///
/// ```
/// tinycnn::stack! {
///     /// The book's Fashion-MNIST network.
///     pub struct Book: [28, 28, 1] => {
///         Conv2d(10, 3), Relu, MaxPool2, Flatten, Dropout, Dense(100), Relu, Dense(10)
///     }
/// }
/// use tinycnn::stack::Stack;
/// assert_eq!(Book::PARAMETERS, 197_210);
/// ```
///
/// A layer out of place is refused with a message naming it:
///
/// ```compile_fail
/// tinycnn::stack! {
///     pub struct NoFlatten: [8, 8, 1] => { Conv2d(4, 3), Relu, MaxPool2, Dense(2) }
/// }
/// ```
///
/// Sizes that do not pair (an odd map pooled, an even kernel) fail when the
/// crate builds (`cargo build`; `cargo check` does not evaluate them),
/// naming the layer:
///
/// ```compile_fail
/// use tinycnn::ParamBuffer;
/// tinycnn::stack! {
///     pub struct Odd: [7, 7, 1] => { Conv2d(4, 3), Relu, MaxPool2, Flatten, Dense(2) }
/// }
/// // error: evaluation panicked: MaxPool2: the height and width must be even
/// // (evaluation of `ConvRelu::<7, 7, 1, 4, 3, 36, [[f32; 7]; 7], MaxPool2>::SIZES`)
/// let params = <Odd as tinycnn::stack::Stack>::Params::ZERO;
/// let mut ws = tinycnn::stack::Workspace::<Odd>::new();
/// ws.predict(&params, &[[0.0; 7]; 7]).unwrap();
/// ```
#[macro_export]
macro_rules! stack {
    // One channel: the input is an image, `[[f32; W]; H]`.
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident : [$h:tt, $w:tt, 1] => { $($layers:tt)* }
    ) => {
        $crate::__stack_layers! {
            head: [$(#[$meta])* $vis $name [[f32; $w]; $h]],
            shape: [$h, $w, 1],
            map: [[[f32; $w]; $h]],
            flat: false,
            dropout: false,
            params: [0],
            layers: [],
            rest: [$($layers)*]
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident : [$h:tt, $w:tt, $c:tt] => { $($layers:tt)* }
    ) => {
        $crate::__stack_layers! {
            head: [$(#[$meta])* $vis $name [[[f32; $c]; $w]; $h]],
            shape: [$h, $w, $c],
            map: [[[[f32; $c]; $w]; $h]],
            flat: false,
            dropout: false,
            params: [0],
            layers: [],
            rest: [$($layers)*]
        }
    };
}

/// The steps of [`stack!`](crate::stack!), one layer at a time.
#[doc(hidden)]
#[macro_export]
macro_rules! __stack_layers {
    // Conv2d, Relu, MaxPool2: one fused layer.
    (
        head: $head:tt, shape: [$h:tt, $w:tt, $c:tt], map: [$map:ty], flat: false, dropout: false,
        params: [$($p:tt)*], layers: [$($l:tt)*],
        rest: [Conv2d($cout:tt, $ks:tt), Relu, MaxPool2 $(, $($rest:tt)*)?]
    ) => {
        $crate::__stack_layers! {
            head: $head,
            shape: [($h / 2), ($w / 2), $cout],
            map: [[f32; ($h / 2) * ($w / 2) * $cout]],
            flat: false,
            dropout: false,
            params: [$($p)* + $ks * $ks * $c * $cout + $cout],
            layers: [$($l)* [$crate::stack::ConvRelu<{ $h }, { $w }, { $c }, { $cout }, { $ks }, { ($h / 2) * ($w / 2) * $cout }, $map, $crate::stack::MaxPool2>]],
            rest: [$($($rest)*)?]
        }
    };
    // Conv2d, Relu: the full-resolution map.
    (
        head: $head:tt, shape: [$h:tt, $w:tt, $c:tt], map: [$map:ty], flat: false, dropout: false,
        params: [$($p:tt)*], layers: [$($l:tt)*],
        rest: [Conv2d($cout:tt, $ks:tt), Relu $(, $($rest:tt)*)?]
    ) => {
        $crate::__stack_layers! {
            head: $head,
            shape: [$h, $w, $cout],
            map: [[f32; $h * $w * $cout]],
            flat: false,
            dropout: false,
            params: [$($p)* + $ks * $ks * $c * $cout + $cout],
            layers: [$($l)* [$crate::stack::ConvRelu<{ $h }, { $w }, { $c }, { $cout }, { $ks }, { $h * $w * $cout }, $map, $crate::stack::Full>]],
            rest: [$($($rest)*)?]
        }
    };
    (
        head: $head:tt, shape: $shape:tt, map: $map:tt, flat: $flat:tt, dropout: $d:tt,
        params: $p:tt, layers: $l:tt,
        rest: [Conv2d $args:tt $(, $($rest:tt)*)?]
    ) => {
        ::core::compile_error!(
            "stack!: a Conv2d takes a map (before Flatten and Dropout) and is followed by `Relu` (and may be by `MaxPool2`)"
        );
    };
    (
        head: $head:tt, shape: [$h:tt, $w:tt, $c:tt], map: $map:tt, flat: false, dropout: $d:tt,
        params: $p:tt, layers: $l:tt,
        rest: [Flatten $(, $($rest:tt)*)?]
    ) => {
        $crate::__stack_layers! {
            head: $head, shape: [1, 1, ($h * $w * $c)], map: $map, flat: true, dropout: $d,
            params: $p, layers: $l, rest: [$($($rest)*)?]
        }
    };
    (
        head: $head:tt, shape: $shape:tt, map: $map:tt, flat: true, dropout: false,
        params: $p:tt, layers: $l:tt,
        rest: [Dropout $(, $($rest:tt)*)?]
    ) => {
        $crate::__stack_layers! {
            head: $head, shape: $shape, map: $map, flat: true, dropout: true,
            params: $p, layers: $l, rest: [$($($rest)*)?]
        }
    };
    (
        head: $head:tt, shape: $shape:tt, map: $map:tt, flat: $flat:tt, dropout: $d:tt,
        params: $p:tt, layers: $l:tt,
        rest: [Dropout $(, $($rest:tt)*)?]
    ) => {
        ::core::compile_error!("stack!: Dropout stands after Flatten, before a Dense layer");
    };
    // Dense in 8 bits, Relu.
    (
        head: $head:tt, shape: [1, 1, $n:tt], map: [$map:ty], flat: true, dropout: $d:tt,
        params: [$($p:tt)*], layers: [$($l:tt)*],
        rest: [Dense($out:tt, i8), Relu $(, $($rest:tt)*)?]
    ) => {
        $crate::__stack_layers! {
            head: $head,
            shape: [1, 1, $out],
            map: [[f32; $out]],
            flat: true,
            dropout: false,
            params: [$($p)* + 2 * $out + usize::div_ceil($n * $out, 4)],
            layers: [$($l)* [$crate::stack::Dense8<{ $n }, { $out }, $map, true, $d>]],
            rest: [$($($rest)*)?]
        }
    };
    // The last Dense in 8 bits: the logits.
    (
        head: $head:tt, shape: [1, 1, $n:tt], map: [$map:ty], flat: true, dropout: $d:tt,
        params: [$($p:tt)*], layers: [$($l:tt)*],
        rest: [Dense($out:tt, i8) $(,)?]
    ) => {
        $crate::__stack_layers! {
            @done head: $head,
            logits: [[f32; $out]],
            params: [$($p)* + 2 * $out + usize::div_ceil($n * $out, 4)],
            layers: [$($l)* [$crate::stack::Dense8<{ $n }, { $out }, $map, false, $d>]]
        }
    };
    // Dense, Relu.
    (
        head: $head:tt, shape: [1, 1, $n:tt], map: [$map:ty], flat: true, dropout: $d:tt,
        params: [$($p:tt)*], layers: [$($l:tt)*],
        rest: [Dense($out:tt), Relu $(, $($rest:tt)*)?]
    ) => {
        $crate::__stack_layers! {
            head: $head,
            shape: [1, 1, $out],
            map: [[f32; $out]],
            flat: true,
            dropout: false,
            params: [$($p)* + $n * $out + $out],
            layers: [$($l)* [$crate::stack::Dense<{ $n }, { $out }, $map, true, $d>]],
            rest: [$($($rest)*)?]
        }
    };
    // The last Dense: the logits.
    (
        head: $head:tt, shape: [1, 1, $n:tt], map: [$map:ty], flat: true, dropout: $d:tt,
        params: [$($p:tt)*], layers: [$($l:tt)*],
        rest: [Dense($out:tt) $(,)?]
    ) => {
        $crate::__stack_layers! {
            @done head: $head,
            logits: [[f32; $out]],
            params: [$($p)* + $n * $out + $out],
            layers: [$($l)* [$crate::stack::Dense<{ $n }, { $out }, $map, false, $d>]]
        }
    };
    (
        head: $head:tt, shape: $shape:tt, map: $map:tt, flat: false, dropout: $d:tt,
        params: $p:tt, layers: $l:tt,
        rest: [Dense $($rest:tt)*]
    ) => {
        ::core::compile_error!("stack!: a Dense layer takes a vector: Flatten the map before it");
    };
    (
        head: $head:tt, shape: $shape:tt, map: $map:tt, flat: $flat:tt, dropout: $d:tt,
        params: $p:tt, layers: $l:tt,
        rest: [Dense $args:tt $(, $($rest:tt)*)?]
    ) => {
        ::core::compile_error!(
            "stack!: a Dense layer is followed by `Relu`, but for the last, whose outputs are the logits"
        );
    };
    (
        head: $head:tt, shape: $shape:tt, map: $map:tt, flat: $flat:tt, dropout: $d:tt,
        params: $p:tt, layers: $l:tt,
        rest: []
    ) => {
        ::core::compile_error!("stack!: a stack ends with a Dense layer without Relu, its logits");
    };
    (
        head: $head:tt, shape: $shape:tt, map: $map:tt, flat: $flat:tt, dropout: $d:tt,
        params: $p:tt, layers: $l:tt,
        rest: [$other:tt $($rest:tt)*]
    ) => {
        ::core::compile_error!(::core::concat!(
            "stack!: `", ::core::stringify!($other),
            "` is not a layer here; the layers are Conv2d(out, kernel), Relu, MaxPool2, Flatten, Dropout, Dense(out)"
        ));
    };
    (
        @done head: [$(#[$meta:meta])* $vis:vis $name:ident $input:ty],
        logits: [$logits:ty],
        params: [$($p:tt)*],
        layers: [$([$layer:ty])*]
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $crate::stack::Stack for $name {
            type Layers = $crate::__stack_chain!($($layer),*);
            type Input = $input;
            type Logits = $logits;
            type Params = [f32; $($p)*];
            const PARAMETERS: usize = $($p)*;
        }
    };
}

/// `Chain<A, Chain<B, ...>>` of a list of layers.
#[doc(hidden)]
#[macro_export]
macro_rules! __stack_chain {
    ($last:ty) => { $last };
    ($first:ty, $($rest:ty),+) => { $crate::stack::Chain<$first, $crate::__stack_chain!($($rest),+)> };
}
