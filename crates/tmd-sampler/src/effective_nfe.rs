//! Effective number of function evaluations (NFE): what one generated clip costs, counted in
//! full-DiT forward passes, so samplers of different shapes compare on one axis.
//!
//! A teacher step is one DiT pass, or two with classifier-free guidance (conditional and
//! unconditional branch). The TMD student's count (backbone once per outer step plus `N` flow-head
//! passes of `H` of the `L` blocks) joins this module with the student sampler.

/// Effective NFE of a teacher sampler: `steps` solver steps, each one DiT pass, two with CFG
/// (`guidance != 1`).
pub fn teacher(steps: usize, guidance: f64) -> f64 {
    let passes = if guidance != 1.0 { 2.0 } else { 1.0 };
    steps as f64 * passes
}

#[cfg(test)]
mod tests {
    #[test]
    fn cfg_doubles_the_passes() {
        assert_eq!(super::teacher(50, 5.0), 100.0);
        assert_eq!(super::teacher(4, 1.0), 4.0);
    }
}
