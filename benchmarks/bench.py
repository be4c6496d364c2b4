#!/usr/bin/env python
"""Speed benchmark: training throughput, peak memory and inference latency, `plain` vs `fast`
profiles side by side (and pytorch/examples' fast_neural_style with --examples), with the loss
after the same steps, achieved GFLOPS and the fraction of a peak measured in the same run.
Inference also runs the same network exported to ONNX with ONNX Runtime (fp32 and int8 by
default; --ort picks variants such as optimisation levels and thread settings).

    python benchmarks/bench.py                                   # full run (CPU: ~10 min), bundled photos
    python benchmarks/bench.py --photos ~/photos --vgg-weights vgg16.safetensors   # your photos, a local VGG copy
    python benchmarks/bench.py --examples DIR                    # + pytorch/examples side by side
    python benchmarks/bench.py --quick                           # smoke test, tiny sizes (<1 min)

--examples DIR is a folder holding pytorch/examples' fast_neural_style/neural_style/*.py
(transformer_net.py, vgg.py, utils.py, neural_style.py), e.g.
    git clone https://github.com/pytorch/examples && python benchmarks/bench.py --examples examples/fast_neural_style/neural_style
Its code runs unmodified; only torchvision's VGG16 weights are swapped for --vgg-weights (no hub).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch
from omegaconf import OmegaConf

from fast_nst.io.files import atomic_write


# Profiles: overrides of conf/ (perf group, data, trainer precision) and inference settings.
# `plain` is what a straightforward implementation does; `fast` is the project default.
PROFILES = {
    # Both decode with the configured data.decoder so their losses see the same pixels.
    "plain": dict(perf="plain", num_workers=0, precision="32", infer=dict(channels_last=False, inference_mode=False, half=False)),
    "fast": dict(perf="fast", num_workers=None, precision="auto", infer=dict(channels_last=True, inference_mode=True, half=True)),
    # Ablations (pass with --profiles): one option changed from `fast`.
    "fast-concat": dict(perf="fast", perf_over={"vgg_pass": "concat"}, num_workers=None, precision="auto",
                        infer=dict(channels_last=True, inference_mode=True, half=True)),
    "fast-contiguous": dict(perf="fast", perf_over={"channels_last": False}, num_workers=None, precision="auto",
                            infer=dict(channels_last=False, inference_mode=True, half=True)),
    "fast-workers0": dict(perf="fast", num_workers=0, precision="auto", infer=dict(channels_last=True, inference_mode=True, half=True)),
    "fast-bf16": dict(perf="fast", num_workers=None, precision="bf16-mixed", infer=dict(channels_last=True, inference_mode=True, half=True)),
    "fast-compile": dict(perf="fast", perf_over={"compile": True}, num_workers=None, precision="auto",
                         infer=dict(channels_last=True, inference_mode=True, half=True, compile=True)),
    "plain-pil": dict(perf="plain", num_workers=0, data_over={"decoder": "pil"}, precision="32",
                      infer=dict(channels_last=False, inference_mode=False, half=False)),
    "plain-cut": dict(perf="plain", perf_over={"vgg_pass": "separate"}, num_workers=0, precision="32",
                      infer=dict(channels_last=False, inference_mode=False, half=False)),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------- memory
def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM, so each measurement gets its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


class PeakMemory:
    """Peak RSS of this process (CPU) or torch.cuda.max_memory_allocated (CUDA), in MB."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.reset = _reset_peak_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mb = torch.cuda.max_memory_allocated() / 2**20
            self.kind = "cuda max_memory_allocated"
        else:
            self.mb = _peak_rss_mb()
            self.kind = "peak RSS (main process)" + ("" if self.reset else ", since process start")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


