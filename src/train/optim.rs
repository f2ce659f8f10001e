//! Optimizers: they turn a flat gradient into a parameter update.

use crate::kernels::{adam_update, all_finite, axpy, momentum_update, AdamStep};
use crate::model::ParamBuffer;
use crate::Error;
use bytemuck::Zeroable;

/// Updates parameters from their gradients; `params` and `grads` are the
/// flat views ([`ParamBuffer::as_flat`]) of the model and its gradient.
pub trait Optimizer {
    /// Applies one update.
    ///
    /// # Errors
    /// [`Error::Length`] when the slices do not match the optimizer's state.
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), Error>;
}

fn check_rate(lr: f32) -> Result<(), Error> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            what: "learning rate must be finite and positive",
        })
    }
}

fn check_lengths(params: &[f32], grads: &[f32], state: usize) -> Result<(), Error> {
    if grads.len() != params.len() {
        return Err(Error::Length {
            what: "gradient",
            expected: params.len(),
            found: grads.len(),
        });
    }
    if state != params.len() {
        return Err(Error::Length {
            what: "parameters",
            expected: state,
            found: params.len(),
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
        check_rate(lr)?;
        Ok(Self { lr })
    }

    /// The learning rate.
    pub const fn lr(&self) -> f32 {
        self.lr
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), Error> {
        check_lengths(params, grads, params.len())?;
        axpy(-self.lr, grads, params);
        Ok(())
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
        let mut opt = Self {
            lr: 0.0,
            momentum: 0.0,
            velocity: P::ZERO,
        };
        opt.configure(lr, momentum)?;
        Ok(opt)
    }

    /// Sets the learning rate and momentum, keeping the velocity; use it on a
    /// value made with `bytemuck::zeroed_box` or held in a `static`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn configure(&mut self, lr: f32, momentum: f32) -> Result<(), Error> {
        check_rate(lr)?;
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
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), Error> {
        check_lengths(params, grads, self.velocity.as_flat().len())?;
        check_rate(self.lr)?;
        momentum_update(params, self.velocity.as_flat_mut(), grads, self.lr, self.momentum);
        Ok(())
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
        check_rate(self.lr)?;
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(Error::InvalidConfig {
                what: "Adam betas must be in [0, 1)",
            });
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return Err(Error::InvalidConfig {
                what: "Adam epsilon must be finite and not negative",
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
    /// on the host use `bytemuck::zeroed_box` and
    /// [`configure`](Self::configure) instead of building it on the stack.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a non-positive learning rate, betas
    /// outside `[0, 1)` or a negative epsilon.
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
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), Error> {
        check_lengths(params, grads, self.m.as_flat().len())?;
        self.config.check()?;
        let c = self.config;
        let t = self.steps.saturating_add(1);
        let alpha =
            c.lr * libm::sqrtf(1.0 - libm::powf(c.beta2, t as f32)) / (1.0 - libm::powf(c.beta1, t as f32));
        if !all_finite(&[alpha]) {
            return Err(Error::InvalidConfig {
                what: "Adam step size is not finite",
            });
        }
        let step = AdamStep {
            alpha,
            beta1: c.beta1,
            beta2: c.beta2,
            epsilon: c.epsilon,
        };
        adam_update(params, self.m.as_flat_mut(), self.v.as_flat_mut(), grads, step);
        self.steps = t;
        Ok(())
    }
}
