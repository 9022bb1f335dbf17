//! Data-parallel training on several devices of one host: one thread per device ("rank"), the
//! gradients averaged through burn-collective's all-reduce (its local mode).
//!
//! Every rank draws the *global* batch of a step (the draws are pure functions of `(seed, step)`,
//! see [`super::rng`]) and trains on its slice of it ([`shard_batch`]); the mean of the ranks'
//! gradients is then the gradient of the global batch, so the global batch, the losses and the
//! trajectory do not depend on the number of ranks (up to floating-point summation order).
//!
//! What [`train_loop`](super::run::train_loop) does in a thread that [`join`]ed a run:
//!
//! - parameter ids become functions of the parameter paths ([`path_param_ids`]), equal in every
//!   rank (burn draws them at random, and burn-collective matches gradients by id);
//! - after resuming, rank 0's parameters are copied to every rank ([`DataParallel::sync_module`]),
//!   so replicas start equal even from a random initialisation;
//! - each step's gradients and loss are averaged over the ranks ([`DataParallel::mean_grads`], in
//!   buckets of [`BUCKET_VALUES`], and [`DataParallel::mean_scalar`]); a step that updates only part
//!   of the model (stage 2's student/critic turns) does so on every rank, since the turn is a
//!   function of the step;
//! - only rank 0 writes checkpoints and the loss log, and it resumes first (moving corrupt
//!   checkpoints aside, cutting the log); every rank then resumes from the same checkpoint, so a
//!   run can restart on a different number of ranks.
//!
//! Ranks must not share autodiff tensors: concurrent backward passes over shared leaves lose
//! gradients. Each rank builds or loads its own models ([`DataParallel::sync_module`] also gives
//! the trained module fresh leaves).
//!
//! Collectives cannot be cancelled, so a watchdog ends the process ([`EXIT_PEER_LOST`]) when one
//! waits longer than the timeout: a rank that dies stops the others instead of hanging them, and
//! the newest checkpoint on disk holds the run.
//!
//! Across hosts: burn-collective 0.21.0's multi-node mode completes only the first all-reduce of a
//! process (its `SyncService::sync` compares a copy of the list of synced peers and clears the
//! copy, so from the second barrier on the list never matches: `global/node/sync.rs`), so runs
//! span one host until a burn release fixes it; the design (one rank per device, rank 0 writes,
//! global-batch sharding) carries over unchanged.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use burn::collective::{finish_collective, register, CollectiveConfig, PeerId, ReduceOperation};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::TensorPrimitive;

use tmd_sampler::noise::gaussian;

use super::error::TrainError;
use super::run::fnv1a;
use super::sharded_optimizer::{Owned, Ownership};

/// Exit status of a process whose collective waited past the timeout (a rank is gone).
pub const EXIT_PEER_LOST: i32 = 75;

/// Environment variable of the fault tests' hook ([`DataParallel::inject_fault`], called at the
/// start of every step of [`train_loop`](super::run::train_loop) in a data-parallel run):
/// `RANK:STEP:fail` makes rank RANK fail step STEP with an error (a crashed device), and
/// `RANK:STEP:hang` makes it stop answering there (a lost host). Unset in normal runs.
pub const FAULT_ENV: &str = "TMD_INJECT_FAULT";

/// Membership of this thread in a data-parallel run (see the module docs).
#[derive(Debug)]
pub struct DataParallel {
    rank: u32,
    world: u32,
    /// Unix seconds at which the collective in flight began; 0 when none is.
    in_flight_since: Arc<AtomicU64>,
}

thread_local! {
    static SESSION: RefCell<Option<Arc<DataParallel>>> = const { RefCell::new(None) };
}

/// The data-parallel session of this thread, if it [`join`]ed one.
pub fn current() -> Option<Arc<DataParallel>> {
    SESSION.with(|s| s.borrow().clone())
}

