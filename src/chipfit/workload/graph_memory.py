"""Peak live activation memory of a graph run in order, each tensor freed after its last reader."""

from __future__ import annotations

from typing import Mapping, Sequence


def peak_live_bytes(
    steps: Sequence[tuple[Sequence[str], Sequence[str]]],
    sizes: Mapping[str, int],
    keep: Sequence[str] = (),
    initial: Sequence[str] = (),
) -> int:
    """Largest sum of live tensor bytes over `steps` of (input names, output names).

    `initial` tensors (graph inputs) are live from the start; `keep` tensors (graph outputs)
    are never freed. A name written again (an in-place layer) stays one tensor. Tensors
    missing from `sizes` (weights, unknown shapes) are not counted.
    """
    last_use: dict[str, int] = {}
    for i, (inputs, outputs) in enumerate(steps):
        for name in (*inputs, *outputs):
            last_use[name] = i
    for name in keep:
        last_use[name] = len(steps)
    live = {name for name in initial if name in sizes}
    current = sum(sizes[name] for name in live)
    peak = current
    for i, (inputs, outputs) in enumerate(steps):
        for name in outputs:
            if name in sizes and name not in live:
                live.add(name)
                current += sizes[name]
        peak = max(peak, current)
        for name in {*inputs, *outputs}:
            if name in live and last_use.get(name, -1) <= i:
                live.remove(name)
                current -= sizes[name]
    return peak
