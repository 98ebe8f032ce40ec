"""Profile time per model source, and chipfit's counts beside calflops, fvcore and ptflops.

    .venv/bin/pip install calflops fvcore ptflops   # peers: only for this benchmark, never a chipfit dependency
    .venv/bin/python benchmarks/bench_sources.py

Part 1 profiles comparable models from every source chipfit reads (zoo, Hugging Face config.json,
ONNX export, Keras .keras, Caffe .prototxt), inference at batch 1. Part 2 counts the same zoo PyTorch
modules (real weights, eval mode) with the peer tools and torch's own FlopCounterMode. Every timing
runs in a fresh process with torch already imported: "cold" is the first call there (the source's other
lazy imports, such as transformers, onnx or keras, included), "median" the median of the next 3 calls. A peer tool is timed on an already built module; chipfit's time includes building
the module on fake tensors. A tool that is not installed prints "not installed".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3
LMS = {"bert-base-uncased": 128, "gpt2": 128}  # zoo language models and the sequence length they run at
ZOO_MODELS = {"resnet50": None, **LMS}

CHILD = r"""
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
job = json.loads(sys.argv[1])
runs = int(sys.argv[2])

def timed(fn):
    t = time.perf_counter(); out = fn(); cold = time.perf_counter() - t
    times = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return out, cold, statistics.median(times)

import torch  # imported before any clock starts, in every process

if job["tool"] == "chipfit":
    import chipfit
    prof, cold, median = timed(lambda: chipfit.profile(job["source"], mode="infer", batch=1, seq_len=job["seq"]))
    kinds = prof.by_kind()
    print(json.dumps({"raw": prof.flops("forward"), "params": prof.params, "cold_s": cold, "median_s": median,
                      "gemm": sum(kinds.get(k, {}).get("flops", 0.0) for k in ("conv", "matmul")),
                      "attention": kinds.get("attention", {}).get("flops", 0.0),
                      "uncounted": sum(prof.uncounted.values())}))
    sys.exit()

import importlib.util
package = {"ptflops-pytorch": "ptflops", "ptflops-aten": "ptflops", "torch": "torch"}.get(job["tool"], job["tool"])
if importlib.util.find_spec(package) is None:
    print(json.dumps({"missing": True}))
    sys.exit()
import contextlib, io
from chipfit.workload import zoo

torch.manual_seed(0)
entry = zoo.get(job["model"])
model = entry.build().eval()
inputs, _ = entry.make_batch(1, job["seq"])
params = sum(p.numel() for p in model.parameters())

def count():
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if job["tool"] == "calflops":
            from calflops import calculate_flops
            flops, macs, _ = calculate_flops(model, args=list(inputs), print_results=False, print_detailed=False,
                                             output_as_string=False)
            return flops, macs
        if job["tool"] == "fvcore":
            from fvcore.nn import FlopCountAnalysis
            analysis = FlopCountAnalysis(model, inputs)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return analysis.total(), dict(analysis.unsupported_ops())
        if job["tool"].startswith("ptflops"):
            from ptflops import get_model_complexity_info
            macs, _ = get_model_complexity_info(model, tuple(inputs[0].shape[1:]), as_strings=False,
                                                print_per_layer_stat=False, input_constructor=lambda _: inputs[0],
                                                backend=job["tool"].split("-")[1])
            return macs, None
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with counter:
            model(*inputs)
        return counter.get_total_flops(), None

(raw, extra), cold, median = timed(count)
print(json.dumps({"raw": raw, "extra": extra, "params": params, "cold_s": cold, "median_s": median}))
"""

# What each tool's headline number is, and the factor that turns it into FLOPs (a multiply-add = 2 FLOPs).
PEERS = {
    "calflops": ("FLOP", 1, "its flops figure: 2 per MAC in linear/conv/matmul, 1 per element for functionals"),
    "fvcore": ("MAC", 2, "its 'flops' are multiply-adds (one per fused multiply-add), by its docs; x2 here"),
    "ptflops-pytorch": ("MAC", 2, "module hooks + patched functionals; MACs, x2 here (ReLU/BN/pool numel counted as "
                                  "MACs too, so those are doubled); its F.linear patch is commented out, so a tied "
                                  "LM head (F.linear on the embedding weight) counts 0"),
    "ptflops-aten": ("MAC", 2, "aten backend: mm/addmm/bmm/convolution only, MACs, x2 here"),
    "torch": ("FLOP", 1, "torch.utils.flop_counter.FlopCounterMode: FLOPs (2 per MAC) for its registered aten ops"),
}


def child(job: dict) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job), str(RUNS)], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def export_onnx(name: str, seq: int | None, path: Path) -> None:
    """The zoo module (real weights, eval) through torch's TorchScript exporter, as the cross-source tests do."""
    import torch

    from chipfit.workload import zoo

    entry = zoo.get(name)
    inputs, _ = entry.make_batch(1, seq)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(entry.build().eval(), inputs, str(path), dynamo=False, do_constant_folding=False,
                          input_names=[f"input{i}" for i in range(len(inputs))])


def save_keras_resnet50(path: Path) -> None:
    """keras.applications.ResNet50 (v1, conv biases, no weights) saved in a child process on the torch backend."""
    code = "import keras, sys; keras.applications.ResNet50(weights=None).save(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True,
                   env={**os.environ, "KERAS_BACKEND": "torch"})


