"""Command line: parses, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

from .errors import ChipfitError, unexpected


def _number(text: str) -> float:
    """Accepts 1e9, 1_000_000, 15e12."""
    try:
        return float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


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
                      help="a training step (default, except for .onnx and .prototxt files)")
    mode.add_argument("--infer", dest="mode", action="store_const", const="infer", help="inference (forward only)")
    p.set_defaults(mode=None)
    p.add_argument("--input", action="append", type=_shape, default=[], metavar="NAME=DIMS",
                   help="ONNX: the shape of a graph input, e.g. input=1x3x224x224 (repeatable)")
    p.add_argument("--batch", type=int, default=None,
                   help="global batch, samples or sequences per step (default: one per device)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context)")
    p.add_argument("--precision", default=None,
                   help="fp32, tf32, bf16, fp16, fp8, int8 (default: bf16 for LLMs, as they are trained and served; "
                        "else fp32)")
    p.add_argument("--optimizer", default="adamw", help="adamw or sgd (default adamw)")
    if job:
        p.add_argument("--samples", type=_number, help="training samples per epoch, or inference requests")
        p.add_argument("--epochs", type=_number, default=1.0)
        p.add_argument("--tokens", type=_number, help="training tokens (sequence models)")


def _out_args(p: argparse.ArgumentParser) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--csv", action="store_true", help="print CSV rows instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chipfit", description="Which hardware should your deep-learning job run on?")
    parser.add_argument("--catalog", action="append", default=[], metavar="DIR",
                        help="a directory of your own catalog TOML files (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)

    hw = sub.add_parser("hardware", help="the hardware catalog")
    hw_sub = hw.add_subparsers(dest="action", required=True)
    ls = hw_sub.add_parser("list", help="list catalog entries")
    ls.add_argument("--class", dest="hw_class", help="cpu, gpu, tpu, asic, fpga, edge, neuromorphic, quantum")
    ls.add_argument("--framework", help="only entries that run this framework")
    _out_args(ls)
    shw = hw_sub.add_parser("show", help="one entry, every figure with its source")
    shw.add_argument("id", help="catalog id or any name: \"H100 SXM5 80GB\", \"Gaudi2\", \"p5.48xlarge\"")
    _out_args(shw)

    mdl = sub.add_parser("models", help="the model library: every named model, its kind and parameter count")
    mdl.add_argument("--family", help="only this family (llama, qwen3, t5, ...)")
    mdl.add_argument("--kind", help="decoder, encoder, encoder-decoder, moe or vision")
    mdl.add_argument("--min-params", help="at least this many parameters: 7e9, 70B, 350M")
    mdl.add_argument("--max-params", help="at most this many parameters")
    _out_args(mdl)

    prof = sub.add_parser("profile", help="FLOPs, bytes, parameters and memory of one step, per operator and layer")
    prof.add_argument("model", help="a zoo name (chipfit profile --list) or package.module:factory")
    _job_args(prof, job=False)
    prof.add_argument("--depth", type=int, default=2, help="module-path depth of the per-layer table")
    prof.add_argument("--ops", action="store_true", help="with --json: every traced operator")
    _out_args(prof)

    cmp = sub.add_parser("compare", help="rank the catalog for a job")
    cmp.add_argument("model", nargs="?", help="zoo name, model file or package.module:factory (or use --spec)")
    cmp.add_argument("--spec", help="a transformer by its sizes: layers=32,hidden=4096,heads=32,kv_heads=8,ffn=14336,vocab=128256")
    cmp.add_argument("--prompt", type=int, help="LLM serving: prompt tokens per request (with --infer)")
    cmp.add_argument("--generate", type=int, help="LLM serving: generated tokens per request (with --infer)")
    _job_args(cmp, job=True)
    cmp.add_argument("--devices", type=int, default=1, help="devices per entry, data parallel (default 1)")
    cmp.add_argument("--class", dest="hw_class", help="only this hardware class")
    cmp.add_argument("--hardware", action="append", help="only these entries, by id or name (repeatable)")
    cmp.add_argument("--framework", help="only hardware that runs this framework")
    cmp.add_argument("--pue", type=float, help="data-centre PUE (default 1.10)")
    cmp.add_argument("--grid", type=float, help="grid carbon intensity, kg CO2 per kWh (default 0.475)")
    cmp.add_argument("--top", type=int, default=20, help="rows to show (0: all)")
    cmp.add_argument("--no-local", action="store_true", help="do not measure this machine's CPU")
    cmp.add_argument("--network", help="the network between nodes for every entry, e.g. ib-hdr-200, efa-p5 "
                     "(default: that of each vendor's reference node; a wrong name lists them all)")
    _out_args(cmp)

    for name, text in (("advise", "rank hardware and device counts under your constraints; rent versus buy"),
                       ("report", "the advice as one self-contained HTML file, and plots for slides")):
        adv = sub.add_parser(name, help=text)
        adv.add_argument("model")
        _job_args(adv, job=True)
        _advice_args(adv)
        if name == "report":
            adv.add_argument("--html", required=True, metavar="FILE", help="the report file to write")
            adv.add_argument("--plots", metavar="DIR", help="also write each plot here")
            adv.add_argument("--format", default="svg", choices=("svg", "png"), help="plot file format")
            _db_arg(adv)
        else:
            _out_args(adv)

    pl = sub.add_parser("plan", help="best parallel plans for training a transformer on one kind of hardware")
    pl.add_argument("model", nargs="?", help="a decoder LLM from the zoo (or use --spec)")
    pl.add_argument("--spec", help="a transformer by its sizes (see compare --spec)")
    pl.add_argument("--train", action="store_true", help="training (the only mode plans are searched for)")
    pl.add_argument("--hardware", required=True, help="the device: catalog id or any name (\"H100 80GB\")")
    pl.add_argument("--tokens", type=_number, help="training tokens")
    pl.add_argument("--batch", type=int, help="global batch in sequences (default: about 4M tokens)")
    pl.add_argument("--seq", type=int, help="sequence length (default: the model's context, 2048 for --spec)")
    pl.add_argument("--precision", default="bf16")
    pl.add_argument("--max-devices", type=int, help="largest device count to consider")
    pl.add_argument("--devices", type=int, help="exactly this many devices")
    pl.add_argument("--deadline", help="finish within this time: 90d, 12h, ...")
    pl.add_argument("--budget", type=float, help="spend at most this many US dollars")
    pl.add_argument("--objective", default="time", choices=("time", "cost", "energy", "device_hours"))
    pl.add_argument("--network", help="the network between nodes, e.g. ib-hdr-200, efa-p5, opa-4x100 "
                    "(default: that of the vendor's reference node; a wrong name lists them all)")
    pl.add_argument("--top", type=int, default=5)
    _out_args(pl)

    srv = sub.add_parser("serve", help="the dashboard in a browser (FastAPI; needs chipfit[web])")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                     help="also answer requests addressed to NAME (a host name this machine is reached by); "
                          "by default only the bound address and loopback names")
    _db_arg(srv)

    dev = sub.add_parser("devices", help="what is here: CPU model, cores, ISA, GPUs, MPS")
    _out_args(dev)
    bench = sub.add_parser("bench", help="micro-benchmarks of every local device, stored")
    bench.add_argument("--quick", action="store_true", help="fewer sizes, one round (a few seconds on a CPU)")
    bench.add_argument("--device", help="only this device id (see `chipfit devices`)")
    bench.add_argument("--budget", type=float, metavar="SECONDS",
                       help="timed seconds per benchmark (default 0.4; less is quicker and noisier)")
    _allocator_arg(bench)
    _db_arg(bench)
    _out_args(bench)
    meas = sub.add_parser("measure", help="real steps of a workload here, predicted next to measured, stored")
    meas.add_argument("model")
    _job_args(meas, job=False)
    meas.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    meas.add_argument("--device", default="local-cpu", help="device id (default local-cpu)")
    _allocator_arg(meas)
    _db_arg(meas)
    _out_args(meas)
    cal = sub.add_parser("calibrate", help="fit this machine's efficiencies from the stored benchmarks and operator times")
    cal.add_argument("--device", default="local-cpu", help="device id (default local-cpu)")
    _db_arg(cal)
    _out_args(cal)
    val = sub.add_parser("validate", help="predicted vs measured for the zoo here, or vs published runs")
    val.add_argument("--published", metavar="CSV", nargs="+",
                     help="check predictions against published runs (one or more CSVs, columns of published.csv)")
    val.add_argument("--reps", type=int, default=3, help="timed repetitions per case and round (default 3)")
    val.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the cases (default 5)")
    val.add_argument("--stored", action="store_true",
                     help="predict the newest stored validate run's cases again from what is stored; measure nothing")
    val.add_argument("--device", default="local-cpu",
                     help="device id (default local-cpu); a GPU runs GPU-sized cases in bf16 (chipfit.validate)")
    val.add_argument("--quick", action="store_true", help="one train and one infer case of fewer models")
    val.add_argument("--model", action="append", default=[], help="only this model's cases (repeatable)")
    _allocator_arg(val)
    _db_arg(val)
    _out_args(val)
    res = sub.add_parser("results", help="the stored history")
    res_sub = res.add_subparsers(dest="action", required=True)
    rl = res_sub.add_parser("list", help="stored runs")
    rl.add_argument("--kind", help="bench, measure or validate")
    _db_arg(rl)
    _out_args(rl)
    rs = res_sub.add_parser("show", help="one run and its measurements")
    rs.add_argument("run_id", type=int)
    _db_arg(rs)
    _out_args(rs)
    rx = res_sub.add_parser("export", help="every measurement as CSV")
    rx.add_argument("--csv", metavar="FILE", default="-", help="file to write (default: standard output)")
    _db_arg(rx)
    return parser


def _advice_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices-list", default="1,8,64", help="device counts to weigh, comma-separated (default 1,8,64)")
    p.add_argument("--class", dest="hw_class", help="only this hardware class")
    p.add_argument("--framework", help="only hardware that runs this framework")
    p.add_argument("--deadline", help="finish within: 14d, 12h, ...")
    p.add_argument("--budget", type=float, help="spend at most this many US dollars")
    p.add_argument("--energy", type=float, help="use at most this many kWh")
    p.add_argument("--co2", type=float, help="emit at most this many kg CO2")
    p.add_argument("--where", default="any", choices=("any", "cloud", "local"), help="rented, owned, or either")
    p.add_argument("--single-device", action="store_true", help="must fit and run on one device")
    p.add_argument("--objective", default="time", choices=("time", "cost", "energy"))
    p.add_argument("--buy", action="store_true", help="weigh buying the hardware against renting it")
    p.add_argument("--years", type=float, default=3.0, help="with --buy: lifetime of owned hardware")
    p.add_argument("--electricity", type=float, help="with --buy: electricity price, USD per kWh")
    p.add_argument("--utilisation", type=float, default=1.0, help="with --buy: share of the lifetime in use")
    p.add_argument("--pue", type=float, help="data-centre PUE")
    p.add_argument("--grid", type=float, help="grid carbon intensity, kg CO2 per kWh")


def _advice(args: argparse.Namespace):
    from .advise import advise
    from .planning import parse_duration

    try:
        counts = [int(n) for n in args.devices_list.split(",")]
    except ValueError:
        raise ChipfitError(f"--devices-list {args.devices_list!r} is not comma-separated device counts like 1,8.") from None
    if args.buy and args.electricity is None:
        raise ChipfitError("--buy needs --electricity, the price you pay per kWh, to cost owned hardware.")
    return advise(
        args.model, deadline_s=parse_duration(args.deadline) if args.deadline else None, budget_usd=args.budget,
        energy_kwh_max=args.energy, co2_kg_max=args.co2, framework=args.framework, where=args.where,
        single_device=args.single_device, objective=args.objective, device_counts=counts,
        buy_years=args.years if args.buy else None, electricity_usd_per_kwh=args.electricity,
        utilisation=args.utilisation, catalog_dirs=tuple(args.catalog),
        mode=args.mode, batch=args.batch, seq_len=args.seq, samples=args.samples, epochs=args.epochs,
        tokens=args.tokens, precision=args.precision, optimizer=args.optimizer, hw_class=args.hw_class,
        pue=args.pue, grid_kg_per_kwh=args.grid, input_shapes=dict(args.input) or None,
    )


def _allocator_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="set glibc to keep freed memory for the next step, as jemalloc and tcmalloc do, so steps do not "
                        "time page faults (default: the allocator as this process has it; chipfit.measure.allocator)")


def _allocator(args: argparse.Namespace, device) -> str:
    """Set this process's allocator for measuring `device` with --keep-freed-memory (measure.allocator); say which
    it is."""
    from .measure.allocator import device_allocator

    return device_allocator(device, args.keep_freed_memory)


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="results database (default $CHIPFIT_DB or ~/.local/share/chipfit/results.sqlite)")


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


def _is_llm(args: argparse.Namespace) -> bool:
    """A transformer given by --spec, or a generative language model of the library."""
    if getattr(args, "spec", None):
        return True
    from .workload.library import generative

    return generative(getattr(args, "model", None) or "")


def _default_mode(args: argparse.Namespace) -> None:
    """Training by default, inference for graph files (they hold no training step); the batch
    defaults to one sample per device (advise: per device of the largest count it weighs)."""
    if getattr(args, "batch", 0) is None and args.command != "plan":
        counts = getattr(args, "devices_list", None)
        if counts:  # advise and report weigh several device counts: a batch every one of them splits
            try:
                args.batch = math.lcm(*(int(n) for n in counts.split(",")))
            except ValueError:
                args.batch = 1  # _advice refuses the malformed list with its own sentence
        else:
            args.batch = getattr(args, "devices", None) or 1
    if getattr(args, "precision", "") is None:
        args.precision = "bf16" if _is_llm(args) else "fp32"
    if getattr(args, "mode", "") is None:
        model = getattr(args, "model", None) or ""
        args.mode = "infer" if model.lower().endswith((".onnx", ".prototxt")) else "train"


def run(args: argparse.Namespace) -> None:
    from .comparison import estimate_row
    from .report import terminal

    if args.command == "hardware":
        from .catalog import hardware_named, load_catalog

        catalog = load_catalog(args.catalog)
        if args.action == "list":
            entries = catalog.select(hw_class=args.hw_class, framework=args.framework)
            rows = [catalog.to_dict(hw) for hw in entries]
            _emit(args, rows, rows, lambda: terminal.show(terminal.hardware_table(entries)))
        else:
            d = catalog.to_dict(hardware_named(args.id, catalog))
            _emit(args, d, [d], lambda: terminal.show(terminal.hardware_detail(d)))
    elif args.command == "models":
        from .workload import library

        sizes = (None if v is None else library.parse_count(v) for v in (args.min_params, args.max_params))
        entries = library.list_models(args.family, args.kind, *sizes)
        rows = [e.to_dict() for e in entries]
        _emit(args, rows, [r | {"aliases": " ".join(r["aliases"]), "arch": None} for r in rows],
              lambda: terminal.show(terminal.models_table(entries)))
    elif args.command == "profile":
        from .workload import profile

        with terminal.working(f"profiling {args.model} on fake tensors"):
            p = profile(args.model, mode=args.mode, batch=args.batch, seq_len=args.seq, precision=args.precision,
                        optimizer=args.optimizer, input_shapes=dict(args.input) or None)
        rows = [{"phase": op.phase, "module": op.module, "op": op.name, "kind": op.kind, "dtype": op.dtype,
                 "flops": op.flops, "bytes_read": op.bytes_read, "bytes_written": op.bytes_written,
                 "counted": op.counted, "causal": op.causal} for op in p.ops]
        _emit(args, p.to_dict(ops=args.ops), rows, lambda: terminal.show(terminal.profile_tables(p, args.depth)))
    elif args.command == "advise":
        with terminal.working(f"profiling {args.model} and weighing the catalog"):
            advice = _advice(args)
        rows = [estimate_row(e) | {"pareto": any(e is f for f in advice.pareto)} for e in advice.candidates]
        _emit(args, advice.to_dict(), rows, lambda: terminal.show(terminal.advice_tables(advice)))
    elif args.command == "report":
        from .report.html import html
        from .store import Store, default_db_path

        with terminal.working(f"profiling {args.model} and weighing the catalog"):
            advice = _advice(args)
        db = args.db or (default_db_path() if default_db_path().exists() else None)
        with (Store(db) if db else _nothing()) as store:
            path = html(advice, args.html, store=store)
        print(f"report written to {path}")
        if args.plots:
            from .report.plots import plots

            for name, file in plots(advice, args.plots, fmt=args.format).items():
                print(f"{name}: {file}")
    elif args.command == "serve":
        from .web import serve

        print(f"chipfit dashboard on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
        serve(args.host, args.port, db_path=args.db, catalog_dirs=tuple(args.catalog), allow_hosts=args.allow_host)
    elif args.command == "plan":
        from .planning import plan

        with terminal.working("searching plans"):
            workload, search = plan(
                args.model, args.hardware, spec=args.spec, tokens=args.tokens, batch=args.batch, seq_len=args.seq,
                precision=args.precision, max_devices=args.max_devices, devices=args.devices, objective=args.objective,
                deadline=args.deadline, budget_usd=args.budget, network=args.network, top=args.top,
                catalog_dirs=tuple(args.catalog),
            )
        data = {"workload": workload.to_dict(), "search": search.to_dict()}
        _emit(args, data, data["search"]["ranked"], lambda: terminal.show(terminal.plan_tables(workload, search)))
    elif args.command == "compare":
        from .comparison import compare

        with terminal.working(f"profiling {args.model or 'the spec'} and ranking the catalog"):
            result = compare(
                args.model, mode=args.mode, batch=args.batch, seq_len=args.seq, samples=args.samples,
                epochs=args.epochs, tokens=args.tokens, precision=args.precision, optimizer=args.optimizer,
                devices=args.devices, hw_class=args.hw_class, hardware=args.hardware, framework=args.framework,
                pue=args.pue, grid_kg_per_kwh=args.grid, catalog_dirs=tuple(args.catalog),
                include_local_cpu=not args.no_local, spec=args.spec, prompt=args.prompt, generate=args.generate,
                input_shapes=dict(args.input) or None, network=args.network,
            )
        _emit(args, result.to_dict(), result.to_rows(),
              lambda: terminal.show(terminal.comparison_table(result, top=args.top or None)))


def _warn_load(env) -> None:
    """Say on stderr when the machine was busy as a run was stored (trust.load_warning)."""
    from .trust import load_warning

    if warning := load_warning(env.extra.get("load", {}), env.threads):
        print(f"chipfit: {warning}", file=sys.stderr)


def _hardware_for(device, catalog_dirs):
    from .catalog import load_catalog
    from .measure.devices import match_catalog

    return match_catalog(device, load_catalog(catalog_dirs).hardware)


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


def run_local(args: argparse.Namespace) -> None:
    """devices, bench, measure, calibrate, validate, results: what is measured here."""
    from .measurement import Environment
    from .report import terminal
    from .store import Store

    if args.command == "devices":
        from .measure.devices import local_devices

        rows = []
        for d in local_devices():
            rows.append(d.to_dict() | {"catalog": _hardware_for(d, args.catalog).id})
        _emit(args, rows, rows, lambda: terminal.show(terminal.devices_table(rows)))
        return
    if args.command == "results" and args.action == "export":
        with Store(args.db, create=False) as store:
            n = store.export_csv(sys.stdout if args.csv == "-" else args.csv)
        if args.csv != "-":
            print(f"{n} measurements written to {args.csv}", file=sys.stderr)
        return
    if getattr(args, "budget", None) is not None and not args.budget > 0:
        raise ChipfitError(f"--budget {args.budget:g} is not a positive number of seconds; give e.g. --budget 0.4.")
    device = None
    if args.command == "calibrate" and args.device and _stored_elsewhere(args):
        pass  # fitted from the store's runs of a device that is not here (e.g. a GPU measured on another machine)
    elif getattr(args, "device", None):  # before the store is opened: a device that is not here stores nothing
        from .measure.allocator import refuse_keep_freed_memory
        from .measure.devices import local_device

        device = local_device(args.device)
        if getattr(args, "keep_freed_memory", False):
            refuse_keep_freed_memory(device)
    store = Store(args.db, create=args.command != "results")
    if args.command == "bench":
        from .measure.devices import local_devices
        from .measure.microbench import BENCH_ROUNDS, run_microbenchmarks
        from .measure.power import device_meter

        devices = [device] if device else local_devices()
        out = []
        for device in devices:
            hw = _hardware_for(device, args.catalog)
            allocator = _allocator(args, device)
            with terminal.progress_bar(f"bench {device.id}") as bar:
                ms = run_microbenchmarks(device, quick=args.quick, progress=bar, meter=device_meter(device, hw),
                                         rounds=1 if args.quick else BENCH_ROUNDS, budget_s=args.budget)
            env = Environment.capture(device.id, device.name, hw.id,
                                      extra={"quick": args.quick, "allocator": allocator, "budget_s": args.budget})
            run_id = store.record_run("bench", device.id, env, ms)
            _warn_load(env)
            out.append({"run_id": run_id, "device": device.id, "hardware": hw.id, "measurements": [m.to_dict() for m in ms]})
            if not (args.json or args.csv):
                terminal.show(terminal.measurements_table(ms, hw, f"run {run_id}: {device.name} ({hw.id})"))
        rows = [{"run_id": r["run_id"], "hardware": r["hardware"]} | m for r in out for m in r["measurements"]]
        _emit(args, out, rows, lambda: None)
    elif args.command == "measure":
        from dataclasses import replace

        from .calibrate import stored_calibration
        from .measure.opprofile import profile_ops
        from .measure.power import device_meter
        from .measure.steps import measure_step
        from .validate import predicted_step
        from .workload import profile
        from .workload.workload import Workload

        hw = _hardware_for(device, args.catalog)
        prof = profile(args.model, mode=args.mode, batch=args.batch, seq_len=args.seq, precision=args.precision,
                       optimizer=args.optimizer)
        work = Workload(model=args.model, mode=args.mode, batch=args.batch, seq_len=prof.seq_len,
                        precision=args.precision, optimizer=args.optimizer)
        cal = stored_calibration(store, hw.id)
        predicted = predicted_step(prof, hw, work, cal)
        allocator = _allocator(args, device)
        job = dict(mode=args.mode, batch=args.batch, seq_len=args.seq, precision=args.precision,
                   optimizer=args.optimizer)
        with terminal.progress_bar(f"measure {args.model}") as bar:
            m = measure_step(args.model, device, **job, repetitions=args.reps, profile=prof, predicted_s=predicted,
                             progress=bar, meter=device_meter(device, hw))
        ops = profile_ops(args.model, device, prof, **job, repetitions=min(args.reps, 3))
        m = replace(m, extra={**m.extra, "model": m.label, "op_profile": ops.summary(m.median_s)})
        op_rows = ops.measurements(device.id, m.label, m.median_s)
        env = Environment.capture(device.id, device.name, hw.id, model_path=_model_path(args.model),
                                  extra={"allocator": allocator})
        run_id = store.record_run("measure", device.id, env, [m, *op_rows])
        d = m.to_dict() | {"run_id": run_id, "hardware": hw.id, "calibrated": cal is not None,
                           "error": predicted / m.median_s - 1}
        _emit(args, d, [d], lambda: terminal.show([
            terminal.measurements_table([m], hw, f"run {run_id}: {args.model} on {hw.id}"),
            f"predicted {predicted * 1e3:.4g} ms ({'calibrated' if cal else 'published defaults'}), "
            f"measured {m.median_s * 1e3:.4g} ms: error {d['error']:+.1%}",
            f"measured with {allocator}",
            f"{len(op_rows)} distinct operator calls timed under the profiler ({ops.matched} of {len(prof.ops)} "
            "traced operators matched), stored for `chipfit calibrate`"]))
    elif args.command == "calibrate":
        from .calibrate import calibrate_device

        if device is None:
            from .catalog import load_catalog

            hw = load_catalog(args.catalog).get(_stored_elsewhere(args))
        else:
            hw = _hardware_for(device, args.catalog)
        cal = calibrate_device(store, hw, args.device if device is None else device.id)
        data = cal.to_dict()
        _emit(args, data, data["curves"], lambda: terminal.show(terminal.calibration_table(cal)))
    elif args.command == "validate":
        if args.published:
            from .validate_published import format_table, validate_published

            v = validate_published(args.published)
            data = v.to_dict()
            _emit(args, data, data["rows"], lambda: print(format_table(v)))
            return
        from .calibrate import device_measurements
        from .catalog import load_catalog
        from .validate import case_set, revalidate, run_validation

        hw = _hardware_for(device, args.catalog)
        measurements, source = device_measurements(store, device.id, require_bench=False)
        entries = list(load_catalog(args.catalog).hardware.values())
        if args.stored:
            runs = store.runs(kind="validate", device=device.id)
            if not runs:
                raise ChipfitError(f"No validate run of {device.id} in {store.path}; run `chipfit validate` first.")
            steps = [m for m in store.measurements(run_id=runs[-1].id) if m.kind in ("train_step", "infer_step")]
            with terminal.working("predicting the stored cases"):
                v = revalidate(hw, steps, measurements, entries, source)
            v.allocator = runs[-1].environment.extra.get("allocator", "")
        else:
            if args.reps < 1 or args.rounds < 1:
                raise ChipfitError(f"--reps {args.reps} and --rounds {args.rounds} must both be 1 or more.")
            cases = case_set(device, args.quick, tuple(args.model))
            records, allocator = [], _allocator(args, device)
            with terminal.progress_bar(f"validate on {device.id}") as bar:
                v = run_validation(hw, device, measurements, entries, cases.cases, args.reps, args.rounds, bar,
                                   records.append, source, cases.precision, cases.contrast)
            v.allocator = allocator
            env = Environment.capture(device.id, device.name, hw.id,
                                      extra={"calibration": v.calibration, "allocator": allocator})
            store.record_run("validate", device.id, env, records)
            _warn_load(env)
        data = v.to_dict()
        _emit(args, data, data["cases"], lambda: terminal.show(terminal.validation_tables(v)))
    elif args.command == "results":
        if args.action == "list":
            runs = store.runs(kind=args.kind)
            rows = [r.to_dict() for r in runs]
            _emit(args, rows, rows, lambda: terminal.show(terminal.runs_table(runs)))
        else:
            run = store.run(args.run_id)
            ms = store.measurements(run_id=run.id)
            rows = [m.to_dict() for m in ms]
            _emit(args, run.to_dict() | {"measurements": rows}, rows, lambda: terminal.show(
                terminal.measurements_table(ms, None, f"run {run.id}: {run.kind} on {run.device} ({run.created_at})")))
    store.close()


def _nothing():
    import contextlib

    return contextlib.nullcontext(None)


def _model_path(model: str) -> str | None:
    """The file of a user model's code, for the git commit recorded with a run."""
    if ":" not in model:
        return None
    import importlib.util

    spec = importlib.util.find_spec(model.split(":")[0])
    return spec.origin if spec and spec.origin else None


LOCAL_COMMANDS = ("devices", "bench", "measure", "calibrate", "validate", "results")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage message
        return int(exc.code or 0)
    _default_mode(args)
    try:
        run_local(args) if args.command in LOCAL_COMMANDS else run(args)
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
