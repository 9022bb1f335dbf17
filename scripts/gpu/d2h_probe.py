"""PyTorch alone: what turning a decoded 480x832x81 clip (bf16, [-1, 1]) into host bytes costs,
step by step, as `Video::from_tensor` does it (quantise on the device, u8, copy to the host),
beside the older paths. On a GPU machine: `python3 scripts/gpu/d2h_probe.py` (prints ms, min of 3)."""
import time, torch
x = torch.rand(1, 3, 81, 480, 832, device="cuda", dtype=torch.bfloat16) * 2 - 1
def t(name, f, n=3):
    f(); torch.cuda.synchronize(); ts = []
    for _ in range(n):
        s = time.perf_counter(); f(); torch.cuda.synchronize(); ts.append(time.perf_counter() - s)
    print(f"{name}: {min(ts)*1e3:.1f} ms")
q = lambda: ((x.float().clamp(-1, 1) + 1) * 127.5).round().reshape(3, 81, 480, 832).permute(1, 2, 3, 0)
t("quantise on device (f32, permuted view)", q)
t("... to u8 contiguous, to host", lambda: q().to(torch.uint8).contiguous().cpu())
t("... to i64, to host (burn-tch int_into_data)", lambda: q().to(torch.int64).contiguous().cpu())
t("f32 whole tensor to host (old path)", lambda: x.float().cpu())
t("i64 to host then numpy-free u8 narrowing on host", lambda: q().to(torch.int64).cpu().to(torch.uint8))
def pinned():
    u = q().to(torch.uint8).contiguous()
    h = torch.empty(u.shape, dtype=torch.uint8, pin_memory=True)
    h.copy_(u)
    return h
t("... to u8 contiguous, to a pinned host buffer (TMD_READBACK default)", pinned)
t("... to u8 contiguous, on device only (no copy)", lambda: q().to(torch.uint8).contiguous())
