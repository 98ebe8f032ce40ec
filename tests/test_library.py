"""The model library: every entry's parameter count against its published figure, the resolver, the
list command and the errors for bad library files."""

from __future__ import annotations

import json

import pytest

from chipfit.cli import main
from chipfit.errors import ChipfitError
from chipfit.workload import library, zoo
from chipfit.workload.library import list_models, load_file, models, parse_count, resolve_model

ENTRIES = models()


def test_the_library_holds_the_families_asked_for():
    assert len(ENTRIES) >= 60
    families = {e.family for e in ENTRIES}
    assert {"gpt2", "gpt3", "bert", "t5", "whisper", "llama", "llama4", "mistral", "deepseek", "qwen2.5", "qwen3",
            "gemma", "phi", "falcon", "olmo", "pythia", "mpt", "bloom", "smollm", "palm", "vision"} <= families
    kinds = {e.kind for e in ENTRIES}
    assert kinds == set(library.KINDS)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_parameter_count_within_one_percent_of_the_published_figure(entry):
    assert entry.source and entry.params_source
    assert abs(entry.params / entry.published_params - 1) <= 0.01, (entry.params, entry.published_params)


MOE = [e for e in ENTRIES if e.published_active_params]


@pytest.mark.parametrize("entry", MOE, ids=[e.name for e in MOE])
def test_active_parameters_within_five_percent_of_the_published_figure(entry):
    """Publishers round active counts and count them with the input embedding table (Mistral) or without it
    (DeepSeek): either reading is within 5%."""
    spec = entry.spec
    with_table = entry.active_params
    without = with_table - spec.vocab * spec.hidden
    assert entry.active_params_source
    assert min(abs(n / entry.published_active_params - 1) for n in (with_table, without)) <= 0.05


def test_every_zoo_model_is_a_library_entry_with_the_zoo_count():
    for name, z in zoo.ZOO.items():
        entry = resolve_model(name)
        assert entry.zoo == name and entry.published_params == z.published_params


def test_hub_ids_and_free_text_resolve_case_insensitively():
    assert resolve_model("meta-llama/Llama-3.1-70B").name == "llama-3.1-70b"
    assert resolve_model("META-LLAMA/LLAMA-3.1-70B").name == "llama-3.1-70b"
    assert resolve_model("https://huggingface.co/deepseek-ai/DeepSeek-V3").name == "deepseek-v3"
    assert resolve_model("Llama 3.1 405B").name == "llama-3.1-405b"
    assert resolve_model("Mixtral 8x7B").name == "mixtral-8x7b"
    assert resolve_model("vit-b-16").name == "vit_b_16"


def test_an_unknown_name_gets_the_closest_names():
    with pytest.raises(ChipfitError, match=r"Unknown model 'llama-3.1-7b'\. Did you mean llama-3.1-70b, llama-3.1-8b"):
        resolve_model("llama-3.1-7b")
    with pytest.raises(ChipfitError, match="`chipfit models` lists the"):
        resolve_model("no-such-model")


def test_filters_by_family_kind_and_size():
    big = list_models(family="llama", min_params=parse_count("60B"))
    assert [e.name for e in big] == ["llama-65b", "llama-2-70b", "llama-3-70b", "llama-3.1-70b", "llama-3.1-405b",
                                     "llama-3.3-70b"]
    assert {e.name for e in list_models(kind="encoder-decoder")} >= {"t5-small", "whisper-large-v3", "flan-t5-xxl"}
    assert all(e.params <= 1e9 for e in list_models(max_params=1e9))
    with pytest.raises(ChipfitError, match="No model kind 'dense'"):
        list_models(kind="dense")
    assert parse_count("350M") == 350e6 and parse_count("1.5t") == 1.5e12 and parse_count("7e9") == 7e9
    with pytest.raises(ChipfitError, match="Parameter count 'lots' is not understood"):
        parse_count("lots")


def test_models_command_lists_as_json(capsys):
    assert main(["models", "--kind", "moe", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ds = next(r for r in rows if r["name"] == "deepseek-v3")
    assert ds["params"] == 671_026_404_352 and ds["active_params"] < ds["params"] / 10
    assert all(r["kind"] == "moe" for r in rows)
    assert main(["models", "--family", "lama"]) == 1
    assert "No model family 'lama'. Did you mean llama" in capsys.readouterr().err


@pytest.mark.parametrize("body, message", [
    ('family = "x"\n[[models]]\nname = "m"\nsource = "s"\nparams_source = "p"\narch = {}\n',
     "file bad.toml, entry 'm', lacks params; add params = ... with its source"),
    ('family = "x"\nkind = "decoder"\n[[models]]\nname = "m"\nsource = "s"\nparams = 5\nparams_source = "p"\n'
     'arch = { layers = 1, hidden = 8, heads = 2, kv_heads = 2, ffn = 8, vocab = 4, hiden = 3 }\n',
     "has unknown arch field 'hiden' Did you mean hidden"),
    ('family = "x"\nkind = "decoder"\n[[models]]\nname = "m"\nsource = "s"\nparams = 5\nparams_source = "p"\n'
     'arch = { layers = 1, hidden = 8, heads = 3, kv_heads = 3, ffn = 8, vocab = 4 }\n',
     "has a bad arch: Spec heads=3 does not divide hidden=8"),
    ('family = "x"\nkind = "dense"\n[[models]]\nname = "m"\nsource = "s"\nparams = 5\nparams_source = "p"\nzoo = "z"\n',
     "has kind 'dense'; use one of decoder, encoder"),
    ('family = "x"\n[[models]\n', "file bad.toml is not valid TOML"),
])
def test_a_bad_library_file_is_one_sentence_naming_file_and_entry(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ChipfitError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_file(path)
