"""Rent versus buy: owned hardware (purchase price plus electricity) against cloud hourly prices.

Per device and per hour of use:
    owned(h)  = purchase_usd + h * TDP * PUE * usd_per_kwh / 1000
    rented(h) = h * usd_per_device_hour
and buying pays off after purchase_usd / (usd_per_device_hour - electricity_usd_per_hour) hours.
Pure: data in, data out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .catalog import Catalog, Hardware
from .catalog.loader import PRICINGS
from .errors import ChipfitError
from .predict import energy as _energy
from .units import usd

# A Julian year, 365.25 days.
HOURS_PER_YEAR = 8766.0
# Owned machines sit in ordinary server rooms: the Uptime Institute 2023 global survey's average
# PUE of 1.58 (the cloud figure chipfit uses elsewhere is Google's fleet-wide 1.10).
OWNED_PUE = 1.58


@dataclass
class RentOffer:
    """One way to rent the device: its kind of price, per device-hour, and where it comes from."""

    pricing: str  # on-demand, spot, capacity-block, committed-1y, committed-3y
    usd_per_device_hour: float
    source: str
    break_even_hours: float | None = None  # hours of use per device after which buying is cheaper; None: never

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RentBuy:
    """The rent-or-buy figures for `devices` x one hardware entry over an owned lifetime."""

    hardware: str
    name: str
    devices: int
    years: float
    utilisation: float
    pue: float
    electricity_usd_per_kwh: float
    purchase_usd: float | None  # per device
    purchase_source: str
    electricity_usd_per_hour: float | None  # per device, while busy
    offers: list[RentOffer]
    job_device_hours: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def lifetime_hours(self) -> float:
        """Hours of use one owned device gives over its life."""
        return self.years * HOURS_PER_YEAR * self.utilisation

    def owned_usd(self, hours: float) -> float | None:
        """Cost of owning one device that has been used for `hours`."""
        if self.purchase_usd is None or self.electricity_usd_per_hour is None:
            return None
        return self.purchase_usd + hours * self.electricity_usd_per_hour

    def cheapest_offer(self) -> RentOffer | None:
        return min(self.offers, key=lambda o: o.usd_per_device_hour, default=None)

    def curve(self, points: int = 41) -> list[tuple[float, float | None, float | None]]:
        """(hours of use per device, cumulative rent at the cheapest offer, cumulative cost owned)."""
        offer = self.cheapest_offer()
        out = []
        for i in range(points):
            h = self.lifetime_hours * i / (points - 1)
            out.append((h, None if offer is None else h * offer.usd_per_device_hour, self.owned_usd(h)))
        return out

    def job_costs(self) -> dict[str, float | None]:
        """The job's cost rented at each offer, and owned (whole purchase plus its electricity)."""
        if self.job_device_hours is None:
            return {}
        out: dict[str, float | None] = {o.pricing: o.usd_per_device_hour * self.job_device_hours for o in self.offers}
        if self.purchase_usd is not None and self.electricity_usd_per_hour is not None:
            out["owned"] = self.purchase_usd * self.devices + self.electricity_usd_per_hour * self.job_device_hours
        else:
            out["owned"] = None
        return out

    @property
    def verdict(self) -> str:
        """One sentence: which is cheaper over the lifetime, and from how many hours of use."""
        offer = self.cheapest_offer()
        if self.purchase_usd is None:
            return f"The catalog has no sourced purchase price for {self.name}, so only renting can be costed."
        if self.electricity_usd_per_hour is None:
            return f"The catalog has no sourced TDP for {self.name}, so the electricity of owning it cannot be costed."
        if offer is None:
            return (f"The catalog lists no cloud price for {self.name}; owning costs {usd(self.purchase_usd)} per device "
                    f"plus {usd(self.electricity_usd_per_hour)} of electricity per hour of use.")
        rate = f"{offer.pricing} rental at {usd(offer.usd_per_device_hour)} per device-hour"
        if offer.break_even_hours is None:
            return f"Buying never pays off: {rate} costs less than the electricity of an owned {self.name}."
        if offer.break_even_hours <= self.lifetime_hours:
            saved = offer.usd_per_device_hour * self.lifetime_hours - self.owned_usd(self.lifetime_hours)
            return (f"Buying pays off after {offer.break_even_hours:,.0f} hours of use per device against {rate}; "
                    f"over {self.years:g} years at {self.utilisation:.0%} utilisation it saves {usd(saved)} per device.")
        return (f"Renting stays cheaper: against {rate}, buying pays off only after {offer.break_even_hours:,.0f} hours "
                f"of use per device, more than the {self.lifetime_hours:,.0f} that {self.years:g} years at "
                f"{self.utilisation:.0%} utilisation give.")

    def assumptions(self) -> list[str]:
        return [
            f"owned: purchase price of the device alone ({self.purchase_source or 'none sourced'}); host, network, "
            "space and staff not included",
            f"electricity: TDP while busy, PUE {self.pue:g}, {usd(self.electricity_usd_per_kwh)}/kWh; idle power not included",
            f"lifetime {self.years:g} years at {self.utilisation:.0%} utilisation ({self.lifetime_hours:,.0f} hours of use per device)",
            *self.notes,
        ]

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware, "name": self.name, "devices": self.devices, "years": self.years,
            "utilisation": self.utilisation, "pue": self.pue, "electricity_usd_per_kwh": self.electricity_usd_per_kwh,
            "purchase_usd": self.purchase_usd, "purchase_source": self.purchase_source,
            "electricity_usd_per_hour": self.electricity_usd_per_hour, "lifetime_hours": self.lifetime_hours,
            "offers": [o.to_dict() for o in self.offers], "job_device_hours": self.job_device_hours,
            "job_costs_usd": self.job_costs(), "verdict": self.verdict, "assumptions": self.assumptions(),
            "curve": [list(p) for p in self.curve()],
        }