# ---------------------------------------------------------------------------------- peak numbers
def measure_peak(device: torch.device, quick: bool) -> dict:
    """GFLOPS this machine reaches on a big fp32 matmul and a 3x3 conv (both layouts)."""
    def best(fn, flops, reps=3):
        fn(); sync(device)
        ts = []
        for _ in range(reps):
            t = time.perf_counter(); fn(); sync(device); ts.append(time.perf_counter() - t)
        return flops / min(ts) / 1e9

    n = 512 if quick else 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    res = {"matmul_n": n, "matmul_gflops": best(lambda: a @ b, 2 * n**3)}
    c, hw, bs = (32, 32, 2) if quick else (128, 128, 4)
    conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device).eval()
    x = torch.randn(bs, c, hw, hw, device=device)
    flops = 2 * bs * c * c * 9 * hw * hw
    with torch.inference_mode():
        res["conv3x3_shape"] = [bs, c, hw, hw]
        res["conv3x3_gflops_contiguous"] = best(lambda: conv(x), flops)
        conv_cl = conv.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        res["conv3x3_gflops_channels_last"] = best(lambda: conv_cl(x_cl), flops)
    res["peak_gflops"] = max(res["matmul_gflops"], res["conv3x3_gflops_contiguous"], res["conv3x3_gflops_channels_last"])
    return res


