"""Device profiles: parsing ``devices``, and each source's numbers by hand."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from fedtflite.devices import (
    LOGNORMAL,
    PHONE_TIERS,
    DeviceSpec,
    make_profiles,
    parse_devices,
)
from fedtflite.errors import ConfigError, DeviceFileError


def test_parse_keywords(tmp_path: Path) -> None:
    assert parse_devices("none") == DeviceSpec("none")
    assert parse_devices(" lognormal ") == DeviceSpec("lognormal")
    assert parse_devices("tiers") == DeviceSpec(
        "tiers", shares=(("high", 0.25), ("mid", 0.5), ("low", 0.25))
    )
    assert parse_devices("tiers:low=0.9,high=0.1") == DeviceSpec(
        "tiers", shares=(("low", 0.9), ("high", 0.1))
    )
    path = tmp_path / "client_device_capacity"
    path.write_bytes(b"")
    assert parse_devices(str(path)) == DeviceSpec("file", path=str(path))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("normal", "devices = 'normal' is not valid: expected none, lognormal, t"),
        ("", "devices = '' is not valid: expected none"),
        ("tiers:ultra=1", "expected each of the tiers high, mid, low at most once"),
        ("tiers:ultra=1", "at most once (tier 'ultra' is unknown)"),
        ("tiers:high=0.5,high=0.5", "at most once (tier 'high' repeats)"),
        (
            "tiers:high=x,low=1",
            "expected a number >= 0 as the share of 'high', not 'x'",
        ),
        ("tiers:high=-0.5,low=1.5", "as the share of 'high', not '-0.5'"),
        ("tiers:high=0.5,low=0.4", "expected tier shares summing to 1, not to 0.9"),
        ("tiers:high", "as the share of 'high', not ''"),
        ("/no/such/devices.csv", "is not valid: expected none, lognormal"),
    ],
)
def test_parse_errors_name_the_key(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_devices(value)
    assert message in str(e.value)
    assert str(e.value).startswith(f"devices = {value!r} is not valid: ")


def test_none_is_this_machine_on_a_free_network() -> None:
    p = make_profiles(DeviceSpec("none"), 4, seed=0)
    np.testing.assert_array_equal(p.compute_factor, np.ones(4))
    assert np.isinf(p.download_kbps).all() and np.isinf(p.upload_kbps).all()
    assert p.num_clients == 4 and p.source == "none"


def test_lognormal_is_seeded_and_per_client() -> None:
    spec = DeviceSpec("lognormal")
    a = make_profiles(spec, 50, seed=3)
    np.testing.assert_array_equal(
        a.compute_factor, make_profiles(spec, 50, 3).compute_factor
    )
    # client c's device does not depend on how many clients there are
    b = make_profiles(spec, 5, seed=3)
    for name in ("compute_factor", "download_kbps", "upload_kbps"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name)[:5])
    assert not np.array_equal(
        make_profiles(spec, 50, 4).compute_factor, a.compute_factor
    )


def test_lognormal_has_the_documented_parameters() -> None:
    # 40k clients: the sample median of exp(N(mu, s^2)) is exp(mu) within ~1 %
    # (standard error of a normal's median: 1.25 s / sqrt(n) = 0.004 in log).
    p = make_profiles(DeviceSpec("lognormal"), 40_000, seed=0)
    cases = [
        (p.compute_factor, LOGNORMAL.compute_factor),
        (p.download_kbps, LOGNORMAL.download_kbps),
        (p.upload_kbps, LOGNORMAL.upload_kbps),
    ]
    for draws, dist in cases:
        assert np.median(draws) == pytest.approx(math.exp(dist.mu), rel=0.02)
        assert np.std(np.log(draws)) == pytest.approx(dist.sigma, rel=0.02)
    assert math.exp(LOGNORMAL.compute_factor.mu) == pytest.approx(2.718, abs=1e-3)
    assert math.exp(LOGNORMAL.download_kbps.mu) == pytest.approx(20_000)
    assert math.exp(LOGNORMAL.upload_kbps.mu) == pytest.approx(5_000)
    # the three draws are independent
    corr = np.corrcoef(np.log([p.compute_factor, p.download_kbps, p.upload_kbps]))
    assert np.abs(corr - np.eye(3)).max() < 0.03


def test_tiers_are_exact_shares_of_a_permutation() -> None:
    # 10 clients at 0.25/0.5/0.25: 2.5, 5, 2.5; the half left over goes to the
    # first tier with the largest remainder: high 3, mid 5, low 2.
    p = make_profiles(parse_devices("tiers"), 10, seed=0)
    labels = list(p.label)
    assert (labels.count("high"), labels.count("mid"), labels.count("low")) == (3, 5, 2)
    for c, name in enumerate(labels):
        tier = PHONE_TIERS[name]
        assert p.compute_factor[c] == tier.compute_factor
        assert p.download_kbps[c] == tier.download_kbps
        assert p.upload_kbps[c] == tier.upload_kbps
    assert labels != sorted(labels, key=list(PHONE_TIERS).index)  # shuffled
    assert labels == list(make_profiles(parse_devices("tiers"), 10, seed=0).label)
    assert p.source == "tiers:high=0.25,mid=0.5,low=0.25"


def test_tier_counts_always_sum_to_the_clients() -> None:
    for n in (1, 7, 99, 1000):
        p = make_profiles(parse_devices("tiers:high=0.33,mid=0.33,low=0.34"), n, 1)
        assert len(p.label) == n
    only_low = make_profiles(parse_devices("tiers:low=1"), 6, 0)
    assert set(only_low.label) == {"low"}


def test_csv_rows_repeat_cyclically(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text(
        "client_id,compute_factor,download_kbps,upload_kbps\n"
        "0,1,100,10\n1,10,200,20\n2,2.5,300,30\n"
    )
    p = make_profiles(parse_devices(str(path)), 7, seed=0)
    np.testing.assert_array_equal(p.compute_factor, [1, 10, 2.5, 1, 10, 2.5, 1])
    np.testing.assert_array_equal(p.download_kbps, [100, 200, 300, 100, 200, 300, 100])
    np.testing.assert_array_equal(p.upload_kbps, [10, 20, 30, 10, 20, 30, 10])
    assert p.label[4] == "row 1" and p.source == str(path)
    # fewer clients than rows: the first rows
    np.testing.assert_array_equal(
        make_profiles(parse_devices(str(path)), 2, 0).compute_factor, [1, 10]
    )


def test_fedscale_speeds_become_ratios_to_the_median(tmp_path: Path) -> None:
    # 162, 81, 40 ms per sample: median 81, so factors 2, 1, 40/81.
    path = tmp_path / "client_device_capacity"
    path.write_bytes(
        pickle.dumps(
            {
                1: {"computation": 162.0, "communication": 5000.0},
                2: {"computation": 81.0, "communication": 1000.0},
                3: {"computation": 40.0, "communication": 250.0},
            }
        )
    )
    p = make_profiles(parse_devices(str(path)), 4, seed=0)
    np.testing.assert_allclose(p.compute_factor, [2, 1, 40 / 81, 2])
    np.testing.assert_array_equal(p.download_kbps, [5000, 1000, 250, 5000])
    np.testing.assert_array_equal(p.upload_kbps, p.download_kbps)


def test_a_file_that_went_bad_after_parsing(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("client_id,compute_factor,download_kbps,upload_kbps\n0,1,1,1\n")
    spec = parse_devices(str(path))
    path.write_text("garbage\n")
    with pytest.raises(DeviceFileError, match="header is garbage"):
        make_profiles(spec, 3, seed=0)
