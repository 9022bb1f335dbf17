"""Reference fixtures for the teacher samplers in `crates/tmd-sampler` (UniPC and FlowMatch Euler).

Rerun from the workspace root:

    python3 scripts/reference/unipc_fixtures.py

Writes `tests/fixtures/unipc/*.safetensors` (a few tens of KB each), one file per scheduler run:

    unipc_diffusers_shift5_10.safetensors    UniPCMultistepScheduler as configured for Wan2.1 in diffusers,
    unipc_diffusers_shift5_50.safetensors      flow_shift 5, 10 and 50 steps, default sigma grid
    unipc_wan_original_shift5_10.safetensors same solver on the grid of Wan's original FlowUniPCMultistepScheduler
                                             (sigmas = linspace(sigma_max, 0, N+1)[:-1], sigma_max = float32(0.999)),
                                             passed to diffusers through `set_timesteps(sigmas=...)`
    unipc_order3_shift5_10.safetensors       solver_order 3 (exercises the general linear solves)
    euler_diffusers_shift5_10.safetensors    FlowMatchEulerDiscreteScheduler(shift=5), 10 steps

Every file holds:
    sigmas     [N+1] float32  the scheduler's sigma grid (last entry 0)
    timesteps  [N]   int64 (UniPC, truncated s*1000) or float32 (Euler, s*1000)
    x_init     [1,4,3,4,4] float32  initial latent
    v          [N,1,4,3,4,4] float32  "model output" fed at step k (random, independent of x)
    x          [N,1,4,3,4,4] float32  sample returned by scheduler.step at step k
UniPC files also hold `x0_last` [1,4,3,4,4]: the scheduler's x0 prediction at the last step (the final sample
must equal it exactly, since the last step goes to sigma = 0 with order 1).

The solver configuration mirrors `scheduler/scheduler_config.json` of Wan-AI/Wan2.1-T2V-1.3B-Diffusers
(UniPCMultistepScheduler: prediction_type flow_prediction, use_flow_sigmas true, solver_order 2, solver_type bh2,
predict_x0 true, lower_order_final true, final_sigmas_type zero, num_train_timesteps 1000, timestep_spacing
linspace); only flow_shift is set to 5.0 here (the config ships 3.0; Wan's generate.py default for T2V is 5.0).
"""

import os

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "unipc")
SHAPE = (1, 4, 3, 4, 4)


def unipc(shift, order=2):
    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="linear",
        solver_order=order,
        prediction_type="flow_prediction",
        thresholding=False,
        predict_x0=True,
        solver_type="bh2",
        lower_order_final=True,
        disable_corrector=[],
        use_flow_sigmas=True,
        flow_shift=shift,
        timestep_spacing="linspace",
        steps_offset=0,
        final_sigmas_type="zero",
    )


def run(name, scheduler, steps, seed, sigmas=None):
    if sigmas is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(sigmas=sigmas)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
    vs = torch.randn((steps,) + SHAPE, generator=gen, dtype=torch.float32)
    x_init = x.clone()
    xs = []
    for k, t in enumerate(scheduler.timesteps):
        x = scheduler.step(vs[k], t, x, return_dict=False)[0]
        assert x.dtype == torch.float32
        xs.append(x.clone())
    data = {
        "sigmas": scheduler.sigmas.to(torch.float32).contiguous(),
        "timesteps": scheduler.timesteps.contiguous(),
        "x_init": x_init,
        "v": vs,
        "x": torch.stack(xs).contiguous(),
    }
    if isinstance(scheduler, UniPCMultistepScheduler):
        x0_last = scheduler.model_outputs[-1].clone()
        assert torch.equal(x0_last, x), "the last UniPC step must return x0 exactly"
        data["x0_last"] = x0_last
    path = os.path.join(OUT, name + ".safetensors")
    save_file(data, path)
    print(f"{path}: sigmas {scheduler.sigmas.numpy()[:4]}... timesteps {scheduler.timesteps.numpy()[:4]}...")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    run("unipc_diffusers_shift5_10", unipc(5.0), 10, seed=10)
    run("unipc_diffusers_shift5_50", unipc(5.0), 50, seed=50)
    # Wan's FlowUniPCMultistepScheduler(shift=1) keeps sigma_max = float32(0.999), sigma_min = 0 and
    # set_timesteps(N, shift) uses linspace(sigma_max, sigma_min, N+1)[:-1]; diffusers shifts custom sigmas the same way.
    sigma_max = float(np.float32(0.999))
    wan_sigmas = np.linspace(sigma_max, 0.0, 10 + 1)[:-1]
    run("unipc_wan_original_shift5_10", unipc(5.0), 10, seed=11, sigmas=wan_sigmas)
    run("unipc_order3_shift5_10", unipc(5.0, order=3), 10, seed=12)
    run("euler_diffusers_shift5_10", FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0), 10, seed=13)


if __name__ == "__main__":
    main()
