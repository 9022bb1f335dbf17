//! Activation checkpointing by segments: the one place where training trades compute for memory
//! (`train.checkpoint_activations`), used by stage 1, both stage-2 updates, the KD warm-up and
//! teacher pretraining.
//!
//! burn 0.21 has no per-module checkpointing, and a custom autodiff node cannot run a nested
//! backward (the graph's lock is held). So the backward is driven from outside the graph:
//!
//! ```text
//! forward:  x_0 -> seg_0 -> x_1 -> ... -> x_n   on the inner backend (no graph), keeping x_k
//! loss:     g_n = d loss / d x_n                  (a small tracked graph from the leaf x_n)
//! backward: for k = n-1 .. 0: re-run seg_k on the autodiff backend from leaves x_k,
//!           back-propagate sum_i (out_i * g_{k+1,i}), keep the parameter gradients,
//!           g_k = the leaves' gradients
//! ```
//!
//! Only the segment inputs (one `[batch, L, dim]` token tensor per transformer block; the other
//! slots are shared handles) and one segment's graph at a time live at once: the activations of a
//! forward pass shrink from `blocks x (one block's saved tensors)` to `blocks x (one token
//! tensor) + one block's saved tensors`, for one more forward pass of compute.
//!
//! The boundary between segments is a list of rank-3 tensors ([`Slots`]); latents travel as
//! `[batch, channels, frames * height * width]`, embeddings `[batch, dim]` as `[batch, 1, dim]`,
//! scalars as `[1, 1, 1]`. [`Segment`] lists what a Wan DiT or a TMD student is cut into
//! (embeddings, each block, output head, flow-head entry and exit) with the slot layout each
//! expects; [`WanChain`] runs a list of them. The pieces:
//!
//! - [`vjp`]: one tracked pass of a closure from leaves and its vector-Jacobian product;
//! - [`forward`] / [`backward`]: a chain of segments, forward without a graph, backward by
//!   re-running each segment (any [`Segments`] implementation);
//! - [`GradSink`]: where parameter gradients go ([`ParamGrads`] accumulates a module's,
//!   [`NoParams`] drops them, for frozen networks whose input gradient is all that is needed).
//!
//! Gradients equal those of the plain graph up to the order of floating-point sums (tests:
//! `cargo test -p tmd-distill --test activation_checkpointing`).

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use tmd_flowhead::TmdStudent;
use tmd_model::dit::{RopeTables, WanModel};

use super::TrainError;

/// The tensors at a segment boundary.
pub type Slots<B> = Vec<Tensor<B, 3>>;

/// Gradients of the slots of a boundary (`None`: zero, or not asked for).
pub type SlotGrads<B> = Vec<Option<Tensor<<B as AutodiffBackend>::InnerBackend, 3>>>;

/// Receives the parameter gradients of each segment's backward.
pub trait GradSink<B: AutodiffBackend> {
    /// Takes what it wants out of `grads` (the gradients of one backward pass).
    fn absorb(&mut self, grads: &mut B::Gradients);
}

/// Drops parameter gradients (frozen networks: only the input gradient is wanted).
pub struct NoParams;

impl<B: AutodiffBackend> GradSink<B> for NoParams {
    fn absorb(&mut self, _grads: &mut B::Gradients) {}
}

/// Sums the gradients of `module`'s parameters over every backward pass it absorbs.
pub struct ParamGrads<'a, M> {
    module: &'a M,
    sum: GradientsAccumulator<M>,
}

impl<'a, M> ParamGrads<'a, M> {
    /// An empty sum for the parameters of `module`.
    pub fn new(module: &'a M) -> Self {
        Self {
            module,
            sum: GradientsAccumulator::new(),
        }
    }

