//! Optimizers: they turn a flat gradient into a parameter update.

use crate::kernels::{adam_update, all_finite, axpy, momentum_update, AdamStep};
use crate::model::ParamBuffer;
use crate::stack::Zeroed;
use crate::Error;
use bytemuck::Zeroable;

/// Updates parameters from their gradients; `params` and `grads` are the
/// flat views ([`ParamBuffer::as_flat`]) of the model and its gradient.
///
/// Every optimizer here treats each parameter on its own, so a step can be
/// taken in pieces: [`begin_step`](Self::begin_step) hands out the step's
/// [`Update`] and the optimizer's per-parameter [`State`], and the update can
/// be applied to the whole vectors or to matching ranges of them, on as many
/// threads as there are ranges. Ranges that start at multiples of
/// [`LANES`](crate::kernels::LANES) give the same result bit for bit (a
/// range's last few values take the scalar path, which rounds differently).
pub trait Optimizer {
    /// Starts a step over `len` parameters: checks the configuration and
    /// that the state has `len` values, counts the step, and returns the
    /// update with the state it applies to.
    ///
    /// ```
    /// use tinycnn::train::{Adam, AdamConfig, Optimizer};
    /// let mut adam = Adam::<[f32; 4]>::new(AdamConfig::KERAS).unwrap();
    /// let (mut params, grads) = ([1.0; 4], [0.5; 4]);
    /// let (update, state) = adam.begin_step(4).unwrap();
    /// // Two halves, as two threads would take them.
    /// let (first, second) = state.split_at(2);
    /// let (p1, p2) = params.split_at_mut(2);
    /// update.apply(p1, &grads[..2], first);
    /// update.apply(p2, &grads[2..], second);
    ///
    /// let mut whole = Adam::<[f32; 4]>::new(AdamConfig::KERAS).unwrap();
    /// let mut expected = [1.0; 4];
    /// whole.step(&mut expected, &grads).unwrap();
    /// assert_eq!(params, expected);
    /// assert_eq!(adam.steps(), 1);
    /// ```
    ///
    /// # Errors
    /// [`Error::Length`] when the state does not hold `len` values,
    /// [`Error::InvalidConfig`] for a configuration that cannot step.
    fn begin_step(&mut self, len: usize) -> Result<(Update, State<'_>), Error> {
        let (mut schedule, state) = self.schedule(len)?;
        Ok((schedule.next_update()?, state))
    }

    /// Hands out the state for `len` parameters once, with the
    /// [`Schedule`] that gives each step's [`Update`] and counts it: for a
    /// caller that keeps the state, in pieces on several threads, through
    /// many steps. Nothing is counted until
    /// [`next_update`](Schedule::next_update).
    ///
    /// ```
    /// use tinycnn::train::{Adam, AdamConfig, Optimizer};
    /// let mut adam = Adam::<[f32; 2]>::new(AdamConfig::KERAS).unwrap();
    /// let mut params = [1.0, 1.0];
    /// let (mut schedule, mut state) = adam.schedule(2).unwrap();
    /// for _ in 0..3 {
    ///     let update = schedule.next_update().unwrap();
    ///     update.apply(&mut params, &[0.5, -0.5], state.reborrow());
    /// }
    /// assert_eq!(adam.steps(), 3);
    /// ```
    ///
    /// # Errors
    /// As [`begin_step`](Self::begin_step).
    fn schedule(&mut self, len: usize) -> Result<(Schedule<'_>, State<'_>), Error>;

    /// Applies one update to all the parameters.
    ///
    /// # Errors
    /// [`Error::Length`] when the slices do not match each other or the
    /// optimizer's state; as [`begin_step`](Self::begin_step).
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), Error> {
        if grads.len() != params.len() {
            return Err(Error::Length {
                what: "gradient",
                expected: params.len(),
                found: grads.len(),
            });
        }
        let (update, state) = self.begin_step(params.len())?;
        update.apply(params, grads, state);
        Ok(())
    }
}

/// The update of one optimizer step, the same for every parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Update {
    /// `p -= lr * g`.
    Sgd {
        /// Learning rate.
        lr: f32,
    },
    /// `v = momentum * v - lr * g`, `p += v`, with `v` the state's first vector.
    Momentum {
        /// Learning rate.
        lr: f32,
        /// Decay of the velocity.
        momentum: f32,
    },
    /// An Adam step, with the state's two vectors as its moments.
    Adam(AdamStep),
}