def check_terms(years: float, electricity_usd_per_kwh: float, utilisation: float, pue: float) -> None:
    """Raise ChipfitError for a lifetime, price, utilisation or PUE no owner could have."""
    if years <= 0:
        raise ChipfitError(f"Lifetime {years:g} years is not positive; give --years above 0.")
    if electricity_usd_per_kwh < 0:
        raise ChipfitError(f"Electricity price {electricity_usd_per_kwh:g} USD/kWh is negative; give --electricity 0 or more.")
    if not 0 < utilisation <= 1:
        raise ChipfitError(f"Utilisation {utilisation:g} is not a fraction of the time; give --utilisation above 0 and at most 1.")
    if pue < 1:
        raise ChipfitError(f"PUE {pue:g} is below 1, which no machine room reaches; give --pue 1.0 or more.")


def rent_offers(hw: Hardware, catalog: Catalog) -> list[RentOffer]:
    """The cheapest sourced price per device-hour of each kind, spot included where listed."""
    offers = []
    for kind in PRICINGS:
        inst = catalog.cheapest_instance(hw.id, pricing=kind)
        if inst is not None:
            offers.append(RentOffer(kind, inst.price_per_device_hour,
                                    f"{inst.provider} {inst.name}, {inst.price_date} ({inst.price_usd_per_hour.source})"))
    spot = [(i.spot_usd_per_hour.value / i.count, i) for i in catalog.instances_for(hw.id) if i.spot_usd_per_hour]
    if spot:
        rate, inst = min(spot, key=lambda s: s[0])
        listed = next((o for o in offers if o.pricing == "spot"), None)
        if listed is None or rate < listed.usd_per_device_hour:
            offers = [o for o in offers if o.pricing != "spot"]
            offers.append(RentOffer("spot", rate, f"{inst.provider} {inst.name} spot, {inst.price_date} "
                                                  f"({inst.spot_usd_per_hour.source})"))
    return offers


def rent_vs_buy(
    hw: Hardware,
    catalog: Catalog,
    *,
    years: float,
    electricity_usd_per_kwh: float,
    utilisation: float = 1.0,
    pue: float = OWNED_PUE,
    devices: int = 1,
    job_device_hours: float | None = None,
) -> RentBuy:
    """Owning `devices` x `hw` for `years` against renting them at every sourced price."""
    check_terms(years, electricity_usd_per_kwh, utilisation, pue)
    purchase = hw.price_usd.value if hw.price_usd else None
    source = ""
    if hw.price_usd:
        source = hw.price_usd.source + (f"; {hw.price_usd.note}" if hw.price_usd.note else "")
    elec = None
    if hw.tdp_watts:
        elec = _energy.energy_kwh(1.0, hw.tdp_watts.value, pue) * electricity_usd_per_kwh
    offers = rent_offers(hw, catalog)
    for o in offers:
        if purchase is not None and elec is not None and o.usd_per_device_hour > elec:
            o.break_even_hours = purchase / (o.usd_per_device_hour - elec)
    notes = []
    if purchase is None:
        notes.append(f"no sourced purchase price for {hw.name}")
    if elec is None:
        notes.append(f"no sourced TDP for {hw.name}: electricity of owning it unknown")
    return RentBuy(hardware=hw.id, name=hw.name, devices=devices, years=years, utilisation=utilisation, pue=pue,
                   electricity_usd_per_kwh=electricity_usd_per_kwh, purchase_usd=purchase, purchase_source=source,
                   electricity_usd_per_hour=elec, offers=offers, job_device_hours=job_device_hours, notes=notes)