def source_jobs(tmp: Path) -> list[tuple[str, str, dict]]:
    """(source, model, job) for every source; files other sources need are written under tmp."""
    hf = ROOT / "tests" / "fixtures" / "hf"
    jobs = [("zoo", name, {"source": name, "seq": seq}) for name, seq in ZOO_MODELS.items()]
    jobs += [("HF config.json", name, {"source": str(hf / name / "config.json"), "seq": seq}) for name, seq in LMS.items()]
    for name, seq in (("resnet50", None), ("bert-base-uncased", 128)):
        path = tmp / f"{name}.onnx"
        export_onnx(name, seq, path)
        jobs.append(("ONNX (torch export)", name, {"source": str(path), "seq": None}))
    try:
        save_keras_resnet50(tmp / "resnet50.keras")
        jobs.append(("Keras .keras", "ResNet50 (v1)", {"source": str(tmp / "resnet50.keras"), "seq": None}))
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"Keras ResNet50 not saved ({exc}); is keras installed?")
    jobs.append(("Caffe prototxt", "resnet50", {"source": str(ROOT / "tests/fixtures/caffe/resnet50.prototxt"),
                                               "seq": None}))
    return [(src, model, {"tool": "chipfit", **job}) for src, model, job in jobs]


def gflop(x: float) -> str:
    return f"{x / 1e9:.3f}"


def pct(x: float, ref: float) -> str:
    return f"{(x - ref) / ref * 100:+.1f}%" if ref else "-"


def main() -> None:
    import torch

    versions = []
    for package in ("calflops", "fvcore", "ptflops"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:
            versions.append(f"{package} not installed")
    print(f"torch {torch.__version__}, {', '.join(versions)}; {os.cpu_count()} CPUs; inference, batch 1, fp32; "
          f"seconds: cold = first call in a fresh process (torch imported before the clock), median of the next {RUNS}")
    print()
    print("1. chipfit profile time per source (forward FLOPs: a multiply-add counts 2)")
    print(f"{'source':<22}{'model':<20}{'seq':>5}{'fwd GFLOP':>11}{'params':>13}{'cold s':>8}{'median s':>10}")
    zoo_counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source, model, job in source_jobs(Path(tmp)):
            r = child(job)
            if "error" in r:
                print(f"{source:<22}{model:<20}  failed: {r['error']}")
                continue
            if source == "zoo":
                zoo_counts[model] = r
            note = f"  ({r['uncounted']} ops uncounted)" if r["uncounted"] else ""
            seq = LMS.get(model)
            print(f"{source:<22}{model:<20}{seq or '-':>5}{gflop(r['raw']):>11}{r['params']:>13,}"
                  f"{r['cold_s']:>8.2f}{r['median_s']:>10.2f}{note}")
    print("Params differ by design: the HF config builds BertForMaskedLM (no pooler; MLM transform, its LayerNorm and")
    print("decoder bias: +32,058); the BERT ONNX export drops the unused pooler (-590,592); Keras' ResNet50 is v1")
    print("(stride on the first 1x1 conv, fewer FLOPs) with a bias on every conv (+26,560 trainable, +53,120 BN")
    print("moving statistics); the Caffe fixture resnet50.prototxt strides in the 3x3 conv, as torchvision does.")

    print()
    print("2. The same zoo modules in peer tools (real weights, eval, torch.no_grad), normalised to FLOPs = 2 x MAC")
    for model, ref in zoo_counts.items():
        print(f"{model} (seq {ZOO_MODELS[model] or '-'}): chipfit {gflop(ref['raw'])} GFLOP in all, of which "
              f"conv+matmul {gflop(ref['gemm'])} (bias adds included), attention (SDPA) {gflop(ref['attention'])}")
    print(f"{'tool':<17}{'model':<19}{'reports':>8}{'raw count':>16}{'GFLOP':>9}{'vs chipfit':>11}"
          f"{'vs conv+mm':>11}{'params':>13}{'cold s':>8}{'median s':>10}")
    for tool, (unit, factor, _) in PEERS.items():
        for model, seq in ZOO_MODELS.items():
            if model not in zoo_counts:
                continue
            r = child({"tool": tool, "model": model, "seq": seq})
            if r.get("missing"):
                print(f"{tool:<17}{model:<19}  not installed")
                continue
            if "error" in r:
                print(f"{tool:<17}{model:<19}  failed: {r['error']}")
                continue
            flops = r["raw"] * factor
            ref = zoo_counts[model]
            print(f"{tool:<17}{model:<19}{unit:>8}{r['raw']:>16,.0f}{gflop(flops):>9}{pct(flops, ref['raw']):>11}"
                  f"{pct(flops, ref['gemm']):>11}{r['params']:>13,}{r['cold_s']:>8.2f}{r['median_s']:>10.2f}")
            if tool == "fvcore" and r.get("extra"):
                skipped = ", ".join(f"{op} x{n}" for op, n in sorted(r["extra"].items()))
                print(f"{'':<17}  fvcore skipped (no handle, counted 0): {skipped}")
    print()
    print("Conventions: chipfit counts FLOPs (multiply-add = 2, plus bias adds, elementwise, norms, softmax and")
    print("SDPA attention as the full Sq x Sk product). 'vs conv+mm' compares with chipfit's conv and matmul FLOPs")
    print("alone (bias adds included), the part the peer tools aim to count.")
    for tool, (unit, factor, what) in PEERS.items():
        print(f"  {tool}: reports {unit}; {what}")
    print("torch's FlopCounterMode registers SDPA only for the flash/efficient/cuDNN kernels, so on CPU")
    print("(aten._scaled_dot_product_flash_attention_for_cpu) attention counts 0; calflops, fvcore and ptflops")
    print("have no SDPA handler either.")


if __name__ == "__main__":
    main()