impl Update {
    /// Applies the update to `params` with their `grads` and the matching
    /// range of the optimizer's `state`, over the shortest of the slices the
    /// update uses.
    ///
    /// ```
    /// use tinycnn::train::{State, Update};
    /// let mut p = [1.0, 2.0];
    /// Update::Sgd { lr: 0.5 }.apply(&mut p, &[2.0, -2.0], State::none());
    /// assert_eq!(p, [0.0, 3.0]);
    /// ```
    #[inline]
    pub fn apply(&self, params: &mut [f32], grads: &[f32], state: State<'_>) {
        match *self {
            Self::Sgd { lr } => axpy(-lr, grads, params),
            Self::Momentum { lr, momentum } => momentum_update(params, state.first, grads, lr, momentum),
            Self::Adam(step) => adam_update(params, state.first, state.second, grads, step),
        }
    }
}

/// The updates of an optimizer's successive steps (see
/// [`Optimizer::schedule`]).
#[derive(Debug)]
pub struct Schedule<'a>(Steps<'a>);

#[derive(Debug)]
enum Steps<'a> {
    /// The same update every step.
    Fixed(Update),
    /// Adam's, whose step size changes with the count of steps.
    Adam { config: AdamConfig, steps: &'a mut u32 },
}

impl Schedule<'_> {
    /// The update of the next step, which it counts.
    ///
    /// ```
    /// use tinycnn::train::{Optimizer, Sgd, Update};
    /// let mut sgd = Sgd::new(0.5).unwrap();
    /// let (mut schedule, _) = sgd.schedule(4).unwrap();
    /// assert_eq!(schedule.next_update(), Ok(Update::Sgd { lr: 0.5 }));
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the step size is not finite.
    pub fn next_update(&mut self) -> Result<Update, Error> {
        let update = self.peek_update()?;
        if let Steps::Adam { steps, .. } = &mut self.0 {
            **steps = steps.saturating_add(1);
        }
        Ok(update)
    }

    /// The update of the next step, without counting it.
    ///
    /// ```
    /// use tinycnn::train::{Adam, AdamConfig, Optimizer};
    /// let mut adam = Adam::<[f32; 1]>::new(AdamConfig::KERAS).unwrap();
    /// let (mut schedule, _) = adam.schedule(1).unwrap();
    /// let next = schedule.peek_update();
    /// assert_eq!(next, schedule.next_update());
    /// assert_ne!(next, schedule.peek_update());
    /// ```
    ///
    /// # Errors
    /// As [`next_update`](Self::next_update).
    pub fn peek_update(&self) -> Result<Update, Error> {
        match &self.0 {
            Steps::Fixed(update) => Ok(*update),
            Steps::Adam { config: c, steps } => {
                let t = steps.saturating_add(1);
                let alpha = c.lr * libm::sqrtf(1.0 - libm::powf(c.beta2, t as f32))
                    / (1.0 - libm::powf(c.beta1, t as f32));
                if !all_finite(&[alpha]) {
                    return Err(Error::InvalidConfig {
                        what: "Adam step size is not finite",
                    });
                }
                Ok(Update::Adam(AdamStep {
                    alpha,
                    beta1: c.beta1,
                    beta2: c.beta2,
                    epsilon: c.epsilon,
                }))
            }
        }
    }
}

/// An optimizer's per-parameter state over a range of parameters: nothing
/// (SGD), the velocity (momentum), or both Adam moments. Unused vectors are
/// empty.
#[derive(Debug)]
pub struct State<'a> {
    /// The velocity, or Adam's first moment.
    pub first: &'a mut [f32],
    /// Adam's second moment.
    pub second: &'a mut [f32],
}

