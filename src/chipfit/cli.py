"""Command line: parses, builds a Job, calls the use cases (chipfit.api), prints. No logic of its own."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys

from . import __version__
from .errors import ArgumentError, ChipfitError, closest, unexpected

EXAMPLES = {
    "hardware": "chipfit hardware list --class gpu\n  chipfit hardware show \"H100 SXM5 80GB\"",
    "models": "chipfit models --kind decoder --min-params 7B",
    "profile": "chipfit profile resnet50 --train --batch 32\n  chipfit profile gpt2 --infer --seq 1024 --ops",
    "compare": "chipfit compare resnet50 --train --batch 256 --samples 1.28e6 --epochs 90\n"
               "  chipfit compare llama-3-8b --infer --prompt 512 --generate 128 --class gpu\n"
               "  chipfit compare --spec layers=32,hidden=4096,heads=32,kv_heads=8,ffn=14336,vocab=128256 --tokens 1e9",
    "advise": "chipfit advise resnet50 --samples 1.28e6 --epochs 90 --deadline 2d --budget 2000\n"
              "  chipfit advise bert-base-uncased --buy --electricity 0.15 --years 3",
    "report": "chipfit report resnet50 --samples 1.28e6 --epochs 90 --html report.html --plots plots/",
    "plan": "chipfit plan llama-3-8b --tokens 1e12 --hardware nvidia-h100-sxm5-80gb --max-devices 1024 --deadline 30d",
    "serve": "chipfit serve --port 8000",
    "devices": "chipfit devices --json",
    "bench": "chipfit bench --quick\n  chipfit bench --device cuda:0 --budget 0.2",
    "measure": "chipfit measure resnet18 --infer --batch 8 --reps 5",
    "calibrate": "chipfit calibrate",
    "validate": "chipfit validate --quick --rounds 3\n  chipfit validate --device cuda:0\n"
                "  chipfit validate --published published.csv",
    "results": "chipfit results list --kind measure\n  chipfit results export --csv results.csv",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option's default shown (a rule in words where it depends on the job)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text
        return f"{text} (default: %(default)s)" if shown and action.option_strings else text


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one sentence (ArgumentError, exit 2) with "did you mean"."""

    def error(self, message: str):
        raise ArgumentError(_sentence(self, message))

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            sub = _subparser(self, parsed)
            options = [o for a in sub._actions for o in a.option_strings]
            first = next((e for e in extras if e.startswith("-")), extras[0])
            name = first.split("=", 1)[0]
            hint = closest(name, options) if name.startswith("-") else ""
            raise ArgumentError(f"{sub.prog}: unrecognized arguments: {' '.join(extras)}.{hint} "
                                f"See `{sub.prog} --help`.")
        return parsed


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest subcommand parser `args` went through."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _subparser(action.choices[chosen], args)
    return parser


def _sentence(parser: argparse.ArgumentParser, message: str) -> str:
    choice = re.match(r"argument ([^:]+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        known = [c.strip(" '") for c in choice.group(3).split(",")]
        what = choice.group(1).strip("<>").split("/")[0]
        what = "command" if what in ("command", "action") else what
        hint = closest(choice.group(2), known)
        return (f"{what[0].upper()}{what[1:]} {choice.group(2)!r} is an invalid choice.{hint} "
                f"Use one of: {', '.join(known)}.")
    message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
    return f"{message[0].upper()}{message[1:].rstrip('.')}; see `{parser.prog} --help`."


def _number(text: str) -> float:
    """Accepts 1e9, 1_000_000, 15e12 (range checks are the Job's)."""
    try:
        return float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}; give a number like 1e9") from None


