"""Personalization after the last round of a real run, on the workers through
cohort messages, and ``fedtflite personalize`` on the finished run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fedtflite.cli import main
from fedtflite.orchestrator import simulate
from fedtflite.personalization import (
    choose_clients,
    read_personalization,
    summarize,
)
from fedtflite.simulation import History, SimulationConfig

pytestmark = pytest.mark.integration

CHOSEN = 4  # of conftest.SMALL's 6 clients


@pytest.fixture(scope="module")
def run(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> History:
    config = small_config(
        "alpha=0.1",
        "num-rounds=3",
        "personalize-epochs=1",
        f"personalize-clients={CHOSEN}",
    )
    return simulate(config, tmp_path_factory.mktemp("pers") / "run", progress=False)


def test_every_chosen_client_gains_from_fine_tuning_on_its_own_data(
    run: History,
) -> None:
    results = read_personalization(run.run_dir / "personalization.csv")
    assert [r.client_id for r in results] == choose_clients(6, CHOSEN, seed=3)
    assert all(r.num_examples > 0 for r in results)
    s = summarize(results)
    assert s.mean_personal > s.mean
    assert (run.run_dir / "personalization.png").stat().st_size > 0


def test_the_command_on_the_finished_run_gives_the_same_results(
    run: History, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run.run_dir / "personalization.csv"
    on_workers = path.read_text()
    argv = ["personalize", str(run.run_dir), "--epochs", "1"]
    assert main([*argv, "--clients", str(CHOSEN)]) == 0
    assert path.read_text() == on_workers
    assert "personalization (1 local epoch, 4 clients)" in capsys.readouterr().out
    assert main([*argv, "--clients", "-2"]) == 2
    assert "--clients = -2 is not valid: expected >= 0" in capsys.readouterr().err
