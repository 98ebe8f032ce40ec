"""The use cases: each takes a Job (what the user asks), a catalog and a results store, and
returns data with `to_dict()`. The CLI, the Python API (chipfit.compare, ...) and the dashboard
are shells over these; report/ and web/ draw what they return.

    from chipfit.api import Job, compare
    result = compare(Job(model="resnet50", batch=256), catalog, store)
"""

from __future__ import annotations

from .advise import advise
from .compare import compare, serve
from .job import Constraints, Job, parse_duration
from .measure import measure, validate
from .plan import PlanResult, plan
from .report import ReportData, report

__all__ = ["Constraints", "Job", "PlanResult", "ReportData", "advise", "compare", "measure", "parse_duration",
           "plan", "report", "serve", "validate"]