def _whole(text: str) -> int:
    """Accepts 256, 1_024, 4e6 when whole (range checks are the Job's)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")) or value != int(value):
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}; give a whole number like 256")
    return int(value)


def _at_least(low: int):
    def parse(text: str) -> int:
        value = _whole(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low}; give {low} or more")
        return value
    return parse


def _shape(text: str) -> tuple[str, tuple[int, ...]]:
    """'input=1x3x224x224' -> ('input', (1, 3, 224, 224))."""
    name, _, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not name or not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=DIMS like input=1x3x224x224")
    return name, shape


def _job_args(p: argparse.ArgumentParser, job: bool) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="mode", action="store_const", const="train",
                      help="a training step (the default, except for .onnx and .prototxt files)")
    mode.add_argument("--infer", dest="mode", action="store_const", const="infer", help="inference (forward only)")
    p.set_defaults(mode=None)
    p.add_argument("--input", action="append", type=_shape, default=[], metavar="NAME=DIMS",
                   help="ONNX: the shape of a graph input, e.g. input=1x3x224x224 (repeatable)")
    p.add_argument("--batch", type=_whole, help="global batch, samples or sequences per step (default: training 32 "
                   "per device, inference 1 per device; profile and measure 1)")
    p.add_argument("--seq", type=_whole, help="sequence length (default: the model's context; 2048 for --spec)")
    p.add_argument("--precision", help="fp32, tf32, bf16, fp16, fp8, int8 (default: bf16, mixed precision for "
                   "training, on every entry alike; fp32 for .onnx/.prototxt files and for measure)")
    p.add_argument("--optimizer", default="adamw", help="adamw or sgd")
    if job:
        p.add_argument("--samples", type=_number, help="training samples per epoch, or inference requests "
                       "(default: one batch)")
        p.add_argument("--epochs", type=_number, default=1.0, help="passes over --samples")
        p.add_argument("--tokens", type=_number, help="training tokens (sequence models), instead of --samples")
        _lora_args(p)


def _out_args(p: argparse.ArgumentParser) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--csv", action="store_true", help="print CSV rows instead of a table")


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="results database (default: $CHIPFIT_DB or ~/.local/share/chipfit/results.sqlite)")


def _allocator_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="set glibc to keep freed memory for the next step, as jemalloc and tcmalloc do, so steps do not "
                        "time page faults (chipfit.measure.allocator)")


def _sub(sub, name: str, text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=text, description=text, epilog=f"examples:\n  {EXAMPLES[name]}",
                          formatter_class=_Formatter)


def _hardware_parsers(sub) -> None:
    hw = _sub(sub, "hardware", "the hardware catalog")
    hw_sub = hw.add_subparsers(dest="action", required=True, metavar="{list,show}")
    ls = hw_sub.add_parser("list", help="list catalog entries", formatter_class=_Formatter)
    ls.add_argument("--class", dest="hw_class", help="cpu, gpu, tpu, asic, fpga, edge, neuromorphic, quantum")
    ls.add_argument("--framework", help="only entries that run this framework")
    _out_args(ls)
    shw = hw_sub.add_parser("show", help="one entry, every figure with its source", formatter_class=_Formatter)
    shw.add_argument("id", help="catalog id or any name: \"H100 SXM5 80GB\", \"Gaudi2\", \"p5.48xlarge\"")
    _out_args(shw)
    mdl = _sub(sub, "models", "the model library: every named model, its kind and parameter count")
    mdl.add_argument("--family", help="only this family (llama, qwen3, t5, ...)")
    mdl.add_argument("--kind", help="decoder, encoder, encoder-decoder, moe, vision or diffusion")
    mdl.add_argument("--min-params", help="at least this many parameters: 7e9, 70B, 350M")
    mdl.add_argument("--max-params", help="at most this many parameters")
    _out_args(mdl)


def _compare_parser(sub) -> None:
    cmp = _sub(sub, "compare", "rank the catalog for a job")
    cmp.add_argument("model", nargs="?", help="zoo name, model file or package.module:factory (or use --spec)")
    cmp.add_argument("--spec", help="a transformer by its sizes: layers=32,hidden=4096,heads=32,kv_heads=8,"
                                    "ffn=14336,vocab=128256")
    cmp.add_argument("--prompt", type=_whole, help="LLM serving: prompt tokens per request (with --infer)")
    cmp.add_argument("--generate", type=_whole, help="LLM serving: generated tokens per request (with --infer)")
    _job_args(cmp, job=True)
    cmp.add_argument("--devices", type=_whole, default=1, help="devices per entry, data parallel")
    cmp.add_argument("--class", dest="hw_class", help="only this hardware class")
    cmp.add_argument("--hardware", action="append", help="only these entries, by id or name (repeatable)")
    cmp.add_argument("--framework", help="only hardware that runs this framework")
    cmp.add_argument("--pue", type=_number, help="data-centre PUE (default: 1.10)")
    cmp.add_argument("--grid", type=_number, help="grid carbon intensity, kg CO2 per kWh (default: 0.475)")
    cmp.add_argument("--top", type=_at_least(0), default=20, help="rows to show (0: all)")
    cmp.add_argument("--show-excluded", action="store_true", help="list each entry left out, with its reason")
    cmp.add_argument("--no-local", action="store_true", help="do not price this machine's CPU")
    cmp.add_argument("--network", help="the network between nodes for every entry, e.g. ib-hdr-200, efa-p5 "
                     "(default: that of each vendor's reference node)")
    _out_args(cmp)


def _advice_parsers(sub) -> None:
    for name, text in (("advise", "rank hardware and device counts under your constraints; rent versus buy"),
                       ("report", "the advice as one self-contained HTML file, and plots for slides")):
        adv = _sub(sub, name, text)
        adv.add_argument("model", help="zoo name, model file or package.module:factory")
        _job_args(adv, job=True)
        adv.add_argument("--devices-list", default="1,8,64", help="device counts to weigh, comma-separated")
        adv.add_argument("--class", dest="hw_class", help="only this hardware class")
        adv.add_argument("--framework", help="only hardware that runs this framework")
        adv.add_argument("--deadline", help="finish within: 14d, 12h, ...")
        adv.add_argument("--budget", type=_number, help="spend at most this many US dollars")
        adv.add_argument("--energy", type=_number, help="use at most this many kWh")
        adv.add_argument("--co2", type=_number, help="emit at most this many kg CO2")
        adv.add_argument("--where", default="any", choices=("any", "cloud", "local"), help="rented, owned, or either")
        adv.add_argument("--single-device", action="store_true", help="must fit and run on one device")
        adv.add_argument("--objective", default="time", choices=("time", "cost", "energy"), help="rank by")
        adv.add_argument("--buy", action="store_true", help="weigh buying the hardware against renting it")
        adv.add_argument("--years", type=_number, default=3.0, help="with --buy: lifetime of owned hardware")
        adv.add_argument("--electricity", type=_number, help="with --buy: electricity price, USD per kWh")
        adv.add_argument("--utilisation", type=_number, default=1.0, help="with --buy: share of the lifetime in use")
        adv.add_argument("--pue", type=_number, help="data-centre PUE (default: 1.10)")
        adv.add_argument("--grid", type=_number, help="grid carbon intensity, kg CO2 per kWh (default: 0.475)")
        if name == "report":
            adv.add_argument("--html", required=True, metavar="FILE", help="the report file to write")
            adv.add_argument("--plots", metavar="DIR", help="also write each plot here")
            adv.add_argument("--format", default="svg", choices=("svg", "png"), help="plot file format")
            _db_arg(adv)
        else:
            _out_args(adv)


def _plan_parser(sub) -> None:
    pl = _sub(sub, "plan", "best parallel plans for training a transformer on one kind of hardware")
    pl.add_argument("model", nargs="?", help="a decoder LLM from the zoo (or use --spec)")
    pl.add_argument("--spec", help="a transformer by its sizes (see compare --spec)")
    pl.add_argument("--train", action="store_true", help="training (the only mode plans are searched for)")
    pl.add_argument("--hardware", required=True, help="the device: catalog id or any name (\"H100 80GB\")")
    pl.add_argument("--tokens", type=_number, help="training tokens")
    pl.add_argument("--batch", type=_whole, help="global batch in sequences (default: about 4M tokens)")
    pl.add_argument("--seq", type=_whole, help="sequence length (default: the model's context, 2048 for --spec)")
    pl.add_argument("--precision", help="fp32, tf32, bf16, fp16, fp8, int8 (default: bf16)")
    pl.add_argument("--max-devices", type=_whole, help="largest device count to consider")
    pl.add_argument("--devices", type=_whole, help="exactly this many devices")
    pl.add_argument("--deadline", help="finish within this time: 90d, 12h, ...")
    pl.add_argument("--budget", type=_number, help="spend at most this many US dollars")
    pl.add_argument("--objective", default="time", choices=("time", "cost", "energy", "device_hours"), help="rank by")
    pl.add_argument("--network", help="the network between nodes, e.g. ib-hdr-200, efa-p5, opa-4x100 "
                    "(default: that of the vendor's reference node)")
    pl.add_argument("--top", type=_at_least(1), default=5, help="plans to show")
    _lora_args(pl)
    _out_args(pl)


def _lora_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lora", type=_whole, metavar="RANK", help="fine-tune rank-RANK LoRA adapters on a frozen base "
                   "(a transformer from the library or --spec); see docs/finetune.md")
    p.add_argument("--lora-targets", metavar="NAMES", help="matrices that get adapters, comma-separated, or "
                   "all-linear (default: q_proj,k_proj,v_proj,o_proj)")
    p.add_argument("--lora-base", metavar="STORAGE", help="store the frozen base in fp8, int8 or nf4 (QLoRA) "
                   "(default: the compute precision)")


def _local_parsers(sub) -> None:
    srv = _sub(sub, "serve", "the dashboard in a browser (FastAPI; needs chipfit[web])")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    srv.add_argument("--port", type=_whole, default=8000, help="TCP port")
    srv.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                     help="also answer requests addressed to NAME (a host name this machine is reached by); "
                          "by default only the bound address and loopback names")
    _db_arg(srv)
    _out_args(_sub(sub, "devices", "what is here: CPU model, cores, ISA, GPUs, MPS"))
    bench = _sub(sub, "bench", "micro-benchmarks of every local device, stored")
    bench.add_argument("--quick", action="store_true", help="fewer sizes, one round (a few seconds on a CPU)")
    bench.add_argument("--device", help="only this device id (see `chipfit devices`)")
    bench.add_argument("--budget", type=_number, metavar="SECONDS",
                       help="timed seconds per benchmark (default: 0.4; less is quicker and noisier)")
    meas = _sub(sub, "measure", "real steps of a workload here, predicted next to measured, stored")
    meas.add_argument("model", help="zoo name, model file or package.module:factory")
    _job_args(meas, job=False)
    meas.add_argument("--reps", type=_at_least(1), default=5, help="timed repetitions")
    meas.add_argument("--device", default="local-cpu", help="device id (see `chipfit devices`)")
    cal = _sub(sub, "calibrate", "fit this machine's efficiencies from the stored benchmarks and operator times")
    cal.add_argument("--device", default="local-cpu", help="device id (see `chipfit devices`)")
    val = _sub(sub, "validate", "predicted vs measured for the zoo here, or vs published runs")
    val.add_argument("--published", metavar="CSV", nargs="+",
                     help="check predictions against published runs (one or more CSVs, columns of published.csv)")
    val.add_argument("--reps", type=_at_least(1), default=3, help="timed repetitions per case and round")
    val.add_argument("--rounds", type=_at_least(1), default=5, help="interleaved rounds over the cases")
    val.add_argument("--stored", action="store_true",
                     help="predict the newest stored validate run's cases again from what is stored; measure nothing")
    val.add_argument("--device", default="local-cpu",
                     help="device id; a GPU runs GPU-sized cases in bf16 (chipfit.validate)")
    val.add_argument("--quick", action="store_true", help="one train and one infer case of fewer models")
    val.add_argument("--model", action="append", default=[], help="only this model's cases (repeatable)")
    for p in (bench, meas, val):
        _allocator_arg(p)
    for p in (bench, meas, cal, val):
        _db_arg(p)
        _out_args(p)


def _results_parser(sub) -> None:
    res = _sub(sub, "results", "the stored history")
    res_sub = res.add_subparsers(dest="action", required=True, metavar="{list,show,export}")
    rl = res_sub.add_parser("list", help="stored runs", formatter_class=_Formatter)
    rl.add_argument("--kind", help="bench, measure or validate")
    rs = res_sub.add_parser("show", help="one run and its measurements", formatter_class=_Formatter)
    rs.add_argument("run_id", type=_whole, help="a run id (chipfit results list)")
    for p in (rl, rs):
        _db_arg(p)
        _out_args(p)
    rx = res_sub.add_parser("export", help="every measurement as CSV", formatter_class=_Formatter)
    rx.add_argument("--csv", metavar="FILE", default="-", help="file to write (-: standard output)")
    _db_arg(rx)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chipfit", description="Which hardware should your deep-learning job run on?",
                     formatter_class=_Formatter,
                     epilog="examples:\n  chipfit compare resnet50\n  chipfit advise resnet50 --deadline 2d\n"
                            "  chipfit <command> --help")
    parser.add_argument("--version", action="version", version=f"chipfit {__version__}")
    parser.add_argument("--catalog", action="append", default=[], metavar="DIR",
                        help="a directory of your own catalog TOML files (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _hardware_parsers(sub)
    prof = _sub(sub, "profile", "FLOPs, bytes, parameters and memory of one step, per operator and layer")
    prof.add_argument("model", help="a zoo name, model file or package.module:factory")
    _job_args(prof, job=False)
    _lora_args(prof)
    prof.add_argument("--depth", type=_at_least(1), default=2, help="module-path depth of the per-layer table")
    prof.add_argument("--ops", action="store_true", help="every traced operator (a table, or in --json)")
    _out_args(prof)
    _compare_parser(sub)
    _advice_parsers(sub)
    _plan_parser(sub)
    _local_parsers(sub)
    _results_parser(sub)
    return parser


# --- from arguments to a Job ----------------------------------------------------------------------
def _device_counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise ArgumentError(f"--devices-list {text!r} is not comma-separated device counts like 1,8.") from None


def job_from(args: argparse.Namespace):
    """The Job the arguments describe; every check that needs no model runs here, before any import of torch."""
    from .api.job import Constraints, Job, conditions, parse_duration

    a = vars(args)
    buy = a.get("buy", False)
    deadline = a.get("deadline")
    constraints = Constraints(
        deadline_s=parse_duration(deadline) if deadline else None, budget_usd=a.get("budget"),
        energy_kwh=a.get("energy"), co2_kg=a.get("co2"), where=a.get("where", "any"),
        single_device=a.get("single_device", False), objective=a.get("objective", "time"),
        buy_years=a["years"] if buy else None, electricity_usd_per_kwh=a.get("electricity") if buy else None,
        utilisation=a.get("utilisation", 1.0))
    hardware = a.get("hardware") or ()
    return Job(
        model=a.get("model"), spec=a.get("spec"), mode=a.get("mode") or ("train" if a.get("train") else None),
        batch=a.get("batch"), seq=a.get("seq"), prompt=a.get("prompt"), generate=a.get("generate"),
        samples=a.get("samples"), epochs=a.get("epochs", 1.0), tokens=a.get("tokens"), precision=a.get("precision"),
        optimizer=a.get("optimizer", "adamw"), lora=a.get("lora"), lora_targets=a.get("lora_targets"),
        lora_base=a.get("lora_base"), devices=a.get("devices"),
        device_counts=_device_counts(a["devices_list"]) if a.get("devices_list") else (),
        max_devices=a.get("max_devices"), hw_class=a.get("hw_class"),
        hardware=(hardware,) if isinstance(hardware, str) else tuple(hardware), framework=a.get("framework"),
        network=a.get("network"), input_shapes=tuple(a.get("input") or ()), local=not a.get("no_local", False),
        constraints=constraints, conditions=conditions(a.get("pue"), a.get("grid")))


# --- output -----------------------------------------------------------------------------------------
def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested dicts as dotted columns, lists joined with '; ' (one CSV row)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}."))
        elif isinstance(v, (list, tuple)):
            out[key] = "; ".join(map(str, v))
        else:
            out[key] = v
    return out


def _print_csv(rows: list[dict]) -> None:
    rows = [_flat(r) for r in rows]
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(sys.stdout, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)


def _emit(args: argparse.Namespace, data, rows: list[dict], show) -> None:
    """--json prints `data`, --csv prints `rows`, else `show()` draws the tables."""
    if args.json:
        _print_json(data)
    elif getattr(args, "csv", False):
        _print_csv(rows)
    else:
        show()


def _catalog(args: argparse.Namespace):
    from .catalog import load_catalog

    return load_catalog(args.catalog)


def _store(args: argparse.Namespace, create: bool = True):
    """The results store of --db (or the default); without `create`, None where none exists yet."""
    import contextlib

    from .store import Store, default_db_path

    db = getattr(args, "db", None)
    if db or create or default_db_path().exists():
        return Store(db)
    return contextlib.nullcontext(None)


# --- the commands -----------------------------------------------------------------------------------
def cmd_hardware(args: argparse.Namespace) -> None:
    from .catalog import hardware_named
    from .report import terminal

    catalog = _catalog(args)
    if args.action == "list":
        entries = catalog.select(hw_class=args.hw_class, framework=args.framework)
        rows = [catalog.to_dict(hw) for hw in entries]
        _emit(args, rows, rows, lambda: terminal.show(terminal.hardware_table(entries)))
    else:
        d = catalog.to_dict(hardware_named(args.id, catalog))
        _emit(args, d, [d], lambda: terminal.show(terminal.hardware_detail(d)))


def cmd_models(args: argparse.Namespace) -> None:
    from .report import terminal
    from .workload import library

    sizes = (None if v is None else library.parse_count(v) for v in (args.min_params, args.max_params))
    entries = library.list_models(args.family, args.kind, *sizes)
    rows = [e.to_dict() for e in entries]
    _emit(args, rows, [r | {"aliases": " ".join(r["aliases"]), "arch": None} for r in rows],
          lambda: terminal.show(terminal.models_table(entries)))


def cmd_profile(args: argparse.Namespace) -> None:
    from .api.profiling import prepared, profile_job
    from .report import terminal

    job = prepared(job_from(args), "profile")
    with terminal.working(f"profiling {job.name} on fake tensors"):
        p = profile_job(job, job.batch)
    rows = terminal.op_rows(p)
    _emit(args, p.to_dict(ops=args.ops), rows,
          lambda: terminal.show(terminal.profile_tables(p, args.depth, ops=args.ops)))


def cmd_compare(args: argparse.Namespace) -> None:
    from .api import compare
    from .report import terminal

    job = job_from(args)
    catalog = _catalog(args)
    with _store(args, create=False) as store, terminal.working(f"profiling {job.name} and ranking the catalog"):
        result = compare(job, catalog, store)
    _emit(args, result.to_dict(), result.to_rows(), lambda: terminal.show(
        terminal.comparison_table(result, top=args.top or None, show_excluded=args.show_excluded)))


def cmd_advise(args: argparse.Namespace) -> None:
    from .api import advise
    from .comparison import estimate_row
    from .report import terminal

    job = job_from(args)
    catalog = _catalog(args)
    with _store(args, create=False) as store, terminal.working(f"profiling {job.name} and weighing the catalog"):
        advice = advise(job, catalog, store)
    rows = [estimate_row(e) | {"pareto": any(e is f for f in advice.pareto)} for e in advice.candidates]
    _emit(args, advice.to_dict(), rows, lambda: terminal.show(terminal.advice_tables(advice)))


def cmd_report(args: argparse.Namespace) -> None:
    from .api import report
    from .report import terminal

    job = job_from(args)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ChipfitError("chipfit report draws its plots with matplotlib; install it with "
                           "`pip install 'chipfit[report]'`.") from None
    from .report.html import html

    catalog = _catalog(args)
    with _store(args, create=False) as store, terminal.working(f"profiling {job.name} and weighing the catalog"):
        data = report(job, catalog, store)
    print(f"report written to {html(data, args.html)}")
    if args.plots:
        from .report.plots import plots

        for name, file in plots(data, args.plots, fmt=args.format).items():
            print(f"{name}: {file}")


def cmd_plan(args: argparse.Namespace) -> None:
    from .api import plan
    from .report import terminal

    job = job_from(args)
    with terminal.working("searching plans"):
        result = plan(job, _catalog(args), None, top=args.top)
    data = result.to_dict()
    _emit(args, data, data["search"]["ranked"], lambda: terminal.show(terminal.plan_tables(result)))


def cmd_serve(args: argparse.Namespace) -> None:
    from .web import serve

    print(f"chipfit dashboard on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    serve(args.host, args.port, db_path=args.db, catalog_dirs=tuple(args.catalog), allow_hosts=args.allow_host)


def cmd_devices(args: argparse.Namespace) -> None:
    from .api.measure import catalog_entry
    from .measure.devices import local_devices
    from .report import terminal

    catalog = _catalog(args)
    rows = [d.to_dict() | {"catalog": catalog_entry(d, catalog).id} for d in local_devices()]
    _emit(args, rows, rows, lambda: terminal.show(terminal.devices_table(rows)))


def _warn_load(env) -> None:
    """Say on stderr when the machine was busy as a run was stored (trust.load_warning)."""
    from .trust import load_warning

    if warning := load_warning(env.extra.get("load", {}), env.threads):
        print(f"chipfit: {warning}", file=sys.stderr)


def _device_here(args: argparse.Namespace):
    """The local device --device names, found before the store is opened: a device that is not here stores
    nothing; --keep-freed-memory for a GPU alone is refused."""
    from .measure.allocator import refuse_keep_freed_memory
    from .measure.devices import local_device

    device = local_device(args.device)
    if getattr(args, "keep_freed_memory", False):
        refuse_keep_freed_memory(device)
    return device


def cmd_bench(args: argparse.Namespace) -> None:
    from .api.measure import catalog_entry
    from .measure.allocator import device_allocator
    from .measure.devices import local_devices
    from .measure.microbench import BENCH_ROUNDS, run_microbenchmarks
    from .measure.power import device_meter
    from .measurement import Environment
    from .report import terminal

    if args.budget is not None and not args.budget > 0:
        raise ChipfitError(f"--budget {args.budget:g} is not a positive number of seconds; give e.g. --budget 0.4.")
    devices = [_device_here(args)] if args.device else local_devices()
    catalog, out = _catalog(args), []
    with _store(args) as store:
        for device in devices:
            hw = catalog_entry(device, catalog)
            alloc = device_allocator(device, args.keep_freed_memory)
            with terminal.progress_bar(f"bench {device.id}") as bar:
                ms = run_microbenchmarks(device, quick=args.quick, progress=bar, meter=device_meter(device, hw),
                                         rounds=1 if args.quick else BENCH_ROUNDS, budget_s=args.budget)
            env = Environment.capture(device.id, device.name, hw.id,
                                      extra={"quick": args.quick, "allocator": alloc, "budget_s": args.budget})
            run_id = store.record_run("bench", device.id, env, ms)
            _warn_load(env)
            out.append({"run_id": run_id, "device": device.id, "hardware": hw.id,
                        "measurements": [m.to_dict() for m in ms]})
            if not (args.json or args.csv):
                terminal.show(terminal.measurements_table(ms, hw, f"run {run_id}: {device.name} ({hw.id})"))
    rows = [{"run_id": r["run_id"], "hardware": r["hardware"]} | m for r in out for m in r["measurements"]]
    _emit(args, out, rows, lambda: None)


def cmd_measure(args: argparse.Namespace) -> None:
    from .api import measure
    from .report import terminal

    job = job_from(args)
    device = _device_here(args)
    with _store(args) as store, terminal.progress_bar(f"measure {args.model}") as bar:
        r = measure(job, _catalog(args), store, device=device, reps=args.reps,
                    keep_freed_memory=args.keep_freed_memory, progress=bar)
    d = r.to_dict()
    _emit(args, d, [d], lambda: terminal.show(terminal.measure_tables(r, args.model)))


def _stored_elsewhere(args: argparse.Namespace) -> str | None:
    """The catalog id of `args.device` as the results store recorded it, when that device is not on this machine
    but the store holds its runs; else None."""
    from .measure.devices import local_devices
    from .store import Store

    if any(d.id == args.device for d in local_devices()):
        return None
    try:
        with Store(args.db, create=False) as store:
            runs = [r for r in store.runs(device=args.device) if r.hardware_id]
    except ChipfitError:
        return None
    return runs[-1].hardware_id if runs else None


def cmd_calibrate(args: argparse.Namespace) -> None:
    from .api.measure import catalog_entry
    from .calibrate import calibrate_device
    from .report import terminal

    elsewhere = _stored_elsewhere(args)  # a device measured on another machine (a GPU) is fitted from the store
    catalog = _catalog(args)
    hw = catalog.get(elsewhere) if elsewhere else catalog_entry(_device_here(args), catalog)
    with _store(args) as store:
        cal = calibrate_device(store, hw, args.device)
    data = cal.to_dict()
    _emit(args, data, data["curves"], lambda: terminal.show(terminal.calibration_table(cal)))


def cmd_validate(args: argparse.Namespace) -> None:
    from .report import terminal

    if args.published:
        from .validate_published import format_table, validate_published

        v = validate_published(args.published)
        data = v.to_dict()
        _emit(args, data, data["rows"], lambda: print(format_table(v)))
        return
    from .api import validate

    device = _device_here(args)
    with _store(args) as store, terminal.progress_bar(f"validate on {device.id}") as bar:
        v = validate(_catalog(args), store, device=device, reps=args.reps, rounds=args.rounds, stored=args.stored,
                     quick=args.quick, models=tuple(args.model), keep_freed_memory=args.keep_freed_memory,
                     progress=bar)
    if not args.stored:
        _warn_load(v.environment)
    data = v.to_dict()
    _emit(args, data, data["cases"], lambda: terminal.show(terminal.validation_tables(v)))


def cmd_results(args: argparse.Namespace) -> None:
    from .report import terminal
    from .store import Store

    with Store(args.db, create=False) as store:
        if args.action == "export":
            n = store.export_csv(sys.stdout if args.csv == "-" else args.csv)
            if args.csv != "-":
                print(f"{n} measurements written to {args.csv}", file=sys.stderr)
        elif args.action == "list":
            runs = store.runs(kind=args.kind)
            rows = [r.to_dict() for r in runs]
            _emit(args, rows, rows, lambda: terminal.show(terminal.runs_table(runs)))
        else:
            run = store.run(args.run_id)
            ms = store.measurements(run_id=run.id)
            rows = [m.to_dict() for m in ms]
            _emit(args, run.to_dict() | {"measurements": rows}, rows, lambda: terminal.show(
                terminal.measurements_table(ms, None, f"run {run.id}: {run.kind} on {run.device} ({run.created_at})")))


COMMANDS = {"hardware": cmd_hardware, "models": cmd_models, "profile": cmd_profile, "compare": cmd_compare,
            "advise": cmd_advise,
            "report": cmd_report, "plan": cmd_plan, "serve": cmd_serve, "devices": cmd_devices, "bench": cmd_bench,
            "measure": cmd_measure, "calibrate": cmd_calibrate, "validate": cmd_validate, "results": cmd_results}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except ChipfitError as exc:
        print(f"chipfit: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("chipfit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as exc:  # a path no check covers yet: one sentence, not a traceback
        if os.environ.get("CHIPFIT_DEBUG"):
            raise
        print(f"chipfit: {unexpected(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
