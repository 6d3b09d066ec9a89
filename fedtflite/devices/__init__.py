"""Real devices: speed, network, availability, deadlines, and the virtual clock.

A simulated client's on-device work is priced from the real ``train`` step of
the real model (:mod:`~fedtflite.devices.calibrate`), scaled by its device's
``compute_factor``; its transfers by its bandwidths
(:mod:`~fedtflite.devices.profiles`). Who is online comes from
:mod:`~fedtflite.devices.availability`; what each sampled client does in a
round (trains, trains part of its work, straggles, goes offline, is surplus to
an over-committed sample) and how long the round lasts from
:mod:`~fedtflite.devices.rounds`; the virtual clock sums the rounds
(:mod:`~fedtflite.devices.clock`). Everything is seeded and pure but the
step-time measurement. Nothing here imports TensorFlow or Flower.
"""

from fedtflite.devices.availability import (
    AlwaysOnline,
    Availability,
    AvailabilitySpec,
    BernoulliOnline,
    IntervalSchedule,
    diurnal_schedule,
    make_availability,
    parse_availability,
    trace_schedule,
)
from fedtflite.devices.calibrate import (
    cached_step_seconds,
    machine_key,
    measure_step_seconds,
)
from fedtflite.devices.clock import (
    ACCURACY_TARGETS,
    TimeToAccuracy,
    format_duration,
    format_time_to_accuracy,
    time_to_accuracy,
)
from fedtflite.devices.participation import (
    PARTICIPATION_COLUMNS,
    Participation,
    plot_participation,
    write_participation,
)
from fedtflite.devices.planner import PlannedRound, RoundPlanner, sample_online
from fedtflite.devices.profiles import (
    LOGNORMAL,
    PHONE_TIERS,
    DeviceProfiles,
    DeviceSpec,
    LogNormal,
    Tier,
    make_profiles,
    parse_devices,
)
from fedtflite.devices.rounds import (
    STRAGGLER_POLICIES,
    Outcome,
    RoundPlan,
    RoundRules,
    local_steps,
    overcommit_size,
    plan_round,
    transfer_seconds,
)
from fedtflite.devices.safepickle import SafeUnpickler, safe_unpickle
from fedtflite.devices.session import (
    ParticipationFiles,
    RoundTiming,
    VirtualRun,
    make_planner,
)
from fedtflite.devices.tracefiles import (
    DEVICE_CSV_COLUMNS,
    BehaveTrace,
    DeviceTable,
    load_behave_trace,
    load_device_file,
)

__all__ = [
    "ACCURACY_TARGETS",
    "DEVICE_CSV_COLUMNS",
    "LOGNORMAL",
    "PARTICIPATION_COLUMNS",
    "PHONE_TIERS",
    "STRAGGLER_POLICIES",
    "AlwaysOnline",
    "Availability",
    "AvailabilitySpec",
    "BehaveTrace",
    "BernoulliOnline",
    "DeviceProfiles",
    "DeviceSpec",
    "DeviceTable",
    "IntervalSchedule",
    "LogNormal",
    "Outcome",
    "Participation",
    "ParticipationFiles",
    "PlannedRound",
    "RoundPlan",
    "RoundPlanner",
    "RoundRules",
    "RoundTiming",
    "SafeUnpickler",
    "Tier",
    "TimeToAccuracy",
    "VirtualRun",
    "cached_step_seconds",
    "diurnal_schedule",
    "format_duration",
    "format_time_to_accuracy",
    "load_behave_trace",
    "load_device_file",
    "local_steps",
    "machine_key",
    "make_availability",
    "make_planner",
    "make_profiles",
    "measure_step_seconds",
    "overcommit_size",
    "parse_availability",
    "parse_devices",
    "plan_round",
    "plot_participation",
    "safe_unpickle",
    "sample_online",
    "time_to_accuracy",
    "trace_schedule",
    "transfer_seconds",
    "write_participation",
]