/// Joins this thread to a run of `world` ranks as `rank`, training on `device` of the (inner,
/// non-autodiff) backend `B`: registers with burn-collective and blocks until all `world` ranks
/// have. A collective that waits longer than `timeout` ends the process with [`EXIT_PEER_LOST`].
/// A `world` of 1 joins nothing and returns `None`.
///
/// # Errors
/// [`TrainError::Parallel`] for `rank >= world`, a thread that already joined, or a failed
/// registration.
pub fn join<B: Backend>(
    world: u32,
    rank: u32,
    device: &B::Device,
    timeout: Duration,
) -> Result<Option<Arc<DataParallel>>, TrainError> {
    if world == 0 || rank >= world {
        return Err(TrainError::parallel(format!(
            "rank {rank} is not in 0..{world} (world)"
        )));
    }
    if world == 1 {
        return Ok(None);
    }
    if current().is_some() {
        return Err(TrainError::parallel(
            "this thread already joined a data-parallel run",
        ));
    }
    let session = Arc::new(DataParallel {
        rank,
        world,
        in_flight_since: Arc::new(AtomicU64::new(0)),
    });
    session.watch(timeout);
    let config = CollectiveConfig::default().with_num_devices(world as usize);
    session.collective("register", || {
        register::<B>(PeerId::from(rank), device.clone(), config)
    })?;
    SESSION.with(|s| *s.borrow_mut() = Some(Arc::clone(&session)));
    Ok(Some(session))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DataParallel {
    /// This thread's rank.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> u32 {
        self.world
    }

    /// Whether this rank writes checkpoints, logs and reports (rank 0).
    pub fn is_writer(&self) -> bool {
        self.rank == 0
    }

    /// This rank's rows of a global batch of `global` rows.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when `global` is not a multiple of the world size.
    pub fn shard(&self, global: usize) -> Result<Range<usize>, TrainError> {
        let world = self.world as usize;
        if !global.is_multiple_of(world) {
            return Err(TrainError::parallel(format!(
                "global batch {global} does not split evenly over {world} ranks"
            )));
        }
        let per_rank = global / world;
        let start = self.rank as usize * per_rank;
        Ok(start..start + per_rank)
    }

    /// Ends the process when a collective has been in flight longer than `timeout`.
    fn watch(&self, timeout: Duration) {
        // Ends with the session (the weak reference then fails to upgrade).
        let since = Arc::downgrade(&self.in_flight_since);
        let rank = self.rank;
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let Some(since) = since.upgrade() else {
                return;
            };
            let began = since.load(Ordering::SeqCst);
            if began != 0 && unix_now().saturating_sub(began) > timeout.as_secs() {
                eprintln!(
                    "rank {rank}: a collective waited more than {} s, so another rank is gone; \
                     stopping (the newest checkpoint holds the run: run again to resume)",
                    timeout.as_secs()
                );
                std::process::exit(EXIT_PEER_LOST);
            }
        });
    }

    /// The fault-injection hook of the fault tests (see [`FAULT_ENV`]): fails or hangs this rank
    /// at `step` when the variable names it, and does nothing otherwise.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] for an injected failure, or a malformed [`FAULT_ENV`].
    pub fn inject_fault(&self, step: u64) -> Result<(), TrainError> {
        let Ok(spec) = std::env::var(FAULT_ENV) else {
            return Ok(());
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (rank, at, kind) = match parts.as_slice() {
            [r, s, k] => match (r.parse::<u32>(), s.parse::<u64>()) {
                (Ok(r), Ok(s)) => (r, s, *k),
                _ => (u32::MAX, 0, ""),
            },
            _ => (u32::MAX, 0, ""),
        };
        if rank == u32::MAX || !matches!(kind, "fail" | "hang") {
            return Err(TrainError::parallel(format!(
                "{FAULT_ENV}={spec:?}: expected RANK:STEP:fail or RANK:STEP:hang"
            )));
        }
        if rank != self.rank || at != step {
            return Ok(());
        }
        if kind == "hang" {
            eprintln!("rank {rank}: {FAULT_ENV}: stops answering at step {step}");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Err(TrainError::parallel(format!(
            "rank {rank}: {FAULT_ENV}: injected failure at step {step}"
        )))
    }

    /// Runs the blocking collective `f` under the watchdog.
    fn collective<T>(
        &self,
        what: &str,
        f: impl FnOnce() -> Result<T, burn::collective::CollectiveError>,
    ) -> Result<T, TrainError> {
        self.in_flight_since.store(unix_now(), Ordering::SeqCst);
        let out = f();
        self.in_flight_since.store(0, Ordering::SeqCst);
        out.map_err(|e| TrainError::parallel(format!("rank {}: {what}: {e:?}", self.rank)))
    }

    /// The mean over the ranks of each gradient in `grads` (which must hold the same parameters
    /// on every rank), for the parameters of `module`. `B` is the autodiff backend the gradients
    /// came from.
    ///
    /// The gradients travel in buckets of about [`BUCKET_VALUES`] values (flattened and
    /// concatenated in the module's parameter order, which every rank shares), one all-reduce per
    /// bucket: each all-reduce is a rendezvous of every rank's thread, and one per parameter
    /// (burn's `GradientsParams::all_reduce`) is ~800 of them a step for a 1.3B model. (On two
    /// H100s the step time did not move beyond run-to-run noise either way: the per-rank
    /// slowdown lies elsewhere, benches/NOTES.md.)
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when the collective fails or `grads` holds a gradient of a
    /// parameter outside `module`.
    pub fn mean_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        grads: GradientsParams,
    ) -> Result<GradientsParams, TrainError> {
        self.mean_grads_in_buckets(module, grads, BUCKET_VALUES)
    }

    /// [`Self::mean_grads`] with buckets of about `bucket_values` values (a bucket is sent once
    /// it holds at least that many).
    ///
    /// # Errors
    /// As [`Self::mean_grads`].
    pub fn mean_grads_in_buckets<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        grads: GradientsParams,
        bucket_values: usize,
    ) -> Result<GradientsParams, TrainError> {
        self.reduce_grads(module, grads, bucket_values, None)
            .map(|(out, _)| out)
    }

    /// [`Self::mean_grads`] for a run whose optimizer state is sharded ([`Ownership`]): the mean
    /// gradients of the parameters this rank owns, and the ids of every parameter that had a
    /// gradient (the ones [`Self::broadcast_updated`] sends after the optimizer step).
    ///
    /// # Errors
    /// As [`Self::mean_grads`].
    pub fn mean_grads_owned<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        grads: GradientsParams,
        ownership: &Ownership,
    ) -> Result<(GradientsParams, HashSet<ParamId>), TrainError> {
        self.reduce_grads(module, grads, BUCKET_VALUES, Some(ownership))
    }

    fn reduce_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: &M,
        mut grads: GradientsParams,
        bucket_values: usize,
        ownership: Option<&Ownership>,
    ) -> Result<(GradientsParams, HashSet<ParamId>), TrainError> {
        let mut buckets = Buckets::<B> {
            session: self,
            grads: &mut grads,
            pending: Vec::new(),
            bucket_values,
            values: 0,
            out: GradientsParams::new(),
            keep: ownership,
            updated: HashSet::new(),
            error: None,
        };
        module.visit(&mut buckets);
        buckets.flush();
        let Buckets {
            out,
            updated,
            error,
            ..
        } = buckets;
        if let Some(e) = error {
            return Err(e);
        }
        if !grads.is_empty() {
            return Err(TrainError::parallel(format!(
                "rank {}: {} gradients of parameters outside the trained module",
                self.rank,
                grads.len()
            )));
        }
        Ok((out, updated))
    }

    /// After a sharded optimizer step: every parameter in `updated` from its owner (which
    /// stepped it) on every rank, one broadcast per bucket of an owner's parameters.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when a collective fails.
    pub fn broadcast_updated<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: M,
        ownership: &Ownership,
        updated: &HashSet<ParamId>,
    ) -> Result<M, TrainError> {
        // This rank's updated parameters, flattened, and its device.
        struct Mine<B: AutodiffBackend> {
            rank: u32,
            ownership_owner: HashMap<ParamId, u32>,
            flat: HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
            device: Option<B::Device>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Mine<B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let value = param.val().inner();
                if self.device.is_none() {
                    self.device = Some(value.device());
                }
                if self.ownership_owner.get(&param.id) == Some(&self.rank) {
                    let n = value.shape().num_elements();
                    self.flat.insert(param.id, value.reshape([n]));
                }
            }
        }
        let groups = ownership.updated_by_owner(updated);
        let mut mine = Mine::<B> {
            rank: self.rank,
            ownership_owner: groups.iter().flatten().map(|p| (p.id, p.owner)).collect(),
            flat: HashMap::new(),
            device: None,
        };
        module.visit(&mut mine);
        let Some(device) = mine.device else {
            return Ok(module);
        };
        let mut received: HashMap<ParamId, Tensor<B::InnerBackend, 1>> = HashMap::new();
        for (owner, params) in groups.iter().enumerate() {
            let owner = owner as u32;
            for bucket in buckets_of(params, BUCKET_VALUES) {
                let input = if owner == self.rank {
                    let parts = bucket
                        .iter()
                        .map(|p| {
                            mine.flat.get(&p.id).cloned().ok_or_else(|| {
                                TrainError::parallel(format!(
                                    "rank {}: parameter {} is not in the module",
                                    self.rank, p.id
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Some(Tensor::cat(parts, 0).into_primitive().tensor())
                } else {
                    None
                };
                let flat = self.collective("parameter broadcast", || {
                    burn::collective::broadcast::<B::InnerBackend>(PeerId::from(self.rank), input)
                })?;
                if owner == self.rank {
                    continue;
                }
                // burn-collective 0.21 may hand the first caller the sender's tensor as is (on the
                // sender's device): move it here.
                let flat =
                    Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(flat))
                        .to_device(&device);
                let mut offset = 0;
                for p in bucket {
                    let n = p.dims.iter().product::<usize>();
                    received.insert(p.id, flat.clone().narrow(0, offset, n));
                    offset += n;
                }
            }
        }
        struct Replace<B: AutodiffBackend> {
            received: HashMap<ParamId, Tensor<B::InnerBackend, 1>>,
        }
        impl<B: AutodiffBackend> ModuleMapper<B> for Replace<B> {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<B, D>>,
            ) -> Param<Tensor<B, D>> {
                let (id, tensor, mapper) = param.consume();
                let Some(flat) = self.received.remove(&id) else {
                    return Param::from_mapped_value(id, tensor, mapper);
                };
                let value = Tensor::from_inner(flat.reshape(tensor.shape()));
                let value = if tensor.is_require_grad() {
                    value.require_grad()
                } else {
                    value
                };
                Param::from_mapped_value(id, value, mapper)
            }
        }
        Ok(module.map(&mut Replace::<B> { received }))
    }

    /// Whether every rank is `ok` (one all-reduce): how ranks agree to go on after a step that
    /// can fail on some of them (writing a checkpoint).
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when the collective fails.
    pub fn all_ok<B: AutodiffBackend>(
        &self,
        ok: bool,
        device: &B::Device,
    ) -> Result<bool, TrainError> {
        let failures = self.mean_scalar::<B>(if ok { 0.0 } else { 1.0 }, device)?;
        Ok(failures == 0.0)
    }

    /// Returns once every rank has called it (one all-reduce of a scalar); `what` names the wait
    /// in the error of a failed collective.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when the collective fails.
    pub fn barrier<B: AutodiffBackend>(
        &self,
        what: &str,
        device: &B::Device,
    ) -> Result<(), TrainError> {
        self.reduce_scalar::<B>(what, 0.0, device).map(|_| ())
    }

    /// The mean over the ranks of `value` (a step's loss).
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when the collective fails.
    pub fn mean_scalar<B: AutodiffBackend>(
        &self,
        value: f64,
        device: &B::Device,
    ) -> Result<f64, TrainError> {
        self.reduce_scalar::<B>("loss all-reduce", value, device)
    }

    /// The mean over the ranks of `value`; `what` names the collective in its error.
    fn reduce_scalar<B: AutodiffBackend>(
        &self,
        what: &str,
        value: f64,
        device: &B::Device,
    ) -> Result<f64, TrainError> {
        let t = Tensor::<B, 1>::from_floats([value as f32], device).inner();
        let reduced = self.collective(what, || {
            burn::collective::all_reduce::<B::InnerBackend>(
                PeerId::from(self.rank),
                t.into_primitive().tensor(),
                ReduceOperation::Mean,
            )
        })?;
        let mean: f32 =
            Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced))
                .into_scalar()
                .elem();
        Ok(f64::from(mean))
    }

    /// Rank 0's parameters on every rank: each float parameter becomes the sum over the ranks of
    /// (rank 0: its value, others: zeros).
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when a collective fails.
    pub fn sync_module<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        module: M,
    ) -> Result<M, TrainError> {
        let mut mapper = FromRankZero::<B> {
            session: self,
            error: None,
            _backend: std::marker::PhantomData,
        };
        let module = module.map(&mut mapper);
        match mapper.error {
            Some(e) => Err(e),
            None => Ok(module),
        }
    }

    /// Rank 0's `tensor` on every rank (the sum over the ranks of rank 0's value and zeros;
    /// burn-collective has no broadcast across its all-reduce). `B` is the backend joined with.
    fn rank_zero_value<B: Backend, const D: usize>(
        &self,
        what: &str,
        tensor: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, TrainError> {
        let contribution = if self.rank == 0 {
            tensor
        } else {
            tensor.zeros_like()
        };
        let sum = self.collective(what, || {
            burn::collective::all_reduce::<B>(
                PeerId::from(self.rank),
                contribution.into_primitive().tensor(),
                ReduceOperation::Sum,
            )
        })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(sum)))
    }

    /// Leaves the run (burn-collective's `finish_collective`); this thread can join another.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when it fails.
    pub fn finish<B: Backend>(&self) -> Result<(), TrainError> {
        SESSION.with(|s| *s.borrow_mut() = None);
        self.collective("finish", || finish_collective::<B>(PeerId::from(self.rank)))
    }
}