# ------------------------------------------------------------------------------------ training
def compose_cfg(profile: dict, args, device: torch.device, size: int):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    over = [f"perf={profile['perf']}", "data=folder", f"data.root={args.photos}", f"data.image_size={size}",
            f"data.batch_size={args.batch}", "data.val_size=0", f"style.image={args.style}",
            f"loss_net.weights={args.vgg_weights}", f"model={args.model}", "logger=none"]
    if profile.get("num_workers") is not None:
        over.append(f"data.num_workers={profile['num_workers']}")
    for k, v in (profile.get("perf_over") or {}).items():
        over.append(f"perf.{k}={v}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=over)
    for k, v in (profile.get("data_over") or {}).items():
        if k in cfg.data:  # e.g. data.decoder, where this checkout's data module has it
            cfg.data[k] = v
    return cfg


def bench_train(name: str, profile: dict, args, device: torch.device, size: int) -> dict:
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from fast_nst.training.module import StyleTransferModule

    cfg = compose_cfg(profile, args, device, size)
    precision = profile["precision"]
    if precision == "auto":  # bf16 autocast where the hardware has it (CUDA); fp32 on this CPU
        precision = "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "32"
    n_steps = args.warmup + args.steps
    pl.seed_everything(args.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data, seed=args.seed)
    module = StyleTransferModule.from_config(cfg)

    class Timer(pl.Callback):
        def __init__(self):
            self.t, self.c, self.losses = [], [], []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0 and not self.t:
                sync(device); self.t.append(time.perf_counter()); self.c.append(time.process_time())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            sync(device)
            self.t.append(time.perf_counter())
            self.c.append(time.process_time())
            self.losses.append(float(outputs["loss"]))

    timer = Timer()
    trainer = pl.Trainer(accelerator=device.type, devices=1, precision=precision, max_steps=n_steps,
                         max_epochs=-1, logger=False, callbacks=[timer], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, benchmark=True, deterministic=False,
                         default_root_dir=tempfile.mkdtemp(prefix="fast_nst_bench_"))
    with PeakMemory(device) as mem:
        trainer.fit(module, datamodule=dm)
    t = timer.t
    steady = t[args.warmup:]  # boundaries of the timed steps (data fetch + step + optimizer)
    step_s = (steady[-1] - steady[0]) / max(1, len(steady) - 1)
    # CPU seconds of this process per step: less sensitive than wall time to other jobs on the
    # machine (it excludes loader worker processes).
    cpu_s = (timer.c[-1] - timer.c[args.warmup]) / max(1, len(steady) - 1)
    # FLOPs of one training step (forward, backward, both VGG passes), counted on one batch.
    batch = torch.stack([dm.train_set[(i, i)] for i in range(args.batch)]).to(device)
    module.to(device)

    def one_step():
        out = module.training_step(batch, 0)
        out.backward()
    module.log_dict = lambda *a, **k: None
    flops = count_flops(one_step)
    module.net.zero_grad(set_to_none=True)
    return {
        "profile": name, "image_size": size, "batch_size": args.batch, "precision": precision,
        "perf": OmegaConf.to_container(cfg.perf), "num_workers": int(cfg.data.num_workers),
        "steps_timed": len(steady) - 1, "warmup": args.warmup,
        "step_s": step_s, "images_per_s": args.batch / step_s, "main_process_cpu_s_per_step": cpu_s,
        "step_times_s": [b - a for a, b in zip(t, t[1:])],
        "loss_final": timer.losses[-1], "loss_mean_last3": statistics.fmean(timer.losses[-3:]),
        "losses": timer.losses, "gflop_per_step": flops / 1e9, "achieved_gflops": flops / 1e9 / step_s,
        "peak_mem_mb": mem.mb, "peak_mem_kind": mem.kind,
    }


def bench_train_examples(args, device: torch.device, size: int) -> dict:
    """pytorch/examples' neural_style.train(), unmodified, with two hooks: torchvision's vgg16
    gets --vgg-weights (its hub is unreachable), and its DataLoader is wrapped to stop after
    warm-up + steps batches and to time each one (data loading included, as in its loop)."""
    import importlib

    import torchvision

    sys.path.insert(0, str(Path(args.examples).resolve()))
    try:
        ns = importlib.import_module("neural_style")
        ex_utils = importlib.import_module("utils")
    finally:
        sys.path.pop(0)
    from fast_nst.weights.vgg import load_vgg_state_dict

    orig_vgg16 = torchvision.models.vgg16

    def vgg16_given(*a, weights=None, **kw):
        m = orig_vgg16(weights=None)
        sd, _ = load_vgg_state_dict("vgg16", args.vgg_weights)  # any loss_net.weights source
        missing, unexpected = m.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.startswith("classifier") for k in missing), (missing, unexpected)
        return m

    n_steps = args.warmup + args.steps
    times: list[float] = []
    orig_loader = ns.DataLoader

    class TimedLoader:
        def __init__(self, *a, **kw):
            self.inner = orig_loader(*a, **kw)

        def __iter__(self):
            it = iter(self.inner)
            for i in range(n_steps):
                sync(device)
                times.append(time.perf_counter())
                yield next(it)
            sync(device)
            times.append(time.perf_counter())

        def __len__(self):
            return n_steps

    # Its ImageFolder wants class sub-folders: one symlink to the same photo folder we train on.
    tmp = Path(tempfile.mkdtemp(prefix="fast_nst_bench_ex_"))
    (tmp / "data").mkdir()
    (tmp / "data" / "photos").symlink_to(Path(args.photos).resolve(), target_is_directory=True)
    ex_args = Namespace(dataset=str(tmp / "data"), image_size=size, batch_size=args.batch, epochs=1, lr=1e-3,
                        seed=args.seed, style_image=args.style, style_size=None, content_weight=1e5,
                        style_weight=1e10, log_interval=10**9, checkpoint_model_dir=None,
                        save_model_dir=str(tmp / "models"), accel=device.type == "cuda")
    os.makedirs(ex_args.save_model_dir, exist_ok=True)
    torchvision.models.vgg16 = vgg16_given
    ns.DataLoader = TimedLoader
    try:
        with PeakMemory(device) as mem:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                ns.train(ex_args)
        # FLOPs of its step: transformer fwd+bwd and two full VGG passes (recomputed the same way).
        net = ns.TransformerNet().to(device)
        vgg = ns.Vgg16(requires_grad=False).to(device)
        x = torch.rand(args.batch, 3, size, size, device=device) * 255

        def one_step():
            y = ex_utils.normalize_batch(net(x))
            fy, fx = vgg(y), vgg(ex_utils.normalize_batch(x.clone()))
            loss = torch.nn.functional.mse_loss(fy.relu2_2, fx.relu2_2)
            for f in fy:
                loss = loss + ex_utils.gram_matrix(f).sum()
            loss.backward()
        flops = count_flops(one_step)
    finally:
        torchvision.models.vgg16 = orig_vgg16
        ns.DataLoader = orig_loader
    steady = times[args.warmup:]
    step_s = (steady[-1] - steady[0]) / max(1, len(steady) - 1)
    return {"profile": "pytorch/examples", "image_size": size, "batch_size": args.batch, "precision": "32",
            "num_workers": 0, "steps_timed": len(steady) - 1, "warmup": args.warmup, "step_s": step_s,
            "images_per_s": args.batch / step_s, "step_times_s": [b - a for a, b in zip(times, times[1:])],
            "loss_final": None, "loss_note": "its own loss scale (content 1e5, style 1e10), not comparable",
            "gflop_per_step": flops / 1e9, "achieved_gflops": flops / 1e9 / step_s,
            "peak_mem_mb": mem.mb, "peak_mem_kind": mem.kind}