impl<'a> State<'a> {
    /// The state of an optimizer that keeps none.
    pub fn none() -> State<'static> {
        State {
            first: &mut [],
            second: &mut [],
        }
    }

    /// The same state, borrowed for a shorter time: one step's use of a
    /// state kept through many.
    pub fn reborrow(&mut self) -> State<'_> {
        State {
            first: self.first,
            second: self.second,
        }
    }

    /// The state of parameters `..mid` and of `mid..`; an empty vector stays
    /// empty on both sides, and one shorter than `mid` goes whole to the first.
    ///
    /// ```
    /// let (mut a, mut b) = ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]);
    /// let state = tinycnn::train::State { first: &mut a, second: &mut b };
    /// let (left, right) = state.split_at(1);
    /// assert_eq!((&*left.first, &*right.second), (&[1.0][..], &[5.0, 6.0][..]));
    /// ```
    pub fn split_at(self, mid: usize) -> (State<'a>, State<'a>) {
        fn cut(values: &mut [f32], mid: usize) -> (&mut [f32], &mut [f32]) {
            let mid = mid.min(values.len());
            values.split_at_mut(mid)
        }
        let (first_left, first_right) = cut(self.first, mid);
        let (second_left, second_right) = cut(self.second, mid);
        (
            State {
                first: first_left,
                second: second_left,
            },
            State {
                first: first_right,
                second: second_right,
            },
        )
    }
}

/// Checks a learning rate: finite and positive.
pub(crate) fn check_learning_rate(lr: f32) -> Result<(), Error> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            what: "learning rate must be finite and positive",
        })
    }
}

fn check_length(len: usize, state: usize) -> Result<(), Error> {
    if state != len {
        return Err(Error::Length {
            what: "parameters",
            expected: state,
            found: len,
        });
    }
    Ok(())
}

/// Plain stochastic gradient descent: `p -= lr * g`. Needs no memory.
///
/// ```
/// use tinycnn::train::{Optimizer, Sgd};
/// let mut p = [1.0, 2.0];
/// Sgd::new(0.5).unwrap().step(&mut p, &[2.0, -2.0]).unwrap();
/// assert_eq!(p, [0.0, 3.0]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    lr: f32,
}

impl Sgd {
    /// SGD with learning rate `lr`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `lr` is finite and positive.
    pub fn new(lr: f32) -> Result<Self, Error> {
        check_learning_rate(lr)?;
        Ok(Self { lr })
    }

    /// The learning rate.
    pub const fn lr(&self) -> f32 {
        self.lr
    }
}

impl Optimizer for Sgd {
    fn schedule(&mut self, _len: usize) -> Result<(Schedule<'_>, State<'_>), Error> {
        check_learning_rate(self.lr)?;
        Ok((Schedule(Steps::Fixed(Update::Sgd { lr: self.lr })), State::none()))
    }
}

/// SGD with momentum, as Keras defines it: `v = momentum * v - lr * g`,
/// `p += v`. Keeps one velocity per parameter.
///
/// ```
/// use tinycnn::train::{Optimizer, SgdMomentum};
/// let mut opt = SgdMomentum::<[f32; 1]>::new(1.0, 0.5).unwrap();
/// let mut p = [0.0];
/// opt.step(&mut p, &[1.0]).unwrap(); // v = -1
/// opt.step(&mut p, &[1.0]).unwrap(); // v = -1.5
/// assert_eq!(p, [-2.5]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct SgdMomentum<P> {
    lr: f32,
    momentum: f32,
    velocity: P,
}

// SAFETY: every field is plain floating-point data or `P: Zeroable`, so all
// zero bytes form a valid value.
unsafe impl<P: Zeroable> Zeroable for SgdMomentum<P> {}

impl<P: ParamBuffer> SgdMomentum<P> {
    /// SGD with momentum, velocity zero.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `lr` is finite and positive and
    /// `momentum` is in `[0, 1)`.
    pub fn new(lr: f32, momentum: f32) -> Result<Self, Error> {
        let mut opt = Self::zeroed_state();
        opt.configure(lr, momentum)?;
        Ok(opt)
    }

    /// SGD with momentum on the heap (never built on the stack), velocity zero.
    ///
    /// ```
    /// use tinycnn::ParamBuffer;
    /// let opt = tinycnn::train::SgdMomentum::<tinycnn::FashionParams>::boxed(0.01, 0.9).unwrap();
    /// assert!(opt.velocity().as_flat().iter().all(|&v| v == 0.0));
    /// ```
    ///
    /// # Errors
    /// As [`new`](Self::new).
    #[cfg(feature = "std")]
    pub fn boxed(lr: f32, momentum: f32) -> Result<std::boxed::Box<Self>, Error> {
        let mut opt: std::boxed::Box<Self> = bytemuck::zeroed_box();
        opt.configure(lr, momentum)?;
        Ok(opt)
    }