/// Values per gradient bucket of [`DataParallel::mean_grads`] (2^26 f32 values, 256 MiB): large
/// enough that a 1.3B model's gradients take ~20 all-reduces, small enough that the bucket's copy
/// is a small part of the memory.
pub const BUCKET_VALUES: usize = 1 << 26;

/// Gathers gradients in module order into buckets and averages each bucket over the ranks.
struct Buckets<'a, B: AutodiffBackend> {
    session: &'a DataParallel,
    grads: &'a mut GradientsParams,
    /// Flattened gradients of the bucket being filled, with their ids and shapes.
    pending: Vec<(ParamId, Vec<usize>, Tensor<B::InnerBackend, 1>)>,
    bucket_values: usize,
    values: usize,
    out: GradientsParams,
    /// With a sharded optimizer: register only this rank's parameters in `out`.
    keep: Option<&'a Ownership>,
    /// Every parameter that had a gradient.
    updated: HashSet<ParamId>,
    error: Option<TrainError>,
}

impl<B: AutodiffBackend> Buckets<'_, B> {
    /// All-reduces the pending gradients as one tensor and registers their means in `out`.
    fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.values = 0;
        if pending.is_empty() || self.error.is_some() {
            return;
        }
        let flat = Tensor::cat(pending.iter().map(|(_, _, g)| g.clone()).collect(), 0);
        let session = self.session;
        let reduced = session.collective("gradient all-reduce", || {
            burn::collective::all_reduce::<B::InnerBackend>(
                PeerId::from(session.rank),
                flat.into_primitive().tensor(),
                ReduceOperation::Mean,
            )
        });
        let mean = match reduced {
            Ok(mean) => Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(mean)),
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        let mut offset = 0;
        for (id, dims, _) in pending {
            let n = dims.iter().product::<usize>();
            let part = mean.clone().narrow(0, offset, n);
            offset += n;
            self.updated.insert(id);
            if let Some(own) = self.keep {
                if own.owner(id) != Some(session.rank) {
                    continue;
                }
            }
            if let Err(e) = register_shaped(&mut self.out, id, part, &dims) {
                self.error = Some(e);
                return;
            }
        }
    }
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Buckets<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.error.is_some() {
            return;
        }
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let dims = grad.dims().to_vec();
            let n = dims.iter().product::<usize>();
            self.pending.push((param.id, dims, grad.reshape([n])));
            self.values += n;
            if self.values >= self.bucket_values {
                self.flush();
            }
        }
    }
}

