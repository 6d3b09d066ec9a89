"""After the last round: personalization on the workers, through cohort messages.

The chosen clients (:func:`fedtflite.personalization.choose_clients`, seeded with
the run's seed) travel in cohorts exactly as a round's clients do
(:func:`~fedtflite.algorithms.sampling.split_cohorts`, one message per cohort to
the federation's nodes in turn), as ``evaluate.personalize`` messages carrying
the final global weights; each worker runs its cohort's clients on its own
interpreter (:func:`clients.client_app.personalize`). The results go to
``personalization.csv`` and ``personalization.png`` in the run directory, and the
summary line to the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from fedtflite.algorithms.sampling import split_cohorts
from fedtflite.personalization import (
    CSV_FILE,
    PLOT_FILE,
    PersonalResult,
    choose_clients,
    plot_personalization,
    plot_title,
    summarize,
    summary_line,
    write_personalization,
)
from fedtflite.protocol.personalization import (
    MESSAGE_TYPE,
    decode_personalize_reply,
    personalize_content,
)
from fedtflite.protocol.replies import array_record
from fedtflite.simulation.prepare import PreparedRun
from server.messaging import _wait_for_nodes

__all__ = ["personalize_clients", "personalize_run"]

_log = logging.getLogger("fedtflite")


def personalize_clients(
    grid: Grid,
    config: ConfigRecord,
    arrays: ArrayRecord,
    clients: Sequence[int],
    epochs: int,
    cohort_size: int,
) -> tuple[list[PersonalResult], list[str]]:
    """Send ``clients`` in cohorts; their results (client order) and failures.

    Parameters
    ----------
    grid : Grid
    config : ConfigRecord
        The run's client settings.
    arrays : ArrayRecord
        The global weights every client restores.
    clients : sequence of int
    epochs : int
        Fine-tuning epochs.
    cohort_size : int
        Most clients per message (0: one message per node).
    """
    nodes = _wait_for_nodes(grid)
    messages = [
        Message(
            content=personalize_content(config, arrays, cohort, epochs),
            message_type=MESSAGE_TYPE,
            dst_node_id=nodes[k % len(nodes)],
        )
        for k, cohort in enumerate(
            split_cohorts(list(clients), cohort_size, len(nodes))
        )
    ]
    results: list[PersonalResult] = []
    errors: list[str] = []
    for reply in grid.send_and_receive(messages):
        if reply.has_error():
            errors.append(f"a cohort failed: {reply.error.reason}")
            continue
        status, done = decode_personalize_reply(reply)
        errors += status.errors
        results += done
    results.sort(key=lambda r: r.client_id)
    return results, errors


def personalize_run(
    grid: Grid, run: PreparedRun, names: Sequence[str], weights: Sequence[np.ndarray]
) -> list[PersonalResult]:
    """Personalize ``run``'s chosen clients from ``weights``; write the results.

    Writes ``personalization.csv`` and ``personalization.png`` to the run
    directory and logs the summary line (and the first failure, if any client
    failed).
    """
    config = run.config
    clients = choose_clients(
        config.num_clients, config.personalize_clients, config.seed
    )
    results, errors = personalize_clients(
        grid,
        ConfigRecord(run.settings.to_config()),
        array_record(names, [np.asarray(w) for w in weights]),
        clients,
        config.personalize_epochs,
        config.clients_per_message,
    )
    if errors:
        _log.warning(
            "personalization: %d of %d clients failed; first: %s",
            len(clients) - len(results),
            len(clients),
            errors[0],
        )
    write_personalization(results, run.run_dir / CSV_FILE)
    summary = summarize(results)
    plot_personalization(
        results,
        run.run_dir / PLOT_FILE,
        plot_title(
            config.model,
            config.strategy,
            config.partitioner,
            config.alpha,
            config.personalize_epochs,
        ),
    )
    line = summary_line(summary, config.personalize_epochs)
    _log.info("%s", line)
    if not math.isfinite(summary.mean):
        _log.warning("personalization: no chosen client has local test examples")
    return results
