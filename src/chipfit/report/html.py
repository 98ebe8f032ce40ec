"""The HTML report: one self-contained file (inline CSS, plots as embedded PNG, no external URL)."""

from __future__ import annotations

import base64
import datetime as _dt
import io
from html import escape
from pathlib import Path

from ..advise import Advice, label
from ..api.report import ReportData
from ..errors import ChipfitError
from . import plots as _plots
from ..units import kwh, nbytes, seconds, si, usd

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.job{color:#555;margin:0 0 16px}.why{font-size:17px;background:#eef4fb;border-left:4px solid #4c72b0;padding:10px 14px;margin:12px 0}
.none{background:#fbeeee;border-left-color:#c44e52}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:8px 0}
th,td{padding:4px 8px;border-bottom:1px solid #e6e6e6;text-align:right;vertical-align:top;white-space:nowrap}
td.w{white-space:normal;text-align:left;min-width:11em}.reason{color:#a33;font-size:11.5px}.scroll{overflow-x:auto}td .muted{font-size:11px}
th{background:#fafafa;position:sticky;top:0}td.l,th.l{text-align:left}
tr.win td{background:#fff7e0;font-weight:600}tr.out td{color:#888}
td.p{white-space:normal;text-align:left;min-width:7em;max-width:10em;overflow-wrap:anywhere}td.p .muted{display:block}
@media (max-width:1100px){main{padding:16px 12px 32px}table{font-size:11px}th,td{padding:3px 5px}th,td .muted{white-space:normal}td.w{min-width:7em}td.p{min-width:5em}}
.yes{color:#2a7d2a}.no{color:#c44e52}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:12.5px}
ul{margin:6px 0;padding-left:20px}li{margin:2px 0}.muted{color:#777;font-size:12.5px}
.summary{font-size:15px;background:#fafafa;padding:8px 14px;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}dt{color:#555}dd{margin:0}
"""

_CAPTIONS = {
    "pareto": ("Time against cost",
               "Every entry with a sourced price. Blue entries meet the constraints; the red line joins those no other "
               "entry beats on both time and cost (the Pareto front); the gold star is the winner, where it has a "
               "sourced price."),
    "roofline": ("Roofline with the model's operators",
                 "Each dot is one operator of a training or inference step at its arithmetic intensity (FLOP per byte "
                 "moved) and the FLOP/s chipfit predicts it reaches on that device; the line is the device's roof "
                 "(dense peak at the job's precision, and memory bandwidth). Operators with no FLOPs are not shown."),
    "memory": ("Memory per device",
               "What each device holds at the peak of a step, by part, as a share of that device's own memory; each bar "
               "says its size and the capacity. Where every bar is under half its capacity the axis stops short of "
               "100% so the parts stay readable; else the black line marks the capacity."),
    "layers": ("Time per layer", "Predicted time of one step per layer (module path, two levels deep), by phase."),
    "measured": ("Measured against predicted",
                 "Steps measured on hardware here (from the results store) against chipfit's prediction for the same step."),
    "rent_buy": ("Rent versus buy",
                 "Cumulative cost per device of renting at each sourced price and of owning it (purchase plus "
                 "electricity); dotted lines mark where buying starts to pay off."),
}


def _text(value) -> str:
    """Escaped text; cited addresses lose their scheme, so the file holds no URL a browser would follow."""
    return escape(str(value)).replace("https://", "").replace("http://", "")


def _short_source(e) -> str:
    """The instance a cost was priced at ('aws p5.48xlarge'); the full source is under Assumptions."""
    return e.cost_source.split(" at $", 1)[0]


def _unbroken(text: str) -> str:
    """`text` with its spaces made non-breaking, so a figure and its unit stay on one line."""
    return text.replace(" ", "&nbsp;")


def _price(e) -> str:
    """The price cell: USD per device-hour (the cost over the device-hours it was priced from), then the
    instance in small text that wraps, so the column stays narrow."""
    if not e.cost_source:
        return "-"
    rate = f"{usd(e.cost_usd / e.device_hours)}/h<br>" if e.cost_usd and e.device_hours else ""
    return f"{rate}<span class=muted>{_text(_short_source(e))}</span>"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _job(advice: Advice) -> str:
    cmp = advice.comparison
    w = cmp.workload
    text = f"{w.model}, {'training' if w.training else 'inference'}, batch {w.batch}"
    text += f", sequence {w.seq_len}" if w.seq_len else ""
    text += f", {w.precision}, {w.total_samples():.4g} samples" + (f", optimizer {w.optimizer}" if w.training else "")
    counts = ", ".join(str(c.plan.devices) for c in advice.comparisons)
    return text + f"; device counts {counts}; {cmp.profile.params / 1e6:,.1f} M parameters"


def _constraints(advice: Advice) -> str:
    c = advice.constraints
    items = [("deadline", seconds(c["deadline_s"]) if c.get("deadline_s") else None),
             ("budget", usd(c["budget_usd"]) if c.get("budget_usd") else None),
             ("energy limit", kwh(c["energy_kwh_max"]) if c.get("energy_kwh_max") else None),
             ("CO2 limit", f"{c['co2_kg_max']:g} kg" if c.get("co2_kg_max") else None),
             ("framework", c.get("framework")), ("where", c.get("where") if c.get("where") != "any" else None),
             ("single device", "yes" if c.get("single_device") else None), ("ranked by", advice.objective)]
    return "".join(f"<dt>{_text(k)}</dt><dd>{_text(str(v))}</dd>" for k, v in items if v)


def _ranking(advice: Advice) -> str:
    reasons = {(d.hardware, d.devices): d.reason for d in advice.dropped}
    others = [e for e in advice.estimates() if e not in advice.candidates and not e.excluded_reason]
    others.sort(key=lambda e: (e.total_time_s is None, e.total_time_s or 0.0))
    cannot = [e for e in advice.estimates() if e.excluded_reason]
    unit = advice.comparison.estimates[0].throughput_unit if advice.comparison.estimates else "samples/s"
    head = ["#", "hardware", "class", "fits", "memory per device", "step", f"throughput<br>({unit})",
            "total time<br>(low - high)", "device-hours", "energy", "CO2", "cost", "price<br>(per device)"]
    rows = []
    for i, e in enumerate([*advice.candidates, *others], 1):
        fits = {True: '<span class="yes">yes</span>', False: '<span class="no">no</span>', None: "?"}[e.fits]
        span = "-" if e.total_time_s is None else (  # a narrow column wraps the range at its dash only
            f"{seconds(e.total_time_s)}<br><span class=muted>{_unbroken(seconds(e.low.get('total_time_s')))}&nbsp;- "
            f"{_unbroken(seconds(e.high.get('total_time_s')))}</span>")
        cls = "win" if e is advice.winner else "" if e in advice.candidates else "out"
        why = reasons.get((e.hardware, e.devices), "")
        name = _text(label(e)) + (f"<div class=reason>{_text(why)}</div>" if why else "")
        cells = [str(i), name, _text(e.hw_class), fits, nbytes(e.memory_per_device_bytes),
                 seconds(e.step_time_s), si(e.throughput_per_s), span,
                 "-" if e.device_hours is None else f"{e.device_hours:,.1f}", kwh(e.energy_kwh),
                 "-" if e.co2_kg is None else f"{e.co2_kg:,.3g} kg", usd(e.cost_usd), _price(e)]
        rows.append(f'<tr class="{cls}">' + "".join(
            f'<td class="w">{c}</td>' if j == 1 else f'<td class="l">{c}</td>' if j == 2
            else f'<td class="p">{c}</td>' if j == 12 else f"<td>{c}</td>"
            for j, c in enumerate(cells)) + "</tr>")
    ths = "".join(f'<th class="l">{h}</th>' if j in {1, 2, 12} else f"<th>{h}</th>" for j, h in enumerate(head))
    left_out = "".join(f"<li><b>{_text(label(e))}</b>: {_text(e.excluded_reason)}</li>" for e in cannot)
    return (f"<div class=scroll><table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            + (f"<details><summary>{len(cannot)} entries cannot run this job</summary><ul>{left_out}</ul></details>"
               if cannot else ""))


def _changes(advice: Advice) -> str:
    if not advice.changes:
        return ""
    hw = advice.changes[0].hardware
    rows = "".join(
        f'<tr><td class="l">{_text(c.change)}</td><td>{nbytes(c.memory_per_device_bytes)}</td>'
        f'<td>{nbytes(c.capacity_bytes)}</td><td>{"<span class=yes>fits</span>" if c.fits else "<span class=no>does not fit</span>"}</td>'
        f'<td class="w">{_text(", ".join(f"{k} {nbytes(v)}" for k, v in c.memory_breakdown.items() if k != "total" and v))}</td></tr>'
        for c in advice.changes)
    return (f"<h2>What to change to fit on {_text(hw)}</h2><p class=muted>Memory per device after each change, "
            f"from chipfit's memory model (predict/memory.py).</p><table><thead><tr><th class=l>change</th>"
            f"<th>memory/device</th><th>capacity</th><th>fit</th><th class=l>breakdown</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _rent_buy(advice: Advice, heading: bool = True) -> str:
    if not advice.rent_buy:
        return ""
    parts = []
    for rb in advice.rent_buy:
        costs = rb.job_costs()
        job = ", ".join(f"{k} {usd(v)}" for k, v in costs.items() if v is not None)
        offers = "".join(f"<li>{_text(o.pricing)}: {usd(o.usd_per_device_hour)} per device-hour"
                         + (f", buying pays off after {o.break_even_hours:,.0f} h" if o.break_even_hours else "")
                         + f" <span class=muted>({_text(o.source)})</span></li>" for o in rb.offers)
        parts.append(f"<h3>{_text(rb.name)}{' x' + str(rb.devices) if rb.devices > 1 else ''}</h3>"
                     f"<p>{_text(rb.verdict)}</p><ul>{offers}</ul>"
                     + (f"<p>This job ({rb.job_device_hours:,.1f} device-hours): {_text(job)}.</p>" if job else "")
                     + "<ul class=muted>" + "".join(f"<li>{_text(a)}</li>" for a in rb.assumptions()) + "</ul>")
    return ("<h2>Rent versus buy</h2>" if heading else "") + "".join(parts)


def _topic(assumption: str, names: list[str]) -> str:
    """What an assumption is about: the words before its colon ('efficiency', 'power'), a hardware name in
    them said as 'an entry' (so one topic gathers every device), else 'other'."""
    head, sep, _ = assumption.partition(":")
    if not sep or len(head) > 60:
        return "other"
    for name in names:
        head = head.replace(name, "an entry")
    return head.strip()


def _who(ids: set[str], every: set[str]) -> str:
    return "every entry" if ids >= every else ", ".join(sorted(ids))


def _assumptions(advice: Advice) -> str:
    """The job's assumptions, then each entry's grouped by topic: every distinct sentence once, with the
    hardware it applies to (whatever the device count), 'every entry' where it applies to all."""
    cmp = advice.comparison
    general = [f"PUE {cmp.conditions.pue:g} and grid intensity {cmp.conditions.grid_kg_per_kwh:g} kg CO2/kWh for rented "
               "hardware; cost is device-hours at the cheapest sourced on-demand price",
               "constraints are checked against the central estimate; the low-high range shows the spread",
               *cmp.profile.notes, *advice.notes]
    if cmp.profile.uncounted:
        general.append("operators with no FLOP formula (time counted from bytes only): "
                       + ", ".join(f"{k} x{v}" for k, v in cmp.profile.uncounted.items()))
    topics: dict[str, dict[str, set[str]]] = {}
    names = sorted({n for e in advice.estimates() for n in (e.hardware, e.name) if n}, key=len, reverse=True)
    for e in advice.estimates():
        for a in e.assumptions:
            topics.setdefault(_topic(a, names), {}).setdefault(a, set()).add(e.hardware)
    every = {e.hardware for e in advice.estimates() if not e.excluded_reason}
    parts = []
    for topic, sentences in sorted(topics.items(), key=lambda kv: (kv[0] == "other", kv[0])):
        items = "".join(f"<li>{_text(a)} <span class=muted>({_text(_who(ids, every))})</span></li>"
                        for a, ids in sorted(sentences.items(), key=lambda kv: -len(kv[1])))
        shared = len(sentences) == 1
        parts.append(f"<details{' open' if shared else ''}><summary>{_text(topic)} "
                     f"<span class=muted>({len(sentences)} variant{'s' if len(sentences) > 1 else ''})</span>"
                     f"</summary><ul>{items}</ul></details>")
    prices = sorted({e.cost_source for e in advice.estimates() if e.cost_source})
    return ("<h2>Assumptions</h2><ul>" + "".join(f"<li>{_text(g)}</li>" for g in general) + "</ul>"
            f"<h3>Per entry, by topic</h3>{''.join(parts)}<h3>Price sources</h3><ul>"
            + "".join(f"<li>{_text(p)}</li>" for p in prices) + "</ul>")


# Plots shown above the ranking (the decision); the rest follow it (the detail).
KEY_PLOTS = ("pareto", "memory")


def _figure_html(name: str, fig) -> str:
    head, caption = _CAPTIONS[name]
    return (f"<h2>{_text(head)}</h2><figure><img alt=\"{_text(head)}\" src=\"data:image/png;base64,{_png(fig)}\">"
            f"<figcaption>{_text(caption)}</figcaption></figure>")


def _summary(advice: Advice) -> str:
    """The answer in a few figures: the winner's time, cost and energy, and what else was weighed."""
    w = advice.winner
    items = [("options weighed", f"{len(advice.estimates())} ({len(advice.candidates)} meet the constraints)")]
    if w is not None:
        span = f"{seconds(w.low.get('total_time_s'))} - {seconds(w.high.get('total_time_s'))}"
        items = [("run on", label(w)), ("time to finish", f"{seconds(w.total_time_s)} ({span})"),
                 ("cost", usd(w.cost_usd)), ("energy", kwh(w.energy_kwh)),
                 ("memory per device", nbytes(w.memory_per_device_bytes)), *items]
    return "<dl class=summary>" + "".join(f"<dt>{_text(k)}</dt><dd>{_text(v)}</dd>" for k, v in items) + "</dl>"


def render(data: ReportData, *, title: str | None = None) -> str:
    """The whole report as one HTML string with no external reference: the answer and key plots first,
    then the full ranking, then the detail."""
    advice = data.advice
    figs = _plots.figures(data)
    title = title or f"chipfit report: {advice.comparison.workload.model}"
    why_cls = "why" if advice.winner else "why none"
    sections = [
        f"<h1>{_text(title)}</h1><p class=job>{_text(_job(advice))}</p>",
        f"<dl>{_constraints(advice)}</dl>",
        f'<p class="{why_cls}">{_text(advice.why)}</p>',
        _summary(advice),
        *(_figure_html(name, figs[name]) for name in KEY_PLOTS if name in figs),
        "<h2>Ranking</h2><p class=muted>Entries that meet every constraint first (best first by the objective, "
        "winner highlighted); the others follow with the reason they were ruled out.</p>" + _ranking(advice),
        _changes(advice),
    ]
    for name, fig in figs.items():
        if name in KEY_PLOTS:
            continue
        sections.append(_figure_html(name, fig))
        if name == "rent_buy":
            sections.append(_rent_buy(advice, heading=False))
    if "rent_buy" not in figs:
        sections.append(_rent_buy(advice))
    if "measured" not in figs:
        sections.append("<h2>Measured against predicted</h2><p class=muted>No measured steps with a prediction in "
                        "the results store yet; run <code>chipfit measure MODEL</code> to add some.</p>")
    sections.append(_assumptions(advice))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections.append(f"<p class=muted>Generated by chipfit on {stamp}.</p>")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_text(title)}</title>"
            f"<meta name=viewport content=\"width=device-width,initial-scale=1\"><style>{_CSS}</style></head>"
            f"<body><main>{''.join(sections)}</main></body></html>")


def html(data: ReportData, path, *, title: str | None = None) -> Path:
    """Write the report of `data` (chipfit.api.report) to `path`."""
    text = render(data, title=title)
    out = Path(path)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ChipfitError(f"The report cannot be written to {out} ({exc}); give a writable --html path.") from exc
    return out