    /// Every byte zero, usable in a `static` in `.bss`; call
    /// [`configure`](Self::configure) before the first step, which otherwise
    /// returns [`Error::InvalidConfig`].
    pub const fn zeroed_state() -> Self {
        Self {
            lr: 0.0,
            momentum: 0.0,
            velocity: P::ZERO,
        }
    }

    /// The velocity, one value per parameter.
    pub const fn velocity(&self) -> &P {
        &self.velocity
    }

    /// Sets the learning rate and momentum, keeping the velocity; use it on a
    /// value from [`zeroed_state`](Self::zeroed_state) held in a `static`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn configure(&mut self, lr: f32, momentum: f32) -> Result<(), Error> {
        check_learning_rate(lr)?;
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::InvalidConfig {
                what: "momentum must be in [0, 1)",
            });
        }
        self.lr = lr;
        self.momentum = momentum;
        Ok(())
    }
}

impl<P: ParamBuffer> Optimizer for SgdMomentum<P> {
    fn schedule(&mut self, len: usize) -> Result<(Schedule<'_>, State<'_>), Error> {
        check_length(len, self.velocity.as_flat().len())?;
        check_learning_rate(self.lr)?;
        let update = Update::Momentum {
            lr: self.lr,
            momentum: self.momentum,
        };
        let state = State {
            first: self.velocity.as_flat_mut(),
            second: &mut [],
        };
        Ok((Schedule(Steps::Fixed(update)), state))
    }
}

/// Settings of [`Adam`]; the defaults are Keras's.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct AdamConfig {
    /// Learning rate (0.001).
    pub lr: f32,
    /// Decay of the first moment (0.9).
    pub beta1: f32,
    /// Decay of the second moment (0.999).
    pub beta2: f32,
    /// Added to the root of the second moment (1e-7).
    pub epsilon: f32,
}

impl AdamConfig {
    /// Keras's defaults: lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7.
    pub const KERAS: Self = Self {
        lr: 0.001,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-7,
    };

    fn check(&self) -> Result<(), Error> {
        check_learning_rate(self.lr)?;
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(Error::InvalidConfig {
                what: "Adam betas must be in [0, 1)",
            });
        }
        // With a zero epsilon, a parameter whose gradient has always been
        // zero would step by 0 / 0.
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(Error::InvalidConfig {
                what: "Adam epsilon must be finite and positive",
            });
        }
        Ok(())
    }
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self::KERAS
    }
}

/// Adam, with the bias corrections of Keras: at step `t`,
/// `alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`. Keeps two moments per
/// parameter.
///
/// ```
/// use tinycnn::train::{Adam, AdamConfig, Optimizer};
/// let mut adam = Adam::<[f32; 2]>::new(AdamConfig { lr: 0.1, ..AdamConfig::KERAS }).unwrap();
/// let mut p = [1.0, 1.0];
/// adam.step(&mut p, &[3.0, -0.5]).unwrap();
/// // The first step moves every parameter by about lr, against its gradient's sign.
/// assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] - 1.1).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Adam<P> {
    config: AdamConfig,
    steps: u32,
    m: P,
    v: P,
}

// SAFETY: every field is plain numeric data or `P: Zeroable`, so all zero
// bytes form a valid value (a zero config is rejected only when used through
// `configure`).
unsafe impl<P: Zeroable> Zeroable for Adam<P> {}

impl<P: ParamBuffer> Adam<P> {
    /// Adam with both moments zero. For the default model this is 1.6 MB:
    /// on the host use [`boxed`](Self::boxed) instead of building it on the
    /// stack, on firmware a `static` of [`zeroed_state`](Self::zeroed_state).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a non-positive learning rate, betas
    /// outside `[0, 1)` or an epsilon that is not positive.
    pub fn new(config: AdamConfig) -> Result<Self, Error> {
        let mut adam = Self::zeroed_state();
        adam.configure(config)?;
        Ok(adam)
    }

    /// Adam with every byte zero, usable in a `static` that lands in `.bss`
    /// (no flash copy at start-up). It has no learning rate yet: call
    /// [`configure`](Self::configure) before the first step, which otherwise
    /// returns [`Error::InvalidConfig`].
    ///
    /// ```
    /// use tinycnn::{train::{Adam, AdamConfig, Optimizer}, Params};
    /// static mut ADAM: Adam<Params> = Adam::zeroed_state();
    /// let mut small = Adam::<[f32; 1]>::zeroed_state();
    /// assert!(small.step(&mut [0.0], &[1.0]).is_err());
    /// small.configure(AdamConfig::KERAS).unwrap();
    /// assert!(small.step(&mut [0.0], &[1.0]).is_ok());
    /// ```
    pub const fn zeroed_state() -> Self {
        let config = AdamConfig {
            lr: 0.0,
            beta1: 0.0,
            beta2: 0.0,
            epsilon: 0.0,
        };
        Self {
            config,
            steps: 0,
            m: P::ZERO,
            v: P::ZERO,
        }
    }

