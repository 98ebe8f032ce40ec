"""The dated cloud prices of the instance families people rent: load, resolve, rank, rent versus buy.

Every figure below is read from the source named in the catalog file (docs/catalog.md, "Cloud prices").
"""

import json

import pytest

from chipfit.catalog import load_catalog, resolve_hardware
from chipfit.cli import main
from chipfit.rentbuy import rent_offers

# id: (hardware, devices, USD per hour, price date, region, source key)
INSTANCES = {
    "aws-g5.xlarge": ("nvidia-a10g", 1, 1.006, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "aws-g5.48xlarge": ("nvidia-a10g", 8, 16.288, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "aws-g6.xlarge": ("nvidia-l4", 1, 0.8048, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "aws-g6.48xlarge": ("nvidia-l4", 8, 13.3504, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "aws-p5en.48xlarge": ("nvidia-h200-sxm-141gb", 8, 63.296, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "aws-trn1.32xlarge": ("aws-trainium", 16, 21.5, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "aws-trn2.48xlarge": ("aws-trainium2", 16, 35.76, "2025-11-30", "us-east-2", "vantage-aws-gpu-2025-11"),
    "aws-inf2.xlarge": ("aws-inferentia2", 1, 0.7582, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "aws-inf2.48xlarge": ("aws-inferentia2", 12, 12.98127, "2026-01-21", "us-east-1", "vantage-aws-gpu-2026-01"),
    "gcp-a3-highgpu-1g": ("nvidia-h100-sxm5-80gb", 1, 11.0612499878219, "2026-07-30", "us-central1",
                          "cyclenerd-pricing-2026-07"),
    "gcp-a3-megagpu-8g": ("nvidia-h100-sxm5-80gb", 8, 92.9375881512329, "2026-07-30", "us-east4",
                          "cyclenerd-pricing-2026-07"),
    "gcp-ct5lp-hightpu-1t": ("google-tpu-v5e", 1, 1.20, "2024-12-04", "", "deepmind-gencast-tpu"),
    "gcp-ct5lp-hightpu-4t": ("google-tpu-v5e", 4, 4.80, "2024-12-04", "", "deepmind-gencast-tpu"),
    "gcp-ct5lp-hightpu-8t": ("google-tpu-v5e", 8, 9.60, "2024-12-04", "", "deepmind-gencast-tpu"),
    "gcp-tpu-v5p-8": ("google-tpu-v5p", 4, 20.80, "2024-12-04", "", "deepmind-gencast-tpu"),
}
# The citation each source key expands to, as far as the test needs it: where and when it was read.
CITED = {
    "vantage-aws-gpu-2026-01": ("'Last updated: 2026-01-21'", "https://github.com/tsaol/aws-gpu/tree/7412fd2"),
    "vantage-aws-gpu-2025-11": ("'Last updated: 2025-11-30'", "https://github.com/tsaol/aws-gpu/blob/871b0be"),
    "cyclenerd-pricing-2026-07": ("'generated: Thu Jul 30 06:13:17 2026'", "pricing.yml"),
    "deepmind-gencast-tpu": ("2024-12-04", "https://github.com/google-deepmind/graphcast/blob/bf9785f"),
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.mark.parametrize("inst_id", INSTANCES)
def test_each_instance_loads_with_its_dated_sourced_price(catalog, inst_id):
    hw, count, usd, date, region, key = INSTANCES[inst_id]
    inst = next(i for i in catalog.instances if i.id == inst_id)
    assert (inst.hardware, inst.count, inst.price_usd_per_hour.value, inst.price_date, inst.region) == \
        (hw, count, usd, date, region)
    assert inst.pricing == "on-demand"
    said, where = CITED[key]
    assert said in inst.price_usd_per_hour.source and where in inst.price_usd_per_hour.source


@pytest.mark.parametrize("text, hw_id, devices", [
    ("p5en.48xlarge", "nvidia-h200-sxm-141gb", 8),
    ("2x p5en.48xlarge", "nvidia-h200-sxm-141gb", 16),
    ("g5.48xlarge", "nvidia-a10g", 8),
    ("g6.xlarge", "nvidia-l4", 1),
    ("trn1.32xlarge", "aws-trainium", 16),
    ("trn2.48xlarge", "aws-trainium2", 16),
    ("inf2.48xlarge", "aws-inferentia2", 12),
    ("a3-highgpu-8g", "nvidia-h100-sxm5-80gb", 8),
    ("a3-megagpu-8g", "nvidia-h100-sxm5-80gb", 8),
    ("a3-highgpu-1g", "nvidia-h100-sxm5-80gb", 1),
    ("ct5lp-hightpu-4t", "google-tpu-v5e", 4),
    ("TPU v5p-8", "google-tpu-v5p", 4),
    # Azure ND H200 v5 has no dated price yet: the name still finds the GPU, without a count
    ("ND H200 v5", "nvidia-h200-sxm-141gb", None),
])
def test_instances_resolve_from_the_names_users_write(catalog, text, hw_id, devices):
    r = resolve_hardware(text, catalog)
    assert (r.hw_id, r.devices) == (hw_id, devices)


def test_cheapest_device_hour_uses_the_new_prices(catalog):
    per_device = {hw: catalog.cheapest_instance(hw).price_per_device_hour for hw in (
        "nvidia-l4", "nvidia-a10g", "nvidia-h200-sxm-141gb", "aws-trainium", "aws-trainium2", "aws-inferentia2",
        "google-tpu-v5e", "google-tpu-v5p")}
    assert per_device == pytest.approx({
        "nvidia-l4": 0.8048,                       # g6.xlarge beats g6.48xlarge 13.3504 / 8 = 1.6688
        "nvidia-a10g": 1.006,                      # g5.xlarge beats g5.48xlarge 16.288 / 8 = 2.036
        "nvidia-h200-sxm-141gb": 63.296 / 8,
        "aws-trainium": 21.5 / 16,
        "aws-trainium2": 35.76 / 16,
        "aws-inferentia2": 0.7582,                 # inf2.xlarge beats inf2.48xlarge 12.98127 / 12
        "google-tpu-v5e": 1.20,
        "google-tpu-v5p": 5.20,
    }, rel=1e-12)
    # H100: p5.48xlarge (55.04 / 8 = 6.88) stays cheaper than a3-highgpu-1g 11.06 and a3-megagpu-8g 92.94 / 8
    assert catalog.cheapest_instance("nvidia-h100-sxm5-80gb").id == "aws-p5.48xlarge"


def test_rent_offers_name_the_instance_and_its_date(catalog):
    l4 = rent_offers(catalog.get("nvidia-l4"), catalog)
    assert [(o.pricing, o.usd_per_device_hour) for o in l4] == [("on-demand", 0.8048)]
    assert l4[0].source.startswith("aws g6.xlarge, 2026-01-21 (")
    # the lowest H100 spot rate is now a3-megagpu-8g's: 23.2752366027397 USD for 8 GPUs
    spot = next(o for o in rent_offers(catalog.get("nvidia-h100-sxm5-80gb"), catalog) if o.pricing == "spot")
    assert spot.usd_per_device_hour == pytest.approx(23.2752366027397 / 8, rel=1e-12)
    assert spot.source.startswith("gcp a3-megagpu-8g spot, 2026-07-30 (")


def test_advise_ranks_cloud_asics_by_these_prices(capsys):
    code = main(["advise", "resnet18", "--infer", "--devices-list", "1", "--class", "asic", "--where", "cloud",
                 "--objective", "cost", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    rate = {"aws-inferentia2": 0.7582, "aws-trainium": 21.5 / 16, "aws-trainium2": 35.76 / 16}
    ranked = [(c["hardware"], c["cost_usd"], c["device_hours"]) for c in out["candidates"]]
    assert [hw for hw, _, _ in ranked] == ["aws-inferentia2", "aws-trainium", "aws-trainium2"]
    for hw, cost, hours in ranked:
        assert cost == pytest.approx(hours * rate[hw], rel=1e-9)
    assert out["winner"]["cost_source"].startswith("aws inf2.xlarge at $0.7582/h for 1 device(s), on-demand "
                                                   "us-east-1 price of 2026-01-21 (")