    /// The summed gradients.
    pub fn into_grads(mut self) -> GradientsParams {
        self.sum.grads()
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> GradSink<B> for ParamGrads<'_, M> {
    fn absorb(&mut self, grads: &mut B::Gradients) {
        let part = GradientsParams::from_module(grads, self.module);
        self.sum.accumulate::<B>(self.module, part);
    }
}

/// `a + b` where either may be absent (zero).
pub fn add_grads<B: Backend, const D: usize>(
    a: Option<Tensor<B, D>>,
    b: Option<Tensor<B, D>>,
) -> Option<Tensor<B, D>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// One tracked pass of `f` from leaves made of `inputs` and its vector-Jacobian product with
/// `out_grads`: back-propagates `sum_i (out_i * out_grads_i)`, hands the parameter gradients to
/// `sink` and returns the untracked outputs and the gradients of the inputs. If every output
/// gradient is `None`, nothing runs and the outputs are empty.
///
/// # Errors
/// Whatever `f` returns; [`TrainError::Shape`] if `f` returns fewer outputs than there are
/// gradients, or a gradient's shape differs from its output's.
pub fn vjp<B: AutodiffBackend>(
    inputs: Slots<B::InnerBackend>,
    f: impl FnOnce(Slots<B>) -> Result<Slots<B>, TrainError>,
    out_grads: &[Option<Tensor<B::InnerBackend, 3>>],
    sink: &mut dyn GradSink<B>,
) -> Result<(Slots<B::InnerBackend>, SlotGrads<B>), TrainError> {
    let n_in = inputs.len();
    if out_grads.iter().all(Option::is_none) {
        return Ok((Vec::new(), vec![None; n_in]));
    }
    let leaves: Slots<B> = inputs
        .into_iter()
        .map(|x| Tensor::from_inner(x).require_grad())
        .collect();
    let outputs = f(leaves.clone())?;
    if outputs.len() < out_grads.len() {
        return Err(TrainError::Shape {
            what: "checkpointed segment outputs (count)".into(),
            expected: vec![out_grads.len()],
            found: vec![outputs.len()],
        });
    }
    let mut seed: Option<Tensor<B, 1>> = None;
    for (out, grad) in outputs.iter().zip(out_grads) {
        if let Some(g) = grad {
            if g.dims() != out.dims() {
                return Err(TrainError::Shape {
                    what: "checkpointed segment output gradient".into(),
                    expected: out.dims().to_vec(),
                    found: g.dims().to_vec(),
                });
            }
            let term = (out.clone() * Tensor::from_inner(g.clone())).sum();
            seed = Some(match seed {
                Some(s) => s + term,
                None => term,
            });
        }
    }
    let values = outputs.iter().map(|o| o.clone().inner()).collect();
    drop(outputs);
    let seed = seed.expect("at least one output gradient");
    let mut grads = seed.backward();
    let in_grads = leaves.iter().map(|leaf| leaf.grad(&grads)).collect();
    sink.absorb(&mut grads);
    Ok((values, in_grads))
}

/// A chain of segments that can run without a graph (inner backend) and with one.
pub trait Segments<B: AutodiffBackend> {
    /// Number of segments.
    fn count(&self) -> usize;
    /// Segment `k` on the inner backend.
    ///
    /// # Errors
    /// Model and shape errors.
    fn forward_inner(
        &self,
        k: usize,
        x: Slots<B::InnerBackend>,
    ) -> Result<Slots<B::InnerBackend>, TrainError>;
    /// Segment `k` on the autodiff backend (the same computation, tracked).
    ///
    /// # Errors
    /// Model and shape errors.
    fn forward_tracked(&self, k: usize, x: Slots<B>) -> Result<Slots<B>, TrainError>;
}

/// The inputs of every segment of one forward pass of a chain, for its [`backward`].
pub struct Tape<B: AutodiffBackend> {
    inputs: Vec<Slots<B::InnerBackend>>,
}

impl<B: AutodiffBackend> Tape<B> {
    /// Number of segments recorded.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Runs the chain on the inner backend from `input`, keeping each segment's input.
///
/// # Errors
/// The segments' errors.
pub fn forward<B: AutodiffBackend, S: Segments<B> + ?Sized>(
    segments: &S,
    input: Slots<B::InnerBackend>,
) -> Result<(Slots<B::InnerBackend>, Tape<B>), TrainError> {
    let mut inputs = Vec::with_capacity(segments.count());
    let mut x = input;
    for k in 0..segments.count() {
        inputs.push(x.clone());
        x = segments.forward_inner(k, x)?;
    }
    Ok((x, Tape { inputs }))
}

/// The backward pass of a chain recorded by [`forward`]: given the gradients of its outputs,
/// re-runs each segment tracked (last first), hands the parameter gradients to `sink`, and
/// returns the gradients of the chain's inputs.
///
/// # Errors
/// The segments' errors.
pub fn backward<B: AutodiffBackend, S: Segments<B> + ?Sized>(
    segments: &S,
    mut tape: Tape<B>,
    out_grads: SlotGrads<B>,
    sink: &mut dyn GradSink<B>,
) -> Result<SlotGrads<B>, TrainError> {
    let mut grads = out_grads;
    for k in (0..tape.inputs.len()).rev() {
        let input = tape.inputs.pop().expect("one input per segment");
        grads = vjp(input, |x| segments.forward_tracked(k, x), &grads, sink)?.1;
    }
    Ok(grads)
}

/// One piece of a Wan DiT or TMD student forward pass, with the slot layout it expects
/// (`rest..` passes through unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Embeddings at the chain's DiT timestep:
    /// `[x (latent), context (raw text), rest..] -> [tokens, e0, context, e, rest..]`.
    Embed,
    /// Transformer block `index`: `[tokens, e0, context, rest..] -> [block(tokens), e0, context,
    /// rest..]`; with `tap`, the block's output is also appended (GAN features).
    Block {
        /// Block index in the DiT.
        index: usize,
        /// Append the output tokens as a new last slot.
        tap: bool,
    },
    /// DiT output head: `[tokens, e0, context, e, rest..] -> [velocity (latent), rest..]`.
    Head,
    /// Student flow-head entry of head pass `pass` (times `(s, r)` of the chain's pass):
    /// `[m, _, context, _, y, y1, rest..] -> [h, e0_head, context, e_head, m, y, y1, rest..]`
    /// (`h` = fusion of `m` with `patch(y)`).
    HeadIn {
        /// Index into the chain's head passes.
        pass: usize,
    },
    /// Student flow-head exit: `[h, e0_head, context, e_head, m, y, y1, rest..]` ->
    /// the flow map `[m, e0_head, context, e_head, y - (s - r) u, y1, rest..]`, or with
    /// `average_velocity`, `[u, rest..]`, where `u = y1 - head(h)`.
    HeadOut {
        /// Index into the chain's head passes.
        pass: usize,
        /// Return `u` instead of taking the flow-map step.
        average_velocity: bool,
    },
}

/// What the segments of one chain share and do not differentiate: the DiT timestep, the RoPE
/// tables, the token grid, the latent shape and the head passes' times.
#[derive(Debug, Clone)]
pub struct ChainConsts<B: Backend> {
    /// DiT timestep `[batch]` (already `1000 t`).
    pub timestep: Tensor<B, 1>,
    /// RoPE tables of the grid.
    pub rope: RopeTables<B>,
    /// Token grid.
    pub grid: [usize; 3],
    /// Latent shape `[batch, channels, frames, height, width]`.
    pub latent: [usize; 5],
    /// `(s, r)`, each `[batch]`, of every head pass.
    pub passes: Vec<(Tensor<B, 1>, Tensor<B, 1>)>,
}

impl<B: AutodiffBackend> ChainConsts<B> {
    fn from_inner(c: &ChainConsts<B::InnerBackend>) -> Self {
        Self {
            timestep: Tensor::from_inner(c.timestep.clone()),
            rope: RopeTables {
                cos: Tensor::from_inner(c.rope.cos.clone()),
                sin: Tensor::from_inner(c.rope.sin.clone()),
            },
            grid: c.grid,
            latent: c.latent,
            passes: c
                .passes
                .iter()
                .map(|(s, r)| (Tensor::from_inner(s.clone()), Tensor::from_inner(r.clone())))
                .collect(),
        }
    }
}

/// A latent `[b, c, f, h, w]` as a slot `[b, c, f h w]`.
pub fn latent_slot<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 3> {
    let [b, c, f, h, w] = x.dims();
    x.reshape([b, c, f * h * w])
}

/// A slot `[b, c, f h w]` back into a latent of `shape`'s frames, height, width.
pub fn slot_latent<B: Backend>(x: Tensor<B, 3>, shape: [usize; 5]) -> Tensor<B, 5> {
    let [b, c, _] = x.dims();
    x.reshape([b, c, shape[2], shape[3], shape[4]])
}

fn slot_err(what: &str, expected: usize, found: usize) -> TrainError {
    TrainError::Shape {
        what: format!("checkpointed segment {what}: slots"),
        expected: vec![expected],
        found: vec![found],
    }
}

/// Runs one segment on any backend.
fn run_segment<C: Backend>(
    segment: Segment,
    dit: &WanModel<C>,
    student: Option<&TmdStudent<C>>,
    k: &ChainConsts<C>,
    x: Slots<C>,
) -> Result<Slots<C>, TrainError> {
    let need = |n: usize, what: &str| {
        if x.len() < n {
            Err(slot_err(what, n, x.len()))
        } else {
            Ok(())
        }
    };
    let student_of = |what: &str| {
        student.ok_or_else(|| TrainError::Data {
            step: 0,
            message: format!("checkpointed segment {what} needs a TMD student"),
        })
    };
    match segment {
        Segment::Embed => {
            need(2, "Embed")?;
            let mut it = x.into_iter();
            let latent = it.next().expect("checked");
            let context = it.next().expect("checked");
            let inputs = dit.embed(slot_latent(latent, k.latent), k.timestep.clone(), context)?;
            let mut out = vec![
                inputs.tokens,
                inputs.e0,
                inputs.context,
                inputs.e.unsqueeze_dim(1),
            ];
            out.extend(it);
            Ok(out)
        }
        Segment::Block { index, tap } => {
            need(3, "Block")?;
            let block = dit.blocks.get(index).ok_or_else(|| TrainError::Data {
                step: 0,
                message: format!(
                    "checkpointed block {index}: the model has {} blocks",
                    dit.blocks.len()
                ),
            })?;
            let mut x = x;
            let out = block.forward_parts(x[0].clone(), x[1].clone(), x[2].clone(), &k.rope);
            if tap {
                x.push(out.clone());
            }
            x[0] = out;
            Ok(x)
        }
        Segment::Head => {
            need(4, "Head")?;
            let mut it = x.into_iter();
            let tokens = it.next().expect("checked");
            let _e0 = it.next();
            let _context = it.next();
            let e = it.next().expect("checked");
            let [b, _, dim] = e.dims();
            let v = dit.head_and_unpatchify(tokens, e.reshape([b, dim]), k.grid);
            let mut out = vec![latent_slot(v)];
            out.extend(it);
            Ok(out)
        }
        Segment::HeadIn { pass } => {
            need(6, "HeadIn")?;
            let student = student_of("HeadIn")?;
            let (s, r) = k
                .passes
                .get(pass)
                .cloned()
                .ok_or_else(|| TrainError::Data {
                    step: 0,
                    message: format!("checkpointed head pass {pass}: the chain has no such pass"),
                })?;
            let mut it = x.into_iter();
            let m = it.next().expect("checked");
            let _e0 = it.next();
            let context = it.next().expect("checked");
            let _e = it.next();
            let y = it.next().expect("checked");
            let y1 = it.next().expect("checked");
            let (e_s, e, e0) = student.head_time_embedding(s, r);
            let z = dit.patchify(slot_latent(y.clone(), k.latent));
            let h = student.fusion.forward(m.clone(), z, e_s);
            let mut out = vec![h, e0, context, e.unsqueeze_dim(1), m, y, y1];
            out.extend(it);
            Ok(out)
        }
        Segment::HeadOut {
            pass,
            average_velocity,
        } => {
            need(7, "HeadOut")?;
            student_of("HeadOut")?;
            let (s, r) = k
                .passes
                .get(pass)
                .cloned()
                .ok_or_else(|| TrainError::Data {
                    step: 0,
                    message: format!("checkpointed head pass {pass}: the chain has no such pass"),
                })?;
            let mut it = x.into_iter();
            let h = it.next().expect("checked");
            let e0 = it.next().expect("checked");
            let context = it.next().expect("checked");
            let e = it.next().expect("checked");
            let m = it.next().expect("checked");
            let y = it.next().expect("checked");
            let y1 = it.next().expect("checked");
            let [b, _, dim] = e.dims();
            let out = dit.head_and_unpatchify(h, e.clone().reshape([b, dim]), k.grid);
            let u = slot_latent(y1.clone(), k.latent) - out;
            if average_velocity {
                let mut res = vec![latent_slot(u)];
                res.extend(it);
                return Ok(res);
            }
            let [b] = s.dims();
            let step = (s - r).reshape([b, 1, 1, 1, 1]);
            let y_next = slot_latent(y, k.latent) - u * step;
            let mut res = vec![m, e0, context, e, latent_slot(y_next), y1];
            res.extend(it);
            Ok(res)
        }
    }
}

/// The network a [`WanChain`] runs: a plain DiT or a TMD student, tracked and untracked.
enum Net<'a, B: AutodiffBackend> {
    Dit {
        tracked: &'a WanModel<B>,
        inner: Box<WanModel<B::InnerBackend>>,
    },
    Student {
        tracked: &'a TmdStudent<B>,
        inner: Box<TmdStudent<B::InnerBackend>>,
    },
}

