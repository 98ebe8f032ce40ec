"""A corpus nobody wrote by hand: valid ONNX, Caffe and config.json files with random bytes changed,
inserted or cut (and hostile tokens: -1, 0, 1e30, 3.5, nan, an int beyond int64, stray brackets). Every
mutant must give exit status 0 or 1 and, on 1, one sentence that no check missed (no traceback, no
"this is a bug"). Seeds are fixed, so a failure reproduces."""

import contextlib
import io
import random

import pytest

from chipfit import cli

from . import test_bad_inputs as corpus  # fixtures shared with the hand-written corpus

TOKENS = [b"-1", b"0", b"1e30", b"3.5", b"nan", b"99999999999999999999", b"{", b"}", b"[", b'"', b":"]
MUTANTS = 60  # per format


def seeds(tmp):
    pool = corpus.conv() + ('layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { kernel_size: 2 '
                            'stride: 2 } }\nlayer { name: "f" type: "InnerProduct" bottom: "p" top: "f" '
                            'inner_product_param { num_output: 10 } }\n')
    return {"m.onnx": corpus.onnx_model(tmp / "seed.onnx").read_bytes(),
            "net.prototxt": corpus.prototxt(tmp, pool).read_bytes(),
            "config.json": corpus.hf_config(tmp, {}).read_bytes()}


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i, op = rng.randrange(len(b) or 1), rng.random()
        if op < 0.4 and b:
            b[i] = rng.randrange(256)
        elif op < 0.6:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op < 0.8 and b:
            del b[i:i + rng.randint(1, 8)]
        else:
            b[i:i] = rng.choice(TOKENS)
    return bytes(b)


@pytest.mark.parametrize("name", ["m.onnx", "net.prototxt", "config.json"])
def test_mutated_files_get_a_sentence_not_a_traceback(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CHIPFIT_DB", str(tmp_path / "default.sqlite"))
    monkeypatch.delenv("CHIPFIT_DEBUG", raising=False)
    rng = random.Random(name)
    seed = seeds(tmp_path)[name]
    path = tmp_path / name
    refused = 0
    for n in range(MUTANTS):
        path.write_bytes(mutate(seed, rng))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(["profile", str(path), "--infer"])
        text = err.getvalue()
        assert status in (0, 1), (n, status, text)
        assert "Traceback" not in text and "this is a bug" not in text, (n, text)
        if status == 1:
            refused += 1
            assert text.startswith("chipfit: ") and name in text, (n, text)
    assert refused > MUTANTS // 4  # the mutations do break files
