"""Model speed and memory, measured side by side in one run (issue: model core benchmark).

Prints, for MiT-B0 at 256 and 512 px, batch 2, the median over repeated runs of:
  * forward (inference) time: ours vs HF ``SegformerForSemanticSegmentation`` with the same config
    (SegFormer strides, 4,2,2,2), plus ours at SASFormer strides (4,2,2,1) for information;
  * a full train step (forward + backward + SGD update), pCE only vs pCE + affinity on all 4 stages,
    with our default SASFormer strides, as ``model.train`` runs it (queries/keys captured, labels
    propagated along attention by flash attention);
  * the peak memory of those two train steps (CUDA: max allocated; CPU: peak RSS growth over the
    process's resident size before the first step, each arm in a fresh subprocess).
and the ratios against the targets: forward <= 1.05x HF, affinity step <= 1.15x, its memory <= 1.25x.

    .venv/bin/python bench/model_speed.py            # full run (~4 min on 2 CPU cores)
    .venv/bin/python bench/model_speed.py --quick    # fewer repeats, 256 px only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import LossConfig, build_sasformer, sasformer_loss  # noqa: E402
from model.config import STRIDES_SEGFORMER  # noqa: E402
from model.losses import needs_attention  # noqa: E402


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def hf_model(num_classes: int):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    return SegformerForSemanticSegmentation(SegformerConfig(num_labels=num_classes)).eval()


def sparse_target(b: int, size: int) -> torch.Tensor:
    """Scribble-like target: a few 3-px lines per image, ~2% of pixels labeled."""
    t = torch.full((b, size, size), 255, dtype=torch.long)
    for i in range(b):
        for k in range(4):
            r = (k + 1) * size // 6
            t[i, r:r + 3, size // 8: size - size // 8] = k % 4
    return t


def make_train_step(size: int, affinity: bool, batch: int = 2):
    torch.manual_seed(0)
    model = build_sasformer(variant="b0", num_classes=4).to(device()).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device())
    target = sparse_target(batch, size).to(device())
    cfg = LossConfig(alpha=1.2 if affinity else 0.0, stages=(1, 2, 3, 4))  # the costliest setting
    capture = needs_attention(cfg)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if capture:
            logits, maps = model(x, return_qk=True)
        else:
            logits, maps = model(x), None
        sasformer_loss(logits, maps, target, cfg).loss.backward()
        opt.step()

    return step


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def memory_child(size: int, affinity: bool) -> None:
    """Run in a fresh process: peak memory of train steps (MB) above what existed before them."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    step = make_train_step(size, affinity)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = rss_kb("VmRSS:") * 1024
        for _ in range(3):
            step()
        peak = rss_kb("VmHWM:") * 1024 - base
    print(json.dumps({"peak_mb": peak / 2**20}))


def peak_mb(size: int, affinity: bool) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(size), "1" if affinity else "0"],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256 px only, fewer repeats")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    ap.add_argument("--memory-child", nargs=2, metavar=("SIZE", "AFFINITY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(int(args.memory_child[0]), args.memory_child[1] == "1")
        return
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    sizes = [256] if args.quick else [256, 512]
    repeats = args.repeats or (5 if args.quick else 9)
    dev = device()
    print(f"device={dev} torch={torch.__version__} threads={threads} batch=2 variant=b0 repeats={repeats}")
    rows = []
    for size in sizes:
        x = torch.randn(2, 3, size, size, device=dev)
        ours = build_sasformer(variant="b0", num_classes=4, strides=STRIDES_SEGFORMER).to(dev).eval()
        ours_sas = build_sasformer(variant="b0", num_classes=4).to(dev).eval()
        hf = hf_model(4).to(dev)
        with torch.inference_mode():
            # interleave the arms so drifts in machine load hit both alike
            t_hf, t_ours, t_sas = [], [], []
            for _ in range(3):
                t_hf.append(median_ms(lambda hf=hf, x=x: hf(pixel_values=x), repeats // 3 + 1, warmup=1))
                t_ours.append(median_ms(lambda ours=ours, x=x: ours(x), repeats // 3 + 1, warmup=1))
                t_sas.append(median_ms(lambda m=ours_sas, x=x: m(x), repeats // 3 + 1, warmup=1))
        fwd_hf, fwd_ours, fwd_sas = statistics.median(t_hf), statistics.median(t_ours), statistics.median(t_sas)
        step_ce, step_aff = make_train_step(size, False), make_train_step(size, True)
        s_ce, s_aff = [], []
        for _ in range(3):
            s_ce.append(median_ms(step_ce, max(1, repeats // 3), warmup=1))
            s_aff.append(median_ms(step_aff, max(1, repeats // 3), warmup=1))
        tr_ce, tr_aff = statistics.median(s_ce), statistics.median(s_aff)
        mem_ce, mem_aff = peak_mb(size, False), peak_mb(size, True)
        rows.append((size, fwd_hf, fwd_ours, fwd_sas, tr_ce, tr_aff, mem_ce, mem_aff))

    print()
    print("| size | fwd HF ms | fwd ours ms | ours/HF | fwd ours (4,2,2,1) ms | step pCE ms | step pCE+aff ms "
          "| aff/pCE time | peak pCE MB | peak pCE+aff MB | aff/pCE memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for size, fh, fo, fs, tc, ta, mc, ma in rows:
        r_fwd, r_step, r_mem = fo / fh, ta / tc, ma / mc
        ok &= r_fwd <= 1.05 and r_step <= 1.15 and r_mem <= 1.25
        print(f"| {size} | {fh:.1f} | {fo:.1f} | {r_fwd:.3f} | {fs:.1f} | {tc:.1f} | {ta:.1f} | {r_step:.3f} "
              f"| {mc:.0f} | {ma:.0f} | {r_mem:.3f} |")
    print()
    print("targets: ours/HF <= 1.05, aff/pCE time <= 1.15, aff/pCE memory <= 1.25 ->", "MET" if ok else "NOT MET")


if __name__ == "__main__":
    main()
