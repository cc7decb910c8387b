"""Sizes and Ray resources as people read them (CLI, admin panel).

Pure functions, no imports beyond the standard library: any process may use them.
"""

from __future__ import annotations

from collections.abc import Mapping

BYTE_RESOURCES = ("memory", "object_store_memory")


def fmt_bytes(amount: float) -> str:
    """``1536`` → ``1.5 KiB``; binary units up to TiB, one decimal above bytes."""
    value = float(amount)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def fmt_amount(name: str, amount: float) -> str:
    """One Ray resource's amount: bytes for the memory kinds, a plain number otherwise."""
    return fmt_bytes(amount) if name in BYTE_RESOURCES else f"{amount:g}"


def _shown(resources: Mapping[str, float]) -> list[str]:
    """Resource names worth showing, CPU and GPU first; Ray's own per-node markers
    (``node:…``, ``accelerator_type:…``) left out."""
    names = [n for n in resources if not n.startswith(("node:", "accelerator_type:"))]
    return sorted(names, key=lambda name: (name not in ("CPU", "GPU"), name))


def resource_text(resources: Mapping[str, float]) -> str:
    """``CPU 4, memory 7.5 GiB, node2 1``."""
    return ", ".join(f"{name} {fmt_amount(name, resources[name])}" for name in _shown(resources))


def free_text(total: Mapping[str, float], available: Mapping[str, float]) -> str:
    """``CPU 1.5 of 2 free, memory 6.0 GiB of 7.5 GiB free``."""
    return ", ".join(
        f"{name} {fmt_amount(name, available.get(name, 0.0))} of {fmt_amount(name, total[name])} free"
        for name in _shown(total)
    )
