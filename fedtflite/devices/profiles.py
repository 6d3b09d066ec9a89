"""Device profiles: how fast each simulated client computes and communicates.

A profile is fixed per client for the whole run and drawn from the run's seed.
It has three numbers:

- ``compute_factor``: seconds of one ``train`` step on the device divided by
  seconds of the same step on this machine in LiteRT (1 = this machine, 5 = five
  times slower; see :mod:`fedtflite.devices.calibrate`);
- ``download_kbps``, ``upload_kbps``: link bandwidths in kilobits (1000 bits)
  per second (``inf``: the network costs no time).

Sources (the ``devices`` config key, parsed by :func:`parse_devices`):

``"none"`` (default)
    Every client is this machine with a free network: the virtual clock runs on
    compute alone.
``"lognormal"``
    ``compute_factor = exp(N(1.0, 0.6^2))`` (median e ≈ 2.7, mean 3.3, 10-90 %
    range 1.3-5.9): FedScale's ``get_completion_time_lognormal``
    (``fedscale/cloud/internal/client_metadata.py``) draws device speed as
    ``lognormal(1, 0.6)`` and attributes the log-normal to Papaya (Huba et al.,
    MLSys 2022); we keep its shape and replace its assumed 5 ms per sample with
    this model's measured step. Bandwidths: log-normal with sigma = 0.6 (the same
    skew) and medians 20 Mbit/s down, 5 Mbit/s up. These medians are a
    modelling choice, not a fitted trace: 20 Mbit/s is the mean of SelecEval's
    network model (normal, 20 ± 10 Mbit/s), and 4:1 is a typical cellular
    down/up asymmetry. For measured bandwidths give a device file (FedScale's
    MobiPerf-based trace). The three draws are independent.
``"tiers"`` or ``"tiers:high=0.2,mid=0.5,low=0.3"``
    Named phone tiers (:data:`PHONE_TIERS`), assigned in exact shares
    (largest-remainder rounding) to a seeded permutation of the clients. The
    tiers are illustrative: an order of magnitude between flagship and low-end
    compute, as phone AI benchmarks show, not a measured trace.
a file path
    A CSV ``client_id,compute_factor,download_kbps,upload_kbps`` (rows for
    client ids ``0..n-1``), or FedScale's ``client_device_capacity`` pickle
    (recognised by content; read with a restricted unpickler, see
    :mod:`fedtflite.devices.tracefiles`). FedScale's ``computation`` is
    inference milliseconds per sample of *its* benchmark model on each phone
    (FedScale prices a step as 3 * that * batch size); here only the ratios
    between phones are kept: ``compute_factor = computation / median(computation
    over the file)``, so the file's median phone runs this model's step at this
    machine's measured speed. FedScale's single ``communication`` bandwidth is
    used for both directions (its kbit is 1024 bits; ours 1000: 2.4 % apart).
    Client ``c`` gets row ``c mod rows``: clients beyond the file reuse it
    cyclically, as FedScale maps client ``c`` to profile ``c mod rows``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtflite.devices.tracefiles import load_device_file
from fedtflite.errors import ConfigError, invalid_value

__all__ = [
    "LOGNORMAL",
    "PHONE_TIERS",
    "DeviceProfiles",
    "DeviceSpec",
    "LogNormal",
    "Tier",
    "make_profiles",
    "parse_devices",
]

_STREAM = (0xDE1CE, 1)
"""Appended to the seed for the profiles' random stream (4 words: no other
stream of a run, ``[seed, round, phase]`` or ``[seed, round, client]``, has it)."""


@dataclass(frozen=True)
class LogNormal:
    """``exp(N(mu, sigma^2))``; ``median = exp(mu)``."""

    mu: float
    sigma: float


@dataclass(frozen=True)
class _LogNormalDevices:
    compute_factor: LogNormal
    download_kbps: LogNormal
    upload_kbps: LogNormal


LOGNORMAL = _LogNormalDevices(
    compute_factor=LogNormal(1.0, 0.6),
    download_kbps=LogNormal(math.log(20_000.0), 0.6),
    upload_kbps=LogNormal(math.log(5_000.0), 0.6),
)
"""Parameters of ``devices = "lognormal"`` (sources in the module docstring)."""


@dataclass(frozen=True)
class Tier:
    """A class of phones.

    Attributes
    ----------
    compute_factor : float
        Step time relative to this machine.
    download_kbps, upload_kbps : float
        Bandwidths, kbit/s.
    share : float
        Default share of the clients.
    """

    compute_factor: float
    download_kbps: float
    upload_kbps: float
    share: float


PHONE_TIERS: dict[str, Tier] = {
    "high": Tier(1.0, 50_000.0, 20_000.0, 0.25),
    "mid": Tier(3.0, 20_000.0, 5_000.0, 0.5),
    "low": Tier(10.0, 5_000.0, 1_000.0, 0.25),
}
"""The named tiers of ``devices = "tiers"`` (illustrative, see the module docstring)."""

_KINDS = ("none", "lognormal", "tiers")
_EXPECTED = (
    "none, lognormal, tiers, tiers:high=S,mid=S,low=S (shares summing to 1) or "
    "the path of a device CSV / FedScale client_device_capacity file"
)
"""What a ``devices`` value may be (the tail of its error message)."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``devices`` value.

    Attributes
    ----------
    kind : str
        ``none``, ``lognormal``, ``tiers`` or ``file``.
    path : str
        The file (``kind == "file"``).
    shares : tuple of (str, float)
        Tier shares (``kind == "tiers"``), summing to 1.
    """

    kind: str
    path: str = ""
    shares: tuple[tuple[str, float], ...] = ()


def parse_devices(value: str) -> DeviceSpec:
    """Parse the ``devices`` config value (see the module docstring).

    Raises
    ------
    ConfigError
        Not a known source, bad tier shares, or no such file.
    """
    text = value.strip()
    if text in ("none", "lognormal"):
        return DeviceSpec(text)
    if text == "tiers":
        return DeviceSpec("tiers", shares=_default_shares())
    if text.startswith("tiers:"):
        return DeviceSpec("tiers", shares=_parse_shares(value, text[6:]))
    if not text or not Path(text).is_file():
        raise ConfigError(invalid_value("devices", value, _EXPECTED))
    return DeviceSpec("file", path=text)


def _default_shares() -> tuple[tuple[str, float], ...]:
    return tuple((name, tier.share) for name, tier in PHONE_TIERS.items())


def _parse_shares(value: str, body: str) -> tuple[tuple[str, float], ...]:
    shares: dict[str, float] = {}
    for item in body.split(","):
        name, sep, raw = item.partition("=")
        name = name.strip()
        try:
            share = float(raw) if sep else math.nan
        except ValueError:
            share = math.nan
        if name not in PHONE_TIERS or name in shares:
            raise ConfigError(
                invalid_value(
                    "devices",
                    value,
                    f"each of the tiers {', '.join(PHONE_TIERS)} at most once "
                    f"(tier {name!r} {'repeats' if name in shares else 'is unknown'})",
                )
            )
        if not (math.isfinite(share) and share >= 0):
            raise ConfigError(
                invalid_value(
                    "devices",
                    value,
                    f"a number >= 0 as the share of {name!r}, not "
                    f"{raw.strip()!r} (tiers:high=S,mid=S,low=S, shares summing "
                    "to 1)",
                )
            )
        shares[name] = share
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(
            invalid_value(
                "devices", value, f"tier shares summing to 1, not to {total:g}"
            )
        )
    return tuple(shares.items())


@dataclass(frozen=True, eq=False)
class DeviceProfiles:
    """Every client's device, fixed for the run.

    Attributes
    ----------
    source : str
        The ``devices`` value they came from.
    compute_factor : np.ndarray
        float64 ``[num_clients]``, step time relative to this machine (> 0).
    download_kbps, upload_kbps : np.ndarray
        float64 ``[num_clients]``, kbit/s (> 0; ``inf`` = free network).
    label : tuple of str
        Per client, its tier (``tiers``) or file row (``row 3``); ``""`` for
        the other sources.
    """

    source: str
    compute_factor: np.ndarray
    download_kbps: np.ndarray
    upload_kbps: np.ndarray
    label: tuple[str, ...]

    @property
    def num_clients(self) -> int:
        """Clients described."""
        return len(self.compute_factor)


def make_profiles(spec: DeviceSpec, num_clients: int, seed: int) -> DeviceProfiles:
    """Every client's profile for ``spec``, drawn from ``seed``.

    For ``lognormal`` client ``c``'s draws do not depend on ``num_clients``
    (one row of three normal variates per client).

    Raises
    ------
    DeviceFileError
        A device file that cannot be read (``kind == "file"``).
    """
    n = num_clients
    source = spec.path if spec.kind == "file" else spec.kind
    if spec.kind == "none":
        inf = np.full(n, np.inf)
        return DeviceProfiles(source, np.ones(n), inf, inf.copy(), ("",) * n)
    rng = np.random.default_rng([seed, *_STREAM])
    if spec.kind == "lognormal":
        z = rng.standard_normal((n, 3))
        p = LOGNORMAL
        cols = [p.compute_factor, p.download_kbps, p.upload_kbps]
        factor, down, up = (
            np.exp(d.mu + d.sigma * z[:, k]) for k, d in enumerate(cols)
        )
        return DeviceProfiles(source, factor, down, up, label=("",) * n)
    if spec.kind == "tiers":
        names = [name for name, _ in spec.shares]
        counts = _exact_counts([share for _, share in spec.shares], n)
        tier_of = rng.permutation(np.repeat(np.arange(len(names)), counts))
        tiers = [PHONE_TIERS[names[k]] for k in tier_of.tolist()]
        return DeviceProfiles(
            f"tiers:{','.join(f'{a}={b:g}' for a, b in spec.shares)}",
            np.array([t.compute_factor for t in tiers]),
            np.array([t.download_kbps for t in tiers]),
            np.array([t.upload_kbps for t in tiers]),
            label=tuple(names[k] for k in tier_of.tolist()),
        )
    if spec.kind == "file":
        table = load_device_file(spec.path)
        rows = np.arange(n) % table.rows
        if table.compute_factor is not None:
            factor = table.compute_factor
        else:
            assert table.ms_per_sample is not None
            factor = table.ms_per_sample / float(np.median(table.ms_per_sample))
        return DeviceProfiles(
            source,
            factor[rows],
            table.download_kbps[rows],
            table.upload_kbps[rows],
            label=tuple(f"row {r}" for r in rows.tolist()),
        )
    raise ConfigError(
        invalid_value("devices kind", spec.kind, f"one of {', '.join(_KINDS)}, file")
    )


def _exact_counts(shares: list[float], n: int) -> np.ndarray:
    """``n`` split by ``shares`` with the largest-remainder method (sum is ``n``)."""
    exact = np.asarray(shares, dtype=np.float64) * n
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    # ties go to the earlier tier: a stable sort on the negated remainder
    order = np.argsort(-remainder, kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts
