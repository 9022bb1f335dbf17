//! Effective number of function evaluations (NFE): what one generated clip costs, counted in
//! full-DiT forward passes, so samplers of different shapes compare on one axis.
//!
//! A teacher step is one DiT pass, or two with classifier-free guidance (conditional and
//! unconditional branch). A TMD outer step runs the backbone (`L - H` blocks) once and the flow
//! head (`H` blocks) `N` times: `1 + (N - 1) H / L` passes (TMD.md, "Notation"). A DMD2-v step is
//! one pass (no CFG at inference).

/// Effective NFE of a teacher sampler: `steps` solver steps, each one DiT pass, two with CFG
/// (`guidance != 1`).
pub fn teacher(steps: usize, guidance: f64) -> f64 {
    let passes = if guidance != 1.0 { 2.0 } else { 1.0 };
    steps as f64 * passes
}

/// Effective NFE of a TMD student: `M` outer steps of one backbone pass and `N` head passes each,
/// `M (1 + (N - 1) H / L)` for a head of `H` of the teacher's `L` blocks.
pub fn tmd(
    outer_steps: usize,
    inner_steps: usize,
    head_blocks: usize,
    teacher_blocks: usize,
) -> f64 {
    let head_share = head_blocks as f64 / teacher_blocks.max(1) as f64;
    outer_steps as f64 * (1.0 + inner_steps.saturating_sub(1) as f64 * head_share)
}

/// Effective NFE of a DMD2-v student: one DiT pass per step.
pub fn dmd(steps: usize) -> f64 {
    steps as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn tmd_matches_the_paper_figures() {
        // TMD.md: N2H5 on the 30-block 1.3B is 1.17 at M=1 and 2.33 at M=2; N4H5 1.50 / 3.00.
        let round = |x: f64| (x * 100.0).round() / 100.0;
        assert_eq!(round(super::tmd(1, 2, 5, 30)), 1.17);
        assert_eq!(round(super::tmd(2, 2, 5, 30)), 2.33);
        assert_eq!(super::tmd(1, 4, 5, 30), 1.5);
        assert_eq!(super::tmd(2, 4, 5, 30), 3.0);
        // One inner step costs what one teacher pass costs.
        assert_eq!(super::tmd(3, 1, 5, 30), super::dmd(3));
    }

    #[test]
    fn cfg_doubles_the_passes() {
        assert_eq!(super::teacher(50, 5.0), 100.0);
        assert_eq!(super::teacher(4, 1.0), 4.0);
    }
}
