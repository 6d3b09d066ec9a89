"""On-device personalization of a run's global model, and its results.

After the last round each chosen client fine-tunes the global model on its own
data (:func:`personalize_client`); ``personalization.csv`` records its local test
accuracy and loss before and after (:mod:`fedtflite.personalization.results`).
"""

from fedtflite.personalization.client import (
    PERSONALIZE_STREAM,
    PersonalResult,
    choose_clients,
    client_rng,
    personalize_client,
)
from fedtflite.personalization.offline import personalize_offline
from fedtflite.personalization.results import (
    COLUMNS,
    CSV_FILE,
    PLOT_FILE,
    AccuracySummary,
    plot_personalization,
    plot_title,
    read_personalization,
    summarize,
    summary_line,
    write_personalization,
)

__all__ = [
    "COLUMNS",
    "CSV_FILE",
    "PERSONALIZE_STREAM",
    "PLOT_FILE",
    "AccuracySummary",
    "PersonalResult",
    "choose_clients",
    "client_rng",
    "personalize_client",
    "personalize_offline",
    "plot_personalization",
    "plot_title",
    "read_personalization",
    "summarize",
    "summary_line",
    "write_personalization",
]