/// A list of [`Segment`]s of one network with its [`ChainConsts`]: a [`Segments`] chain.
pub struct WanChain<'a, B: AutodiffBackend> {
    net: Net<'a, B>,
    consts: ChainConsts<B::InnerBackend>,
    segments: Vec<Segment>,
}

impl<'a, B: AutodiffBackend> WanChain<'a, B> {
    /// A chain over a DiT (its parameters trained or frozen as they are set).
    pub fn dit(
        dit: &'a WanModel<B>,
        consts: ChainConsts<B::InnerBackend>,
        segments: Vec<Segment>,
    ) -> Self {
        Self {
            net: Net::Dit {
                tracked: dit,
                inner: Box::new(dit.valid()),
            },
            consts,
            segments,
        }
    }

    /// A chain over a TMD student.
    pub fn student(
        student: &'a TmdStudent<B>,
        consts: ChainConsts<B::InnerBackend>,
        segments: Vec<Segment>,
    ) -> Self {
        Self {
            net: Net::Student {
                tracked: student,
                inner: Box::new(student.valid()),
            },
            consts,
            segments,
        }
    }

    /// The same network and constants with other segments.
    pub fn with_segments(&self, segments: Vec<Segment>) -> Self {
        let net = match &self.net {
            Net::Dit { tracked, inner } => Net::Dit {
                tracked,
                inner: inner.clone(),
            },
            Net::Student { tracked, inner } => Net::Student {
                tracked,
                inner: inner.clone(),
            },
        };
        Self {
            net,
            consts: self.consts.clone(),
            segments,
        }
    }

