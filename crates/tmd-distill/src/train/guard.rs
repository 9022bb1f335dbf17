//! NaN/Inf detection. A stage checks its loss (and optionally its gradient norm) every step and its
//! parameters before each checkpoint, so a run that diverges stops with [`TrainError::NonFinite`]
//! and the newest checkpoint on disk is still a good one.

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

use super::error::TrainError;

/// `Ok(value)` if `value` is finite, else [`TrainError::NonFinite`] naming `what` and `step`.
pub fn check_finite(step: u64, what: &str, value: f64) -> Result<f64, TrainError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TrainError::NonFinite {
            step,
            what: what.to_string(),
            value,
        })
    }
}

struct FiniteVisitor {
    stack: Vec<String>,
    bad: Option<(String, f64)>,
}

impl<B: Backend> ModuleVisitor<B> for FiniteVisitor {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.bad.is_some() {
            return;
        }
        // On the host: a device-side reduction would compile a kernel for every parameter
        // shape on GPU backends.
        let data = param.val().into_data().convert::<f32>();
        let bad = data.iter::<f32>().find(|v| !v.is_finite());
        if let Some(value) = bad {
            let value = f64::from(value);
            self.bad = Some((self.stack.join("."), value));
        }
    }
}

/// Checks that every float parameter of `module` is finite; the error names the first bad
/// parameter by its path (e.g. `"parameter blocks.0.ffn.fc1.weight"`).
pub fn check_module_finite<B: Backend, M: Module<B>>(
    step: u64,
    module: &M,
) -> Result<(), TrainError> {
    let mut visitor = FiniteVisitor {
        stack: Vec::new(),
        bad: None,
    };
    module.visit(&mut visitor);
    match visitor.bad {
        None => Ok(()),
        Some((path, value)) => Err(TrainError::NonFinite {
            step,
            what: format!("parameter {path}"),
            value,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_passes_nan_and_inf_fail() {
        assert_eq!(check_finite(3, "loss", 0.5).ok(), Some(0.5));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            match check_finite(7, "loss", bad) {
                Err(TrainError::NonFinite { step: 7, what, .. }) => assert_eq!(what, "loss"),
                other => panic!("expected NonFinite, got {other:?}"),
            }
        }
    }
}
