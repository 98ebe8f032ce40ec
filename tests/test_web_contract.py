"""The API does what its OpenAPI document says: schemathesis, in-process, a bounded run.

Every operation gets up to EXAMPLES generated requests; no answer may be a 5xx, and every answer must
match the documented status codes, content types and body schemas (ErrorBody for every refusal).
One check is left out: positive_data_acceptance, which expects every schema-valid body to succeed,
while a schema cannot say which model names exist or that model and spec exclude each other (those
are the documented 400 answers).
"""

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("httpx")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from chipfit.web.app import create_app  # noqa: E402

EXAMPLES = 100  # per operation; 7 operations, about 700 requests, well under a minute


def _no_trace(*args, **kwargs):
    """Traces are the worker's business (test_web_hostile); here a schema-valid zoo name is refused fast."""
    from chipfit.errors import ChipfitError

    raise ChipfitError("Profiling is left out of the contract run.")


APP = create_app(db_path=Path(tempfile.mkdtemp(prefix="chipfit-contract-")) / "results.sqlite")
APP.state.board._trace = _no_trace
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_keeps_its_contract(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def test_every_refusal_has_the_one_error_shape():
    doc = APP.openapi()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorBody", (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    body = doc["components"]["schemas"]["CompareRequest"]["properties"]
    # precision and mode may be left out: the Job's default rules apply (issue 16).
    assert body["precision"]["anyOf"][0]["enum"] == ["fp32", "tf32", "bf16", "fp16", "fp8", "int8"]
    assert "gpu" in body["class"]["anyOf"][0]["enum"]
    assert "pytorch" in body["framework"]["anyOf"][0]["enum"]
    assert body["mode"]["anyOf"][0]["enum"] == ["train", "infer"]