    /// The chain's constants.
    pub fn consts(&self) -> &ChainConsts<B::InnerBackend> {
        &self.consts
    }

    /// The untracked student, if the chain runs one.
    pub fn inner_student(&self) -> Option<&TmdStudent<B::InnerBackend>> {
        match &self.net {
            Net::Student { inner, .. } => Some(inner.as_ref()),
            Net::Dit { .. } => None,
        }
    }
}

impl<B: AutodiffBackend> Segments<B> for WanChain<'_, B> {
    fn count(&self) -> usize {
        self.segments.len()
    }

    fn forward_inner(
        &self,
        k: usize,
        x: Slots<B::InnerBackend>,
    ) -> Result<Slots<B::InnerBackend>, TrainError> {
        match &self.net {
            Net::Dit { inner, .. } => run_segment(self.segments[k], inner, None, &self.consts, x),
            Net::Student { inner, .. } => run_segment(
                self.segments[k],
                &inner.dit,
                Some(inner.as_ref()),
                &self.consts,
                x,
            ),
        }
    }

    fn forward_tracked(&self, k: usize, x: Slots<B>) -> Result<Slots<B>, TrainError> {
        let consts = ChainConsts::<B>::from_inner(&self.consts);
        match &self.net {
            Net::Dit { tracked, .. } => run_segment(self.segments[k], tracked, None, &consts, x),
            Net::Student { tracked, .. } => {
                run_segment(self.segments[k], &tracked.dit, Some(tracked), &consts, x)
            }
        }
    }
}