# ----------------------------------------------------------------------------------- inference
def _median_latency(fn, device, reps: int, budget_s: float) -> tuple[float, int, float]:
    """(median wall s, repetitions, median process CPU s) after one warm-up call."""
    fn(); sync(device)  # warm-up (oneDNN primitive creation, cuDNN autotune)
    ts: list[float] = []
    cs: list[float] = []
    start = time.perf_counter()
    while len(ts) < reps and (len(ts) < 2 or time.perf_counter() - start < budget_s):
        t, c = time.perf_counter(), time.process_time()
        fn(); sync(device)
        ts.append(time.perf_counter() - t); cs.append(time.process_time() - c)
    return statistics.median(ts), len(ts), statistics.median(cs)


def bench_network(args, size: int):
    """The network `--model` (a conf/model option, any kind) for the bench painting, untrained."""
    from fast_nst.kinds import split_model_config
    from fast_nst.io.paintings import training_paintings

    cfg = compose_cfg(PROFILES["fast"], args, torch.device("cpu"), size)
    kind, net_cfg = split_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    torch.manual_seed(args.seed)
    return kind.for_training(net_cfg, training_paintings(None, cfg.style))


def bench_infer(name: str, profile: dict, args, device: torch.device, sizes: list[int]) -> list[dict]:
    from fast_nst.stylize.stylizer import Stylizer

    inf = profile["infer"]
    net = bench_network(args, sizes[0])
    style = net.style_names[0]  # the bench painting (multi-style kinds need a choice)
    rows = []
    if name == "plain":  # what a straightforward script does: fp32, contiguous, no_grad
        net = net.to(device).eval()
        cond = net.condition(style=style)

        def run(x):
            with torch.no_grad():
                return net(x.to(device), cond).clamp(0, 1).cpu()
    else:
        st = Stylizer(net, device=str(device), half=inf["half"], channels_last=inf["channels_last"])
        if inf.get("compile"):
            st.net = torch.compile(st.net)

        def run(x):  # inference_mode, channels_last, half on CUDA
            return st.stylize_tensor(x, style=style)
    flops_256 = count_flops(lambda: run(torch.rand(1, 3, 256, 256)))
    for s in sizes:
        x = torch.rand(1, 3, s, s)
        with PeakMemory(device) as mem:
            med, n, cpu = _median_latency(lambda: run(x), device, args.reps, args.budget)
        gflop = flops_256 * (s / 256) ** 2 / 1e9
        rows.append({"profile": name, "size": s, "median_s": med, "reps": n, "cpu_s": cpu, "gflop": gflop,
                     "achieved_gflops": gflop / med, "peak_mem_mb": mem.mb,
                     "half": bool(inf["half"] and device.type == "cuda"),
                     "channels_last": inf["channels_last"]})
        log(f"  infer {name:>16} {s:5d} px: {med * 1000:9.1f} ms  ({n} reps)")
    return rows


def bench_infer_examples(args, device: torch.device, sizes: list[int]) -> list[dict]:
    """Its stylize(): TransformerNet on 0..255 input under torch.no_grad, fp32, contiguous."""
    sys.path.insert(0, str(Path(args.examples).resolve()))
    try:
        import transformer_net
    finally:
        sys.path.pop(0)
    torch.manual_seed(args.seed)
    net = transformer_net.TransformerNet().to(device).eval()

    def run(x):
        with torch.no_grad():
            return net(x.to(device)).cpu()
    flops_256 = count_flops(lambda: run(torch.rand(1, 3, 256, 256) * 255))
    rows = []
    for s in sizes:
        x = torch.rand(1, 3, s, s) * 255
        with PeakMemory(device) as mem:
            med, n, cpu = _median_latency(lambda: run(x), device, args.reps, args.budget)
        gflop = flops_256 * (s / 256) ** 2 / 1e9
        rows.append({"profile": "pytorch/examples", "size": s, "median_s": med, "reps": n, "cpu_s": cpu, "gflop": gflop,
                     "achieved_gflops": gflop / med, "peak_mem_mb": mem.mb})
        log(f"  infer {'pytorch/examples':>16} {s:5d} px: {med * 1000:9.1f} ms  ({n} reps)")
    return rows


