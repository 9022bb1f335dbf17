"""Merges the JSON lines of `cargo xtask bench` (rust.jsonl) and `torch_bench.py` (torch.jsonl)
into one results file: per item `rust_ms`, `torch_ms` (where the reference has the item) and
`ratio = rust_ms / torch_ms` (below 1: the Rust side is faster), plus both raw records.

    python3 bench_merge.py rust.jsonl torch.jsonl out.json
"""
import json
import sys


def load(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rec = json.loads(line)
                    out[rec["item"]] = rec
    except FileNotFoundError:
        pass
    return out


def main(rust_path, torch_path, out_path):
    rust, torch = load(rust_path), load(torch_path)
    gpu = next((r.get("gpu") for r in torch.values() if r.get("gpu")), "unknown GPU")
    items = []
    for name in list(dict.fromkeys(list(rust) + list(torch))):
        r, t = rust.get(name, {}), torch.get(name, {})
        row = {"item": name, "rust_ms": r.get("ms"), "torch_ms": t.get("ms")}
        if row["rust_ms"] and row["torch_ms"]:
            row["ratio"] = row["rust_ms"] / row["torch_ms"]
        if name == "gemm" and r.get("shapes") and t.get("shapes"):
            row["shapes"] = [
                {"shape": a["shape"], "rust_tflops": a["tflops"], "torch_tflops": b["tflops"],
                 "ratio": a["ms"] / b["ms"]}
                for a, b in zip(r["shapes"], t["shapes"])
            ]
        row["rust"], row["torch"] = r, t
        items.append(row)
    with open(out_path, "w") as f:
        json.dump({"card": gpu, "items": items}, f, indent=2)
    for row in items:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
        print(f"{row['item']:12} rust {row['rust_ms']} ms  torch {row['torch_ms']} ms  ratio {ratio}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