/// `params` cut into consecutive buckets of at least `bucket_values` values (the last may hold
/// fewer; a parameter is never split).
fn buckets_of<'p>(params: &[&'p Owned], bucket_values: usize) -> Vec<Vec<&'p Owned>> {
    let mut out = Vec::new();
    let (mut bucket, mut values) = (Vec::new(), 0usize);
    for &p in params {
        values += p.dims.iter().product::<usize>();
        bucket.push(p);
        if values >= bucket_values {
            out.push(std::mem::take(&mut bucket));
            values = 0;
        }
    }
    if !bucket.is_empty() {
        out.push(bucket);
    }
    out
}

/// Registers the flat gradient `flat` under `id` with its shape `dims` (ranks 1 to 6).
fn register_shaped<B: Backend>(
    grads: &mut GradientsParams,
    id: ParamId,
    flat: Tensor<B, 1>,
    dims: &[usize],
) -> Result<(), TrainError> {
    fn shaped<B: Backend, const D: usize>(
        grads: &mut GradientsParams,
        id: ParamId,
        flat: Tensor<B, 1>,
        dims: &[usize],
    ) {
        let mut shape = [0usize; D];
        shape.copy_from_slice(dims);
        grads.register::<B, D>(id, flat.reshape(shape));
    }
    match dims.len() {
        1 => shaped::<B, 1>(grads, id, flat, dims),
        2 => shaped::<B, 2>(grads, id, flat, dims),
        3 => shaped::<B, 3>(grads, id, flat, dims),
        4 => shaped::<B, 4>(grads, id, flat, dims),
        5 => shaped::<B, 5>(grads, id, flat, dims),
        6 => shaped::<B, 6>(grads, id, flat, dims),
        rank => {
            return Err(TrainError::parallel(format!(
                "a gradient of rank {rank}: buckets take ranks 1 to 6"
            )))
        }
    }
    Ok(())
}