ORT_LEVELS = ("disable", "basic", "extended", "layout", "all")


def parse_ort_variant(spec: str) -> dict:
    """'fp32', 'int8', 'fp32-all', 'int8-extended-nospin', 'fp32-t1': precision, then optional
    ONNX Runtime optimisation level, 'nospin' (idle threads sleep) and 't<N>' (intra-op threads)."""
    parts = spec.split("-")
    if parts[0] not in ("fp32", "int8"):
        raise ValueError(f"ONNX Runtime variant {spec!r} must start with fp32 or int8")
    v = {"name": spec, "precision": parts[0], "level": "extended", "spinning": True, "threads": None}
    for p in parts[1:]:
        if p in ORT_LEVELS:
            v["level"] = p
        elif p == "nospin":
            v["spinning"] = False
        elif p.startswith("t") and p[1:].isdigit():
            v["threads"] = int(p[1:])
        else:
            raise ValueError(f"ONNX Runtime variant {spec!r}: unknown part {p!r} (levels {ORT_LEVELS}, nospin, t<N>)")
    return v


def bench_infer_onnx(args, sizes: list[int], variants: list[dict]) -> list[dict]:
    """The same network as the PyTorch rows (same seed and width), exported with
    fast_nst.stylize.onnx (and int8-quantized, calibrated on 4 of --photos) and run with ONNX
    Runtime's CPU provider, one session at a time (a 1024 px int8 session holds ~4 GB)."""
    import gc

    from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
    from fast_nst.models.transformer import TransformerNet
    from fast_nst.stylize.onnx import OnnxStylizer, export_onnx, quantize_int8

    torch.manual_seed(args.seed)
    net = TransformerNet(**({"width": 0.5} if args.model == "johnson_half" else {})).eval()
    flops_256 = count_flops(lambda: net(torch.rand(1, 3, 256, 256)))
    tmp = Path(tempfile.mkdtemp(prefix="fast_nst_bench_onnx_"))
    fp32 = export_onnx(net, tmp / "net.onnx")
    int8 = None
    rows = []
    for v in variants:
        if v["precision"] == "int8" and int8 is None:
            calib = [pil_to_tensor(load_rgb(p, 64 if args.quick else 256)).unsqueeze(0)
                     for p in list_images(args.photos)[:4]]
            int8 = quantize_int8(fp32, tmp / "net_int8.onnx", calib)
        name = "onnxruntime" + ("" if v["name"] == "fp32" else f"-{v['name']}")
        run = OnnxStylizer(int8 if v["precision"] == "int8" else fp32, optimization=v["level"],
                           threads=v["threads"] or args.threads or torch.get_num_threads(), spinning=v["spinning"])
        for s in sizes:
            x = torch.rand(1, 3, s, s)
            with PeakMemory(torch.device("cpu")) as mem:
                med, n, cpu = _median_latency(lambda: run(x), torch.device("cpu"), args.reps, args.budget)
            gflop = flops_256 * (s / 256) ** 2 / 1e9
            rows.append({"profile": name, "size": s, "median_s": med, "reps": n, "cpu_s": cpu, "gflop": gflop,
                         "achieved_gflops": gflop / med, "peak_mem_mb": mem.mb, "onnxruntime": v,
                         "note": "int8: GFLOPS counts the fp32 network's FLOPs" if v["precision"] == "int8" else ""})
            log(f"  infer {name:>16} {s:5d} px: {med * 1000:9.1f} ms  ({n} reps)")
        del run
        gc.collect()
    return rows


# -------------------------------------------------------------------------------------- report
def _fmt(v, spec):
    return "not run" if v is None else format(v, spec)


