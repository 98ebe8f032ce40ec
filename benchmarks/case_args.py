"""The command-line arguments that name one validate case, shared by the benchmarks that look at one."""

import argparse


def case_parser(doc: str) -> argparse.ArgumentParser:
    """A parser for MODEL MODE BATCH [--seq N], described by the first line of `doc`."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("mode", choices=("train", "infer"))
    ap.add_argument("batch", type=int)
    ap.add_argument("--seq", type=int)
    return ap