    /// Adam with both moments zero, on the heap (never built on the stack).
    ///
    /// ```
    /// use tinycnn::train::{Adam, AdamConfig};
    /// let adam = Adam::<tinycnn::FashionParams>::boxed(AdamConfig::KERAS).unwrap();
    /// assert_eq!(adam.steps(), 0);
    /// ```
    ///
    /// # Errors
    /// As [`new`](Self::new).
    #[cfg(feature = "std")]
    pub fn boxed(config: AdamConfig) -> Result<std::boxed::Box<Self>, Error> {
        let mut adam: std::boxed::Box<Self> = bytemuck::zeroed_box();
        adam.configure(config)?;
        Ok(adam)
    }

    /// Sets the configuration and restarts from zero moments and step 0.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn configure(&mut self, config: AdamConfig) -> Result<(), Error> {
        config.check()?;
        self.config = config;
        self.steps = 0;
        self.m.as_flat_mut().fill(0.0);
        self.v.as_flat_mut().fill(0.0);
        Ok(())
    }

    /// The configuration.
    pub const fn config(&self) -> AdamConfig {
        self.config
    }

    /// Steps taken so far.
    pub const fn steps(&self) -> u32 {
        self.steps
    }

    /// The first and second moments, for saving a checkpoint.
    pub const fn moments(&self) -> (&P, &P) {
        (&self.m, &self.v)
    }

    /// Restores the step count and both moments from a checkpoint, keeping
    /// the configuration.
    ///
    /// ```
    /// use tinycnn::train::{Adam, AdamConfig, Optimizer};
    /// let mut a = Adam::<[f32; 2]>::new(AdamConfig::KERAS).unwrap();
    /// a.step(&mut [0.0; 2], &[1.0, -1.0]).unwrap();
    /// let (m, v) = a.moments();
    /// let mut b = Adam::<[f32; 2]>::new(AdamConfig::KERAS).unwrap();
    /// b.restore(a.steps(), m, v).unwrap();
    /// assert_eq!(a, b);
    /// assert!(b.restore(1, &[0.0; 3], &[0.0; 3]).is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::Length`] when a moment does not match the parameters, and
    /// [`Error::NonFinite`] for NaN or infinite values (nothing is changed then).
    pub fn restore(&mut self, steps: u32, m: &[f32], v: &[f32]) -> Result<(), Error> {
        let expected = self.m.as_flat().len();
        for (what, values) in [("Adam first moment", m), ("Adam second moment", v)] {
            if values.len() != expected {
                return Err(Error::Length {
                    what,
                    expected,
                    found: values.len(),
                });
            }
            if !all_finite(values) {
                return Err(Error::NonFinite { what });
            }
        }
        self.m.as_flat_mut().copy_from_slice(m);
        self.v.as_flat_mut().copy_from_slice(v);
        self.steps = steps;
        Ok(())
    }
}

impl<P: ParamBuffer> Optimizer for Adam<P> {
    fn schedule(&mut self, len: usize) -> Result<(Schedule<'_>, State<'_>), Error> {
        check_length(len, self.m.as_flat().len())?;
        self.config.check()?;
        let schedule = Schedule(Steps::Adam {
            config: self.config,
            steps: &mut self.steps,
        });
        let state = State {
            first: self.m.as_flat_mut(),
            second: self.v.as_flat_mut(),
        };
        Ok((schedule, state))
    }
}

/// The same value as [`Adam::zeroed_state`], under the name every value a
/// stack needs has for its zero: [`Zeroed::ZERO`].
impl<P: ParamBuffer> Zeroed for Adam<P> {
    const ZERO: Self = Self::zeroed_state();
}

/// The same value as [`SgdMomentum::zeroed_state`], as [`Zeroed::ZERO`].
impl<P: ParamBuffer> Zeroed for SgdMomentum<P> {
    const ZERO: Self = Self::zeroed_state();
}