def _ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def print_tables(res: dict) -> None:
    for dev, r in res["devices"].items():
        peak = r["peak"]["peak_gflops"]
        print(f"\n== {dev}: {r['device_name']} | measured peak {peak:.0f} GFLOPS "
              f"(matmul {r['peak']['matmul_gflops']:.0f}, conv3x3 contiguous {r['peak']['conv3x3_gflops_contiguous']:.0f}, "
              f"channels_last {r['peak']['conv3x3_gflops_channels_last']:.0f})")
        print(f"\nTraining, batch {res['args']['batch']} (steady state after {res['args']['warmup']} warm-up steps)")
        print(f"{'profile':>18} {'px':>5} {'img/s':>8} {'s/step':>8} {'GFLOPS':>8} {'%peak':>6} {'peak MB':>8} "
              f"{'loss@end':>12} {'vs plain':>9} {'vs examples':>11}")
        for row in r["train"]:
            print(f"{row['profile']:>18} {row['image_size']:5d} {_fmt(row['images_per_s'], '8.2f')} "
                  f"{_fmt(row['step_s'], '8.2f')} {_fmt(row['achieved_gflops'], '8.1f')} "
                  f"{_fmt(row['achieved_gflops'] / peak * 100 if row['achieved_gflops'] else None, '6.0f')} "
                  f"{_fmt(row['peak_mem_mb'], '8.0f')} {_fmt(row.get('loss_final'), '12.5g') if row.get('loss_final') is not None else '-':>12} "
                  f"{_ratio(row.get('speedup_vs_plain')):>9} {_ratio(row.get('speedup_vs_examples')):>11}")
        print("\nInference, 1 image (median latency after warm-up)")
        print(f"{'profile':>22} {'px':>5} {'ms':>10} {'GFLOPS':>8} {'%peak':>6} {'peak MB':>8} {'vs plain':>9} "
              f"{'vs fast':>8} {'vs examples':>11}")
        for row in r["infer"]:
            print(f"{row['profile']:>22} {row['size']:5d} {_fmt(row['median_s'] and row['median_s'] * 1000, '10.1f')} "
                  f"{_fmt(row['achieved_gflops'], '8.1f')} "
                  f"{_fmt(row['achieved_gflops'] / peak * 100 if row['achieved_gflops'] else None, '6.0f')} "
                  f"{_fmt(row['peak_mem_mb'], '8.0f')} {_ratio(row.get('speedup_vs_plain')):>9} "
                  f"{_ratio(row.get('speedup_vs_fast')):>8} {_ratio(row.get('speedup_vs_examples')):>11}")


