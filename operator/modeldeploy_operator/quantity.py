"""Kubernetes resource quantities ("500m", "1Gi", 2) as numbers."""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]i?|)$")


def parse_quantity(value: int | float | str) -> float:
    """'500m' -> 0.5, '1Gi' -> 1073741824.0; raises ValueError for anything else."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value.strip())
    if not match or (match.group(2) not in _SUFFIX and match.group(2)[:1] not in "eE"):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = match.groups()
    if suffix[:1] in ("e", "E"):
        return float(Decimal(number) * (Decimal(10) ** int(suffix[1:])))
    return float(Decimal(number) * _SUFFIX[suffix])
