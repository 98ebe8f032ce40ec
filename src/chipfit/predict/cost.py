"""What a job costs to rent: device-hours at the cheapest sourced on-demand price."""

from __future__ import annotations

from ..catalog.schema import Instance


def rental_cost_usd(device_hours: float, instance: Instance) -> float:
    """Device-hours times the instance's on-demand price per device-hour."""
    return device_hours * instance.price_per_device_hour


def price_source(instance: Instance) -> str:
    return (
        f"{instance.provider} {instance.name} at ${instance.price_usd_per_hour.value:g}/h for "
        f"{instance.count} device(s), on-demand {instance.region or ''} price of {instance.price_date} "
        f"({instance.price_usd_per_hour.source})"
    ).replace("  ", " ")
