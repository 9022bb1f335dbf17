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