struct FromRankZero<'a, B: AutodiffBackend> {
    session: &'a DataParallel,
    error: Option<TrainError>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for FromRankZero<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if self.error.is_some() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let require_grad = tensor.is_require_grad();
        let synced = self
            .session
            .rank_zero_value("parameter broadcast", tensor.clone().inner());
        match synced {
            Ok(synced) => {
                let synced = Tensor::from_inner(synced);
                let synced = if require_grad {
                    synced.require_grad()
                } else {
                    synced
                };
                Param::from_mapped_value(id, synced, mapper)
            }
            Err(e) => {
                self.error = Some(e);
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

/// Runs `prepare` (work that writes shared files: latent statistics, caches) on rank 0 first and
/// on the other ranks after it finished, so they find its files instead of racing to write them
/// (torch's "zero first" idiom). Outside a data-parallel run it just runs `prepare`. `B` is the
/// backend the run joined with.
///
/// # Errors
/// `prepare`'s error; on ranks other than 0, [`TrainError::Parallel`] when rank 0's failed.
pub fn rank_zero_first<B: Backend, T>(
    device: &B::Device,
    mut prepare: impl FnMut() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    match rank_zero_then_barrier::<B, T>(device, &mut prepare)? {
        Some(out) => Ok(out),
        None => prepare(),
    }
}

/// Runs `write` (e.g. copying a model directory the run then reads) on rank 0 only, the other
/// ranks waiting until it finished; outside a data-parallel run it just runs `write`.
///
/// # Errors
/// `write`'s error; on ranks other than 0, [`TrainError::Parallel`] when rank 0's failed.
pub fn on_rank_zero<B: Backend>(
    device: &B::Device,
    mut write: impl FnMut() -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    rank_zero_then_barrier::<B, ()>(device, &mut write).map(|_| ())
}

/// Whether this thread writes a run's outputs: rank 0, or any thread outside a run.
pub fn is_writer() -> bool {
    current().is_none_or(|p| p.is_writer())
}

/// Rank 0 (or a thread outside a run) runs `f` and returns `Some`; then every rank passes a
/// barrier whose value says whether rank 0 succeeded; other ranks return `None`.
fn rank_zero_then_barrier<B: Backend, T>(
    device: &B::Device,
    f: &mut impl FnMut() -> Result<T, TrainError>,
) -> Result<Option<T>, TrainError> {
    let Some(session) = current() else {
        return f().map(Some);
    };
    // The barrier's value tells the other ranks whether rank 0 succeeded.
    let barrier = |ok: bool| -> Result<bool, TrainError> {
        let flag = Tensor::<B, 1>::from_floats([if ok { 1.0 } else { 0.0 }], device);
        let flag: f32 = session
            .rank_zero_value("barrier", flag)?
            .into_scalar()
            .elem();
        Ok(flag > 0.5)
    };
    if session.rank == 0 {
        let out = f();
        barrier(out.is_ok())?;
        out.map(Some)
    } else if barrier(false)? {
        Ok(None)
    } else {
        Err(TrainError::parallel(format!(
            "rank {}: rank 0 failed to prepare the run (see its log)",
            session.rank
        )))
    }
}

/// Runs `init` (a seeded model initialisation: `B::seed` then `init`) and draws every parameter
/// while no other thread of this process does the same, so that ranks initialising at once do not
/// interleave their draws from the backend's process-wide generator: each gets the model a lone
/// process would. (burn draws a parameter lazily, on its first use, hence the explicit draw.)
pub fn seeded_init<B: Backend, M: Module<B>>(init: impl FnOnce() -> M) -> M {
    match try_seeded_init::<B, M, std::convert::Infallible>(|| Ok(init())) {
        Ok(module) => module,
        Err(never) => match never {},
    }
}

/// [`seeded_init`] for an initialisation that can fail.
///
/// # Errors
/// Whatever `init` returns.
pub fn try_seeded_init<B: Backend, M: Module<B>, E>(
    init: impl FnOnce() -> Result<M, E>,
) -> Result<M, E> {
    struct Draw;
    impl<B: Backend> ModuleMapper<B> for Draw {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    static RNG: Mutex<()> = Mutex::new(());
    let _lock = RNG.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(init()?.map(&mut Draw))
}

/// This rank's rows of a global batch of `global` rows: all of them outside a data-parallel run,
/// else its [`DataParallel::shard`]. A stage loss takes its rows of the batch ([`Rows::take`]),
/// draws per-sample values for [`Rows::indices`] and noise through [`Rows::gaussian`], so each
/// rank computes exactly the rows of what one process computes for the whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    start: usize,
    len: usize,
    global: usize,
}

impl Rows {
    /// The rows of this thread's rank.
    ///
    /// # Errors
    /// [`TrainError::Parallel`] when `global` does not split evenly over the ranks.
    pub fn of(global: usize) -> Result<Self, TrainError> {
        let range = match current() {
            Some(session) => session.shard(global)?,
            None => 0..global,
        };
        // Within the rank's rows, the micro-batch being accumulated (all rows when none is).
        let (index, count) = MICRO_BATCH.with(Cell::get);
        if range.len() % count != 0 {
            return Err(TrainError::parallel(format!(
                "{} rows per rank do not split into {count} micro-batches",
                range.len()
            )));
        }
        let len = range.len() / count;
        Ok(Self {
            start: range.start + index * len,
            len,
            global,
        })
    }

    /// Number of rows of this rank.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether this rank has no rows (never, for a valid batch).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The global indices of this rank's rows (the `i` of per-sample draws).
    pub fn indices(&self) -> Range<u64> {
        self.start as u64..(self.start + self.len) as u64
    }

    /// This rank's rows (dimension 0) of a global-batch tensor.
    ///
    /// # Errors
    /// [`TrainError::Shape`] when `batch` does not have the global number of rows.
    pub fn take<B: Backend, const D: usize>(
        &self,
        batch: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, TrainError> {
        let dims = batch.dims();
        if dims[0] != self.global {
            let mut expected = dims.to_vec();
            expected[0] = self.global;
            return Err(TrainError::Shape {
                what: "global batch".into(),
                expected,
                found: dims.to_vec(),
            });
        }
        Ok(if self.len == self.global {
            batch
        } else {
            batch.narrow(0, self.start, self.len)
        })
    }

    /// This rank's entries of per-sample values drawn for the whole batch.
    pub fn pick<T: Clone>(&self, values: &[T]) -> Vec<T> {
        values[self.start..self.start + self.len].to_vec()
    }

    /// This rank's rows of standard normal noise of the global shape `dims` drawn from `seed`
    /// ([`gaussian`]).
    pub fn gaussian<B: Backend, const D: usize>(
        &self,
        dims: [usize; D],
        seed: u64,
        device: &B::Device,
    ) -> Tensor<B, D> {
        let noise = gaussian::<B, D>(dims, seed, device);
        if self.len == dims[0] {
            noise
        } else {
            noise.narrow(0, self.start, self.len)
        }
    }
}

thread_local! {
    /// `(index, count)` of the micro-batch a step is computing (`(0, 1)`: the whole batch).
    static MICRO_BATCH: Cell<(usize, usize)> = const { Cell::new((0, 1)) };
    /// Micro-batches per step of this thread's training loops.
    static MICRO_BATCHES: Cell<usize> = const { Cell::new(1) };
}

/// Sets how many micro-batches the training loops of this thread split each step's rows into,
/// accumulating their gradients (memory of one micro-batch, the same global batch and losses).
///
/// # Errors
/// [`TrainError::Parallel`] for 0.
pub fn set_micro_batches(count: usize) -> Result<(), TrainError> {
    if count == 0 {
        return Err(TrainError::parallel("micro-batches must be at least 1"));
    }
    MICRO_BATCHES.with(|m| m.set(count));
    Ok(())
}

/// Micro-batches per step of this thread's training loops (1 unless [`set_micro_batches`]).
pub fn micro_batches() -> usize {
    MICRO_BATCHES.with(Cell::get)
}

/// Runs `f` as micro-batch `index` of `count`: [`Rows::of`] then gives that part of the rank's
/// rows.
pub fn in_micro_batch<T>(index: usize, count: usize, f: impl FnOnce() -> T) -> T {
    struct Restore((usize, usize));
    impl Drop for Restore {
        fn drop(&mut self) {
            MICRO_BATCH.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(MICRO_BATCH.with(|m| m.replace((index, count))));
    f()
}

/// The rows of `batch` (dimension 0) that this thread trains on ([`Rows::take`] of its
/// [`Rows::of`]).
///
/// # Errors
/// [`TrainError::Parallel`] when the batch does not split evenly over the ranks.
pub fn shard_batch<B: Backend, const D: usize>(
    batch: Tensor<B, D>,
) -> Result<Tensor<B, D>, TrainError> {
    Rows::of(batch.dims()[0])?.take(batch)
}

/// Gives every float parameter of `module` an id derived from its dotted path, so the same
/// architecture has the same ids in every process (burn draws them at random).
pub fn path_param_ids<B: Backend, M: Module<B>>(module: M) -> M {
    struct PathIds {
        stack: Vec<String>,
    }
    impl<B: Backend> ModuleMapper<B> for PathIds {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (_, tensor, mapper) = param.consume();
            let id = ParamId::from(fnv1a(&self.stack.join(".")));
            Param::from_mapped_value(id, tensor, mapper)
        }
    }
    module.map(&mut PathIds { stack: Vec::new() })
}
