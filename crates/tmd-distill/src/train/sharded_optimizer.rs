//! The optimizer state sharded over the ranks of a data-parallel run (ZeRO stage 1, Rajbhandari et
//! al. 2020), selected by [`set_optimizer_sharding`] (`--shard-optimizer`).
//!
//! Unsharded, every rank keeps AdamW's two moments of every trained parameter: 8 bytes per
//! parameter on every device, as much as the f32 weights and gradients together. Sharded:
//!
//! - every parameter has one owner rank ([`Ownership`]: the parameters in module order, each given
//!   to the rank holding the fewest values so far, so each rank owns about 1/N of the values);
//! - after the gradient all-reduce a rank keeps the gradients of its own parameters only
//!   ([`DataParallel::mean_grads_owned`](super::data_parallel::DataParallel::mean_grads_owned)),
//!   so AdamW creates, keeps and updates state for those alone: 8/N bytes per parameter;
//! - the updated parameters then travel from their owners to every rank
//!   ([`DataParallel::broadcast_updated`](super::data_parallel::DataParallel::broadcast_updated)),
//!   in buckets of [`BUCKET_VALUES`](super::data_parallel::BUCKET_VALUES) values.
//!
//! The arithmetic is unsharded AdamW's (burn clips gradient norms per parameter, and weight decay
//! is per parameter too), so the losses and weights equal an unsharded run's.
//!
//! Checkpoints: each rank writes its shard as `optimizer-shard-R.mpk` ([`shard_name`]) into the
//! checkpoint rank 0 is writing, and `state.json` records the number of shards
//! ([`TrainState::optimizer_shards`](super::checkpoint::TrainState::optimizer_shards)). A resume
//! loads every shard (or an unsharded run's `optimizer.mpk`) and keeps what the current ownership
//! gives the rank ([`Ownership::keep_owned_state`]), so a run resumes on any number of ranks,
//! sharded or not.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

thread_local! {
    /// Whether this thread's training loops shard the optimizer state over the ranks.
    static SHARDING: Cell<bool> = const { Cell::new(false) };
}

/// Sets whether the training loops of this thread shard the optimizer state over the ranks of
/// its data-parallel run (no effect outside one).
pub fn set_optimizer_sharding(on: bool) {
    SHARDING.with(|s| s.set(on));
}

/// Whether [`set_optimizer_sharding`] turned sharding on for this thread.
pub fn optimizer_sharding() -> bool {
    SHARDING.with(Cell::get)
}

/// File name (without extension) of rank `rank`'s shard of the optimizer state `name`.
pub fn shard_name(name: &str, rank: u32) -> String {
    format!("{name}-shard-{rank}")
}

/// One trained parameter: its id, shape and owner rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The parameter's id.
    pub id: ParamId,
    /// Its shape.
    pub dims: Vec<usize>,
    /// The rank that keeps its optimizer state and updates it.
    pub owner: u32,
}

/// Which rank owns each parameter of a module (see the module docs). Every rank computes the same
/// ownership: it depends only on the module's parameter order and shapes, and the world size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    world: u32,
    /// Parameters in module order.
    params: Vec<Owned>,
    owner: HashMap<ParamId, u32>,
}

impl Ownership {
    /// The ownership of `module`'s float parameters over `world` ranks: in module order, each
    /// parameter goes to the rank with the fewest values so far (the lowest such rank).
    ///
    /// # Panics
    /// When `world` is 0.
    pub fn of<B: Backend, M: Module<B>>(module: &M, world: u32) -> Self {
        assert!(world > 0, "an ownership needs at least one rank");
        struct Shapes(Vec<(ParamId, Vec<usize>)>);
        impl<B: Backend> ModuleVisitor<B> for Shapes {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0.push((param.id, param.shape().dims::<D>().to_vec()));
            }
        }
        let mut shapes = Shapes(Vec::new());
        module.visit(&mut shapes);
        let mut load = vec![0usize; world as usize];
        let mut params = Vec::with_capacity(shapes.0.len());
        let mut owner = HashMap::with_capacity(shapes.0.len());
        for (id, dims) in shapes.0 {
            let rank = (0..world as usize)
                .min_by_key(|&r| (load[r], r))
                .unwrap_or(0);
            load[rank] += dims.iter().product::<usize>();
            owner.insert(id, rank as u32);
            params.push(Owned {
                id,
                dims,
                owner: rank as u32,
            });
        }
        Self {
            world,
            params,
            owner,
        }
    }

    /// Number of ranks.
    pub fn world(&self) -> u32 {
        self.world
    }

    /// The owner of parameter `id` (`None` for a parameter outside the module).
    pub fn owner(&self, id: ParamId) -> Option<u32> {
        self.owner.get(&id).copied()
    }

    /// The parameters in module order, with their owners.
    pub fn params(&self) -> &[Owned] {
        &self.params
    }

    /// Values (parameter elements) owned by `rank`.
    pub fn values_of(&self, rank: u32) -> usize {
        self.params
            .iter()
            .filter(|p| p.owner == rank)
            .map(|p| p.dims.iter().product::<usize>())
            .sum()
    }

    /// The parameters among `updated` in module order, grouped by owner: `groups[r]` holds rank
    /// r's.
    pub fn updated_by_owner(&self, updated: &HashSet<ParamId>) -> Vec<Vec<&Owned>> {
        let mut groups = vec![Vec::new(); self.world as usize];
        for p in self.params.iter().filter(|p| updated.contains(&p.id)) {
            groups[p.owner as usize].push(p);
        }
        groups
    }

    /// The entries of an optimizer record (burn's optimizers keep a map from parameter id to
    /// state) that `rank` owns; the others are dropped.
    pub fn keep_owned_state<T, R>(&self, rank: u32, record: T) -> T
    where
        T: IntoIterator<Item = (ParamId, R)> + FromIterator<(ParamId, R)>,
    {
        record
            .into_iter()
            .filter(|(id, _)| self.owner(*id) == Some(rank))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::nn::{Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Two<B: Backend> {
        big: Linear<B>,
        small: Linear<B>,
        other: Linear<B>,
    }

    #[test]
    fn ownership_balances_values_and_covers_every_parameter() {
        let device = Default::default();
        let m = Two::<NdArray> {
            big: LinearConfig::new(8, 8).init(&device),   // 64 + 8
            small: LinearConfig::new(2, 2).init(&device), // 4 + 2
            other: LinearConfig::new(4, 8).init(&device), // 32 + 8
        };
        let own = Ownership::of::<NdArray, _>(&m, 2);
        assert_eq!(own.params().len(), 6);
        // big.weight -> 0 (64); big.bias -> 1 (8); small.weight -> 1 (12); small.bias -> 1 (14);
        // other.weight -> 1 (46); other.bias -> 1 (54).
        let owners: Vec<u32> = own.params().iter().map(|p| p.owner).collect();
        assert_eq!(owners, vec![0, 1, 1, 1, 1, 1]);
        assert_eq!(own.values_of(0) + own.values_of(1), 118);
        assert_eq!(own.values_of(0), 64);
        let one = Ownership::of::<NdArray, _>(&m, 1);
        assert!(one.params().iter().all(|p| p.owner == 0));
        let record: HashMap<ParamId, u8> = own.params().iter().map(|p| (p.id, 0)).collect();
        assert_eq!(own.keep_owned_state(0, record.clone()).len(), 1);
        assert_eq!(own.keep_owned_state(1, record).len(), 5);
    }
}