def add_ratios(train: list[dict], infer: list[dict]) -> None:
    def ref(rows, profile, key, val):
        return next((r for r in rows if r["profile"] == profile and r[key] == val and r.get("step_s", r.get("median_s"))), None)

    for r in train:
        for tag, prof in (("plain", "plain"), ("examples", "pytorch/examples")):
            b = ref(train, prof, "image_size", r["image_size"])
            r[f"speedup_vs_{tag}"] = b["step_s"] / r["step_s"] if b and r.get("step_s") else None
    for r in infer:
        for tag, prof in (("plain", "plain"), ("fast", "fast"), ("examples", "pytorch/examples")):
            b = ref(infer, prof, "size", r["size"])
            r[f"speedup_vs_{tag}"] = b["median_s"] / r["median_s"] if b and r.get("median_s") else None


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/bench.json", help="JSON results (default: %(default)s)")
    p.add_argument("--profiles", default="plain,fast", help=f"comma list from {', '.join(PROFILES)} (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (CPU, and CUDA when present) | cpu | cuda")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per profile (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps (default: %(default)s)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--train-sizes", default="256", help="training crop sizes, e.g. 256,512 (default: %(default)s)")
    p.add_argument("--train-512", action="store_true", help="also train at 512 px (same as --train-sizes 256,512)")
    p.add_argument("--sizes", default="256,512,1024,2048", help="inference sizes (default: %(default)s)")
    p.add_argument("--reps", type=int, default=5, help="inference repetitions; the median is reported (default: %(default)s)")
    p.add_argument("--budget", type=float, default=15.0,
                   help="stop repeating an inference size after this many seconds (>= 2 reps) (default: %(default)s)")
    p.add_argument("--model", default="johnson", help="conf/model option (default: %(default)s)")
    p.add_argument("--photos", default=str(ROOT / "assets" / "photos"),
                   help="training photos, a folder (default: the bundled photos)")
    p.add_argument("--style", default=str(ROOT / "assets" / "styles" / "starry_night.jpg"))
    p.add_argument("--vgg-weights", default="oxford",
                   help="loss_net.weights: oxford, torchvision or a .safetensors file (default: %(default)s)")
    p.add_argument("--examples", default=None, metavar="DIR",
                   help="folder with pytorch/examples' fast_neural_style/neural_style/*.py; omitted: 'not run'")
    p.add_argument("--ort", default="fp32,int8", metavar="VARIANTS",
                   help="ONNX Runtime inference rows on CPU (empty: none): fp32|int8, optionally -<level> "
                        f"({'|'.join(ORT_LEVELS)}), -nospin, -t<threads>; e.g. fp32,fp32-all,int8 (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--no-infer", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, 2 steps, 64/128 px inference")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.batch, args.reps, args.budget = 2, 1, 2, 2, 2.0
        args.train_sizes, args.sizes, args.model = "64", "64,128", "johnson_half"
    train_sizes = sorted({int(s) for s in args.train_sizes.split(",")} | ({512} if args.train_512 else set()))
    sizes = [int(s) for s in args.sizes.split(",")]
    profiles = [s for s in args.profiles.split(",") if s]
    bad = [s for s in profiles if s not in PROFILES]
    if bad:
        p.error(f"unknown profiles {bad}; choose from {list(PROFILES)}")
    try:
        ort_variants = [parse_ort_variant(v) for v in args.ort.split(",") if v]
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    warnings.filterwarnings("ignore")
    import logging
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "fast_nst"):
        logging.getLogger(name).setLevel(logging.ERROR)

    res = {"args": vars(args), "host": {"python": platform.python_version(), "torch": torch.__version__,
                                        "cpu": platform.processor() or platform.machine(),
                                        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                        "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                                        "malloc_env": {k: v for k, v in os.environ.items() if "MALLOC" in k or k == "LD_PRELOAD"}},
           "devices": {}}
    t_start = time.perf_counter()
    for dev_name in devices:
        device = torch.device(dev_name)
        r = {"device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"CPU {res['host']['cpu_capability']}, {torch.get_num_threads()} threads"}
        log(f"[{dev_name}] peak microbenchmarks")
        r["peak"] = measure_peak(device, args.quick)
        r["train"], r["infer"] = [], []
        if not args.no_train:
            for size in train_sizes:
                for name in profiles:
                    log(f"[{dev_name}] train {name} {size} px, {args.warmup}+{args.steps} steps")
                    r["train"].append(bench_train(name, PROFILES[name], args, device, size))
                    log(f"  {r['train'][-1]['step_s']:.2f} s/step, loss {r['train'][-1]['loss_final']:.6g}")
                if args.examples:
                    log(f"[{dev_name}] train pytorch/examples {size} px")
                    r["train"].append(bench_train_examples(args, device, size))
                    log(f"  {r['train'][-1]['step_s']:.2f} s/step")
                else:
                    r["train"].append({"profile": "pytorch/examples", "image_size": size, "step_s": None,
                                       "images_per_s": None, "achieved_gflops": None, "peak_mem_mb": None,
                                       "loss_final": None, "note": "not run (pass --examples DIR)"})
        if not args.no_infer:
            for name in profiles:
                r["infer"] += bench_infer(name, PROFILES[name], args, device, sizes)
            if args.examples:
                r["infer"] += bench_infer_examples(args, device, sizes)
            if ort_variants and device.type == "cpu":
                r["infer"] += bench_infer_onnx(args, sizes, ort_variants)
            else:
                r["infer"] += [{"profile": "pytorch/examples", "size": s, "median_s": None, "achieved_gflops": None,
                                "peak_mem_mb": None, "note": "not run (pass --examples DIR)"} for s in sizes]
        add_ratios(r["train"], r["infer"])
        res["devices"][dev_name] = r
    res["wall_s"] = time.perf_counter() - t_start
    print_tables(res)
    out = atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(res, indent=1)))
    print(f"\nwrote {out} ({res['wall_s']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