/// The token grid of a latent for `dit`'s patch size.
pub fn grid_of<B: Backend>(dit: &WanModel<B>, latent: [usize; 5]) -> [usize; 3] {
    let [pt, ph, pw] = dit.patch_size;
    [latent[2] / pt, latent[3] / ph, latent[4] / pw]
}

/// The constants of a chain over `dit` for latents of shape `latent` at DiT timestep `timestep`
/// (`1000 t`), with head passes `passes`.
pub fn chain_consts<M: Backend, B: Backend>(
    dit: &WanModel<M>,
    latent: [usize; 5],
    timestep: Tensor<B, 1>,
    passes: Vec<(Tensor<B, 1>, Tensor<B, 1>)>,
) -> ChainConsts<B> {
    let grid = grid_of(dit, latent);
    ChainConsts {
        rope: RopeTables::new(grid, dit.head_dim(), dit.rope_theta, &timestep.device()),
        timestep,
        grid,
        latent,
        passes,
    }
}

/// The segments of a whole DiT forward pass: embeddings, every block (tapping `taps`), head.
pub fn dit_segments(blocks: usize, taps: &[usize]) -> Vec<Segment> {
    let mut s = vec![Segment::Embed];
    s.extend((0..blocks).map(|index| Segment::Block {
        index,
        tap: taps.contains(&index),
    }));
    s.push(Segment::Head);
    s
}

