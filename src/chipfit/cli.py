"""Command line: parses, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from .errors import ChipfitError


def _number(text: str) -> float:
    """Accepts 1e9, 1_000_000, 15e12."""
    try:
        return float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _job_args(p: argparse.ArgumentParser, job: bool) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", dest="mode", action="store_const", const="train", help="a training step (default)")
    mode.add_argument("--infer", dest="mode", action="store_const", const="infer", help="inference (forward only)")
    p.set_defaults(mode="train")
    p.add_argument("--batch", type=int, default=1, help="global batch, samples or sequences per step (default 1)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context)")
    p.add_argument("--precision", default="fp32", help="fp32, tf32, bf16, fp16, fp8, int8 (default fp32)")
    p.add_argument("--optimizer", default="adamw", help="adamw or sgd (default adamw)")
    if job:
        p.add_argument("--samples", type=_number, help="training samples per epoch, or inference requests")
        p.add_argument("--epochs", type=_number, default=1.0)
        p.add_argument("--tokens", type=_number, help="training tokens (sequence models)")


def _out_args(p: argparse.ArgumentParser, csv_too: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    if csv_too:
        p.add_argument("--csv", action="store_true", help="print CSV instead of a table")


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
    _out_args(ls, csv_too=True)
    shw = hw_sub.add_parser("show", help="one entry, every figure with its source")
    shw.add_argument("id")
    _out_args(shw)

    prof = sub.add_parser("profile", help="FLOPs, bytes, parameters and memory of one step, per operator and layer")
    prof.add_argument("model", help="a zoo name (chipfit profile --list) or package.module:factory")
    _job_args(prof, job=False)
    prof.add_argument("--depth", type=int, default=2, help="module-path depth of the per-layer table")
    prof.add_argument("--ops", action="store_true", help="with --json: every traced operator")
    _out_args(prof)

    cmp = sub.add_parser("compare", help="rank the catalog for a job")
    cmp.add_argument("model")
    _job_args(cmp, job=True)
    cmp.add_argument("--devices", type=int, default=1, help="devices per entry, data parallel (default 1)")
    cmp.add_argument("--class", dest="hw_class", help="only this hardware class")
    cmp.add_argument("--hardware", action="append", help="only these entries (repeatable)")
    cmp.add_argument("--framework", help="only hardware that runs this framework")
    cmp.add_argument("--pue", type=float, help="data-centre PUE (default 1.10)")
    cmp.add_argument("--grid", type=float, help="grid carbon intensity, kg CO2 per kWh (default 0.475)")
    cmp.add_argument("--top", type=int, default=20, help="rows to show (0: all)")
    cmp.add_argument("--no-local", action="store_true", help="do not measure this machine's CPU")
    _out_args(cmp, csv_too=True)
    return parser


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _print_csv(rows: list[dict]) -> None:
    if rows:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run(args: argparse.Namespace) -> None:
    from .report import terminal

    if args.command == "hardware":
        from .catalog import load_catalog

        catalog = load_catalog(args.catalog)
        if args.action == "list":
            entries = catalog.select(hw_class=args.hw_class, framework=args.framework)
            if args.json or args.csv:
                rows = [catalog.to_dict(hw) for hw in entries]
                _print_json(rows) if args.json else _print_csv([{k: v for k, v in r.items() if not isinstance(v, dict)} for r in rows])
            else:
                terminal.show(terminal.hardware_table(entries))
        else:
            d = catalog.to_dict(catalog.get(args.id))
            d["cloud"] = [
                {"id": i.id, "count": i.count, "usd_per_hour": i.price_usd_per_hour.value, "date": i.price_date,
                 "source": i.price_usd_per_hour.source} for i in catalog.instances_for(args.id)
            ]
            _print_json(d) if args.json else terminal.show(terminal.hardware_detail(d))
    elif args.command == "profile":
        from .workload import profile

        p = profile(args.model, mode=args.mode, batch=args.batch, seq_len=args.seq,
                    precision=args.precision, optimizer=args.optimizer)
        _print_json(p.to_dict(ops=args.ops)) if args.json else terminal.show(terminal.profile_tables(p, args.depth))
    elif args.command == "compare":
        from .comparison import compare

        result = compare(
            args.model, mode=args.mode, batch=args.batch, seq_len=args.seq, samples=args.samples,
            epochs=args.epochs, tokens=args.tokens, precision=args.precision, optimizer=args.optimizer,
            devices=args.devices, hw_class=args.hw_class, hardware=args.hardware, framework=args.framework,
            pue=args.pue, grid_kg_per_kwh=args.grid, catalog_dirs=tuple(args.catalog),
            include_local_cpu=not args.no_local,
        )
        if args.json:
            _print_json(result.to_dict())
        elif args.csv:
            _print_csv(result.to_rows())
        else:
            terminal.show(terminal.comparison_table(result, top=args.top or None))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except ChipfitError as exc:
        print(f"chipfit: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("chipfit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
