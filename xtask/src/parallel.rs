//! `--world N`: data-parallel training on N devices of this host, one thread per device (rank r
//! trains on device r). The training itself is `tmd_distill::train::data_parallel`.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use burn::prelude::Backend;
use clap::Args;
use tmd_distill::train::data_parallel::{join, set_micro_batches};
use tmd_distill::train::sharded_optimizer::set_optimizer_sharding;

/// Data-parallel options.
#[derive(Args, Debug, Clone)]
pub struct ParallelArgs {
    /// Number of ranks: devices trained on together, one thread each (rank r on device r: GPU r
    /// with `cuda` / `torch-cuda`; the CPU is shared). The global batch stays the recipe's: each
    /// rank trains on 1/N of it, so the losses do not depend on N and a run can resume with
    /// another N.
    #[arg(long, env = "TMD_WORLD", default_value_t = 1)]
    pub world: u32,
    /// Split each rank's rows of a step into this many micro-batches and accumulate their
    /// gradients: the memory of one micro-batch, the same global batch and losses.
    #[arg(long, default_value_t = 1)]
    pub micro_batches: usize,
    /// Seconds a rank waits on the others before it declares one lost and ends the run (exit 75).
    #[arg(long, default_value_t = 600)]
    pub peer_timeout: u64,
    /// Shard the optimizer state over the ranks (ZeRO stage 1): each rank keeps and updates the
    /// AdamW moments of 1/N of the parameters and sends the updated ones to the others. Same
    /// losses; 8/N instead of 8 bytes of optimizer state per trained parameter on each device.
    /// Checkpoints hold one shard per rank and resume on any --world, sharded or not.
    #[arg(long, env = "TMD_SHARD_OPTIMIZER")]
    pub shard_optimizer: bool,
}

impl ParallelArgs {
    /// Runs `train(device)` on every rank and returns rank 0's result: on `device_of(0)` in this
    /// thread for `--world 1`, else in one thread per rank joined to the run (and leaving it at
    /// the end). The first rank that fails ends the process with its error (the others would wait
    /// on it until the timeout).
    pub fn run<B: Backend, T: Send>(
        &self,
        device_of: impl Fn(usize) -> B::Device,
        train: impl Fn(&B::Device) -> Result<T> + Sync,
    ) -> Result<T> {
        if self.world == 0 {
            bail!("--world 0: a run needs at least one rank");
        }
        if self.world == 1 {
            set_micro_batches(self.micro_batches)?;
            return train(&device_of(0));
        }
        let timeout = Duration::from_secs(self.peer_timeout);
        let (done, results) = mpsc::channel::<(u32, Result<T>)>();
        std::thread::scope(|scope| {
            for rank in 0..self.world {
                let (device, done, train) = (device_of(rank as usize), done.clone(), &train);
                scope.spawn(move || {
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        set_micro_batches(self.micro_batches)?;
                        set_optimizer_sharding(self.shard_optimizer);
                        let session = join::<B>(self.world, rank, &device, timeout)
                            .with_context(|| format!("rank {rank} joining the run"))?;
                        let out = train(&device)?;
                        if let Some(session) = session {
                            session.finish::<B>()?;
                        }
                        Ok(out)
                    }))
                    .unwrap_or_else(|_| Err(anyhow!("rank {rank} panicked (see above)")));
                    let _ = done.send((rank, result));
                });
            }
            drop(done);
            let mut first = None;
            for _ in 0..self.world {
                let (rank, result) = results.recv().context("waiting for the ranks")?;
                match result {
                    Ok(out) if rank == 0 => first = Some(out),
                    Ok(_) => {}
                    Err(e) => {
                        // The other ranks are blocked in a collective with the failed one.
                        eprintln!(
                            "Error: rank {rank} of {} failed: {e:#}\nThe newest checkpoint holds \
                             the run: run the same command again (with any --world) to resume.",
                            self.world
                        );
                        std::process::exit(1);
                    }
                }
            }
            first.context("rank 0 returned nothing")
        })
    }
}