/// The segments of a student's backbone: embeddings and blocks `0..L-H`.
pub fn backbone_segments<B: Backend>(student: &TmdStudent<B>) -> Vec<Segment> {
    let mut s = vec![Segment::Embed];
    s.extend((0..student.backbone_blocks()).map(|index| Segment::Block { index, tap: false }));
    s
}

/// The segments of head pass `pass`: entry, blocks `L-H..L`, exit.
pub fn head_pass_segments<B: Backend>(
    student: &TmdStudent<B>,
    pass: usize,
    average_velocity: bool,
) -> Vec<Segment> {
    let mut s = vec![Segment::HeadIn { pass }];
    s.extend(
        (student.backbone_blocks()..student.teacher_blocks())
            .map(|index| Segment::Block { index, tap: false }),
    );
    s.push(Segment::HeadOut {
        pass,
        average_velocity,
    });
    s
}

/// The loss value and the gradient of the network's input latent (`None`: it does not reach it).
pub type LossAndInputGrad<B> = (f64, Option<Tensor<<B as AutodiffBackend>::InnerBackend, 5>>);

/// A DiT's loss `loss(v)` of its velocity `v = dit(x, timestep, context)`, with the DiT forward
/// checkpointed block by block: returns the loss value and the gradient of the DiT's input `x`
/// (`None` if it does not reach it); parameter gradients go to `sink`.
///
/// # Shapes
/// - `x`: `[batch, c, f, h, w]`; `timestep`: `[batch]` (`1000 t`); `context`: `[batch, l, text_dim]`
/// - `loss` receives `v` like `x` (tracked) and returns `[1]`
///
/// # Errors
/// Model shape errors and `loss`'s.
pub fn dit_loss<B: AutodiffBackend>(
    dit: &WanModel<B>,
    x: Tensor<B::InnerBackend, 5>,
    timestep: Tensor<B::InnerBackend, 1>,
    context: Tensor<B::InnerBackend, 3>,
    loss: impl FnOnce(Tensor<B, 5>) -> Result<Tensor<B, 1>, TrainError>,
    sink: &mut dyn GradSink<B>,
) -> Result<LossAndInputGrad<B>, TrainError> {
    let latent = x.dims();
    let consts = chain_consts(dit, latent, timestep, Vec::new());
    let chain = WanChain::dit(dit, consts, dit_segments(dit.blocks.len(), &[]));
    let (out, tape) = forward(&chain, vec![latent_slot(x), context])?;
    let device = out[0].device();
    let one = Tensor::<B::InnerBackend, 3>::ones([1, 1, 1], &device);
    let (values, g) = vjp::<B>(
        out,
        |v| {
            let l = loss(slot_latent(v[0].clone(), latent))?;
            Ok(vec![l.reshape([1, 1, 1])])
        },
        &[Some(one)],
        sink,
    )?;
    let value = values[0].clone().into_scalar().elem::<f64>();
    let g_in = backward(&chain, tape, g, sink)?;
    Ok((
        value,
        g_in.into_iter()
            .next()
            .flatten()
            .map(|g| slot_latent(g, latent)),
    ))
}
