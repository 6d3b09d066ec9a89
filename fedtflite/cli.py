"""The ``fedtflite`` command line: a thin layer over the library.

Exit codes: 0 done; 2 the input was refused (every
:class:`~fedtflite.errors.FedTfliteError` but a failed run: one line on
stderr, never a traceback); 3 the run ran but failed
(:class:`~fedtflite.errors.RunFailedError`); 130 / 143 interrupted by SIGINT /
SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fedtflite.errors import (
    ConfigError,
    FedTfliteError,
    RunFailedError,
    RunInterruptedError,
    invalid_value,
)
from fedtflite.models.specs import DEFAULT_LEARNING_RATE

__all__ = ["EXIT_FAILED_RUN", "EXIT_REFUSED", "main"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "default.toml"
EXIT_REFUSED = 2
"""Exit code of a refused input (bad key, value, file, busy run directory)."""
EXIT_FAILED_RUN = 3
"""Exit code of a run that failed (a round aggregated no update, a lost worker)."""


@contextmanager
def _writing(flag: str, path: Path) -> Iterator[None]:
    """Turn a failed write to ``path`` (given as ``flag``) into one line."""
    try:
        yield
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write there ({e.strerror})") from None


def _check_output_file(path: Path, flag: str) -> None:
    """Refuse, before any work, an output file that could not be written.

    The file is opened for appending (and removed again if that created it):
    the one test that also holds for root, read-only mounts and ``/proc``.
    """
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; expected a file path")
    existed = path.exists()
    with _writing(flag, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
    if not existed:
        path.unlink()


def _cmd_build(args: argparse.Namespace) -> int:
    from fedtflite.models.architectures import ARCHITECTURES  # no TensorFlow yet
    from fedtflite.models.specs import ModelSpec, OptimizerSpec

    if (args.model is None) == (args.keras is None):
        raise ConfigError(
            f"build needs an architecture ({', '.join(ARCHITECTURES)}) or "
            "--keras MODEL.keras, not both"
        )
    _check_output_file(args.out, "--out")
    if args.keras is not None:
        return _build_keras(args)
    spec = ModelSpec(
        architecture=args.model,
        optimizer=OptimizerSpec(
            name=args.optimizer or "sgd",
            learning_rate=(
                DEFAULT_LEARNING_RATE
                if args.learning_rate is None
                else args.learning_rate
            ),
            momentum=args.momentum or 0.0,
            weight_decay=args.weight_decay or 0.0,
        ),
        seed=args.seed or 0,
        weight_init=args.weight_init or "glorot",
        batch_size=args.batch_size,
        proximal=args.proximal,
        scaffold=args.scaffold,
    )
    from fedtflite.models.build import write_model

    path = write_model(spec, args.out)
    print(f"wrote {path} ({path.stat().st_size} bytes): {spec}")
    return 0


def _build_keras(args: argparse.Namespace) -> int:
    given = [
        flag
        for flag, value in (
            ("--optimizer", args.optimizer),
            ("--learning-rate", args.learning_rate),
            ("--momentum", args.momentum),
            ("--weight-decay", args.weight_decay),
            ("--seed", args.seed),
            ("--weight-init", args.weight_init),
        )
        if value is not None
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)} cannot be used with --keras: the optimizer is the "
            "one the Keras model was compiled with, the weights its own"
        )
    if not args.keras.is_file():
        raise ConfigError(f"--keras {args.keras}: no such file")
    from fedtflite.models.build import from_keras, quiet_stderr

    with quiet_stderr():  # TensorFlow's start-up lines; an error is one line
        data = from_keras(
            args.keras,
            batch_size=args.batch_size,
            proximal=args.proximal,
            scaffold=args.scaffold,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes) from {args.keras}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from fedtflite.data import CLASS_NAMES
    from fedtflite.runtime import ClientModel
    from fedtflite.runtime.client_model import signature_table

    try:
        model = ClientModel(args.file)
    except FedTfliteError as e:
        print(f"invalid client model: {e}", file=sys.stderr)
        return EXIT_REFUSED
    c = model.contract
    if c.num_classes != len(CLASS_NAMES):
        print(
            f"invalid client model: {c.source}: infer has {c.num_classes} output "
            f"classes; Fashion-MNIST has {len(CLASS_NAMES)} (expected "
            f"[B,{len(CLASS_NAMES)}])",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    print(f"{c.source}: valid client model ({len(model.model_bytes)} bytes)")
    print(f"sha256: {model.sha256}")
    for line in signature_table(model):
        print(f"  {line}")
    print(
        f"parameters: {len(c.parameters)} tensors, {c.num_parameters} values, "
        f"{c.parameter_bytes} bytes"
    )
    batch = f"fixed {c.train_batch}" if c.train_batch else "dynamic"
    labels = (
        "one-hot float32" if c.one_hot_labels else f"class ids ({c.label_dtype.name})"
    )
    print(f"train batch: {batch}{' with mask' if c.has_mask else ''}; labels: {labels}")
    if c.noise:
        inputs = ", ".join(str(t) for t in c.noise)
        print(f"train noise (uniform draws per step, e.g. dropout): {inputs}")
    print(f"ops ({len(c.ops)}, all builtin): {', '.join(c.ops)}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from fedtflite.centralized import train_centralized
    from fedtflite.data import load_fashion_mnist
    from fedtflite.runtime import ClientModel
    from fedtflite.simulation import SimulationConfig
    from fedtflite.simulation.prepare import resolve_model

    if args.epochs < 1:
        raise ConfigError(invalid_value("--epochs", args.epochs, ">= 1"))
    if args.save:
        _check_output_file(args.save, "--save")
    config = SimulationConfig(
        model=str(args.model),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    model = ClientModel(resolve_model(config), source=str(args.model))
    data = load_fashion_mnist(args.data_dir)
    print(
        f"centralized training of {args.model} through LiteRT `train`: "
        f"{len(data.train.labels)} images, {args.epochs} epochs, "
        f"batch {args.batch_size}"
    )
    for r in train_centralized(
        model,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        learning_rate=args.learning_rate,
    ):
        print(
            f"epoch {r.epoch}: train loss {r.fit.loss:.4f} ({r.fit.seconds:.1f} s) "
            f"test loss {r.test.loss:.4f} test accuracy {r.test.accuracy:.4f}"
        )
    if args.save:
        np.savez(args.save, *model.parameters())
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    import logging

    from fedtflite.devices import format_time_to_accuracy
    from fedtflite.orchestrator import simulate
    from fedtflite.simulation import load_config
    from fedtflite.simulation.prepare import run_directory

    # fedtflite's own lines at INFO; other libraries' (alembic, Ray...) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("fedtflite").setLevel(logging.INFO)
    path = args.config if args.config else DEFAULT_CONFIG
    config = load_config(path, args.set)
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    run_dir = run_directory(
        args.out, args.resume, resume_name="--resume", run_dir_name="--out"
    )
    history = simulate(
        config,
        run_dir,
        progress=not args.no_progress,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    last = history.rounds[-1]
    print(
        f"final test accuracy {last.test_accuracy:.4f} (loss {last.test_loss:.4f}) "
        f"after {last.round} rounds; run directory: {history.run_dir}"
    )
    print(format_time_to_accuracy(history.time_to_accuracy()))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    import logging

    from fedtflite.orchestrator.sweep import (
        load_grid,
        plot_sweep,
        read_sweep,
        run_sweep,
        sweep_table,
    )
    from fedtflite.simulation import parse_overrides

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    base, cells = load_grid(args.grid)
    base.update(parse_overrides(args.set))
    if args.report_only:
        results = read_sweep(base, cells, args.out)
    else:
        results = run_sweep(base, cells, args.out, jobs=args.jobs)
    axes = list(cells[0].labels) if cells else []
    summary = args.summary or args.out
    summary.mkdir(parents=True, exist_ok=True)
    table = sweep_table(results, axes)
    (summary / "summary.md").write_text(table)
    plot_sweep(
        results,
        summary / "accuracy.png",
        panel_axis=axes[0] if len(axes) > 1 else None,
        title=f"{args.grid.parent.name}/{args.grid.name}",
    )
    print(table)
    print(f"wrote {summary / 'summary.md'} and {summary / 'accuracy.png'}")
    return 0


def _cmd_partition(args: argparse.Namespace) -> int:
    import numpy as np

    from fedtflite.data import (
        load_fashion_mnist,
        partition_stats,
        validate_partition_spec,
        write_partition_stats,
    )
    from fedtflite.data.partition_file import cached_partition, save_partition
    from fedtflite.simulation import load_config

    config = load_config(args.config if args.config else DEFAULT_CONFIG, args.set)
    labels = load_fashion_mnist(config.data_dir or None).train.labels
    spec = config.partition_spec()
    validate_partition_spec(spec, len(labels))
    parts = cached_partition(labels, spec)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    with _writing("--out", out):
        out.mkdir(parents=True, exist_ok=True)
        save_partition(out / "partition.npz", parts, spec)
        stats = partition_stats(labels, parts)
        csv_path, png_path = write_partition_stats(stats, out)
    sizes = stats.sum(axis=1)
    classes = (stats > 0).sum(axis=1)
    print(
        f"{spec.kind} partition of {len(labels)} training images over "
        f"{spec.num_clients} clients (seed {spec.seed}): examples per client "
        f"min {sizes.min()}, median {np.median(sizes):g}, max {sizes.max()}; "
        f"classes per client min {classes.min()}, median {np.median(classes):g}, "
        f"max {classes.max()}"
    )
    print(f"wrote {out / 'partition.npz'}, {csv_path} and {png_path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from fedtflite.data import load_fashion_mnist
    from fedtflite.export import (
        ExportOptions,
        export_report,
        export_run,
        format_table,
        load_finished_run,
    )
    from fedtflite.models.build import quiet_stderr

    options = ExportOptions(args.out, args.inference, args.quantize)
    _check_output_file(args.out, "--out")
    if args.report:
        _check_output_file(args.report, "--report")
    run = load_finished_run(args.run_dir)
    data = load_fashion_mnist(run.data_dir or None)
    with quiet_stderr():  # TensorFlow's lines (inference exports); errors are one line
        rows = export_run(run, options, data)
    print(f"wrote {args.out} from {run.run_dir} (model {run.model})")
    print(format_table(rows), end="")
    if args.report:
        with _writing("--report", args.report):
            args.report.write_text(export_report(run, options, rows))
        print(f"wrote {args.report}")
    return 0


def _cmd_personalize(args: argparse.Namespace) -> int:
    from fedtflite.data import load_train_uint8
    from fedtflite.data.partition_file import load_partition
    from fedtflite.export import load_finished_run
    from fedtflite.personalization import (
        CSV_FILE,
        PLOT_FILE,
        choose_clients,
        personalize_offline,
        plot_personalization,
        plot_title,
        summarize,
        summary_line,
        write_personalization,
    )
    from fedtflite.runtime import ClientModel
    from fedtflite.simulation.config import load_run_config

    if args.epochs < 1:
        raise ConfigError(invalid_value("--epochs", args.epochs, ">= 1"))
    if args.clients < 0:
        raise ConfigError(
            invalid_value("--clients", args.clients, ">= 0 (0: every client)")
        )
    run = load_finished_run(args.run_dir)
    config = load_run_config(run.run_dir)
    model = ClientModel(run.model_bytes)
    try:
        parts = load_partition(run.run_dir / "partition.npz", config.partition_spec())
    except OSError as e:
        raise ConfigError(f"{run.run_dir}/partition.npz: {e.strerror}") from None
    images, labels = load_train_uint8(config.data_dir or None)
    clients = choose_clients(config.num_clients, args.clients, config.seed)
    results = personalize_offline(
        model,
        run.weights,
        parts,
        images,
        labels,
        clients,
        client_test_fraction=config.client_test_fraction,
        seed=config.seed,
        epochs=args.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate if model.supports_learning_rate else 0.0,
    )
    out: Path = args.out or run.run_dir
    with _writing("--out", out):
        out.mkdir(parents=True, exist_ok=True)
        write_personalization(results, out / CSV_FILE)
    plot_personalization(
        results,
        out / PLOT_FILE,
        plot_title(
            config.model,
            config.strategy,
            config.partitioner,
            config.alpha,
            args.epochs,
        ),
    )
    print(summary_line(summarize(results), args.epochs))
    print(f"wrote {out / CSV_FILE} and {out / PLOT_FILE}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from fedtflite.data import download_fashion_mnist, find_data_dir, load_fashion_mnist

    if args.action == "download":
        print(f"Fashion-MNIST in {download_fashion_mnist()}")
        return 0
    data = load_fashion_mnist(args.data_dir)
    print(
        f"Fashion-MNIST from {find_data_dir(args.data_dir)}: "
        f"{len(data.train.labels)} train, {len(data.test.labels)} test images"
    )
    return 0


def _run_dir_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
) -> argparse.ArgumentParser:
    """A sub-command that reads a finished run directory (its first argument)."""
    parser = sub.add_parser(name, help=help)
    parser.add_argument("run_dir", type=Path, help="a finished run directory")
    parser.set_defaults(func=func)
    return parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedtflite",
        description="Simulate federated on-device training: .tflite clients on LiteRT.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a trainable .tflite (needs TensorFlow)")
    b.add_argument(
        "model",
        nargs="?",
        default=None,
        help="architecture: mlp, cnn, 2nn or fedavg-cnn (or use --keras)",
    )
    b.add_argument(
        "--keras",
        type=Path,
        default=None,
        metavar="MODEL.keras",
        help="convert this compiled Keras model (its loss and optimizer) instead",
    )
    b.add_argument("--out", required=True, type=Path, help="output .tflite path")
    b.add_argument("--optimizer", default=None, help="sgd (default) or adam")
    b.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help=f"default {DEFAULT_LEARNING_RATE}",
    )
    b.add_argument("--momentum", type=float, default=None, help="SGD momentum")
    b.add_argument(
        "--weight-decay", type=float, default=None, help="L2 on the gradient"
    )
    b.add_argument(
        "--seed", type=int, default=None, help="seed of the initial weights (0)"
    )
    b.add_argument(
        "--weight-init",
        default=None,
        help="initial weights: glorot (Keras' defaults, the default) or torch "
        "(PyTorch's)",
    )
    b.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="fixed train batch with a mask (default: 32 for models with "
        "convolutions, pooling or batch norm, else dynamic)",
    )
    b.add_argument(
        "--proximal", action="store_true", help="FedProx term + set_proximal_mu"
    )
    b.add_argument(
        "--scaffold", action="store_true", help="SCAFFOLD correction + set_correction"
    )
    b.set_defaults(func=_cmd_build)

    i = sub.add_parser("inspect", help="validate a client .tflite and describe it")
    i.add_argument("file", type=Path)
    i.set_defaults(func=_cmd_inspect)

    t = sub.add_parser("train", help="centralized training through LiteRT `train`")
    t.add_argument(
        "--model", default="mlp", help="a named model, a .tflite or a .keras path"
    )
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-dir", type=Path, default=None)
    t.add_argument("--save", type=Path, default=None, help="write final weights (.npz)")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("simulate", help="run a federated simulation (the main job)")
    s.add_argument(
        "config",
        nargs="?",
        type=Path,
        default=None,
        help=f"TOML config (default {DEFAULT_CONFIG})",
    )
    s.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key"
    )
    s.add_argument(
        "--out", type=Path, default=None, help="run directory (default runs/<time>)"
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument(
        "--resume",
        action="store_true",
        help="go on from the --out directory's checkpoint (after its last round)",
    )
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an --out directory that holds another run",
    )
    s.set_defaults(func=_cmd_simulate)

    w = sub.add_parser(
        "sweep", help="run a grid of simulations (resumable) and compare them"
    )
    w.add_argument("grid", type=Path, help="sweep TOML: [base] and [axes.<axis>.<opt>]")
    w.add_argument("--out", type=Path, required=True, help="one run directory per cell")
    w.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="on the base"
    )
    w.add_argument("--jobs", type=int, default=1, help="cells at once (subprocesses)")
    w.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="where summary.md and accuracy.png go",
    )
    w.add_argument("--report-only", action="store_true", help="run nothing")
    w.set_defaults(func=_cmd_sweep)

    q = sub.add_parser(
        "partition",
        help="write a config's partition (partition.npz/.csv/.png) without training",
    )
    q.add_argument(
        "config",
        nargs="?",
        type=Path,
        default=None,
        help=f"TOML config (default {DEFAULT_CONFIG})",
    )
    q.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key"
    )
    q.add_argument("--out", type=Path, required=True, help="directory to write into")
    q.set_defaults(func=_cmd_partition)

    e = _run_dir_command(
        sub,
        "export",
        _cmd_export,
        "a finished run's global model as a .tflite to ship (trainable, "
        "inference-only, quantized), measured",
    )
    e.add_argument("--out", type=Path, required=True, help="the .tflite to write")
    e.add_argument(
        "--inference",
        action="store_true",
        help="infer only (no train, no optimizer state); needs TensorFlow",
    )
    e.add_argument(
        "--quantize",
        default=None,
        metavar="FORMAT",
        help="with --inference: fp16, dynamic or int8 (LiteRT post-training "
        "quantization; int8 is full-integer, calibrated on training images)",
    )
    e.add_argument(
        "--report", type=Path, default=None, help="also write the table (Markdown)"
    )

    z = _run_dir_command(
        sub,
        "personalize",
        _cmd_personalize,
        "fine-tune a finished run's global model on each client's own data "
        "and compare (personalization.csv/.png)",
    )
    z.add_argument("--epochs", type=int, required=True, help="local epochs (>= 1)")
    z.add_argument(
        "--clients",
        type=int,
        default=0,
        help="how many clients, drawn with the run's seed (default 0: every client)",
    )
    z.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where personalization.csv/.png go (default: the run directory)",
    )

    d = sub.add_parser("data", help="locate (info) or download Fashion-MNIST")
    d.add_argument("action", choices=["info", "download"])
    d.add_argument("--data-dir", type=Path, default=None)
    d.set_defaults(func=_cmd_data)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (FedTfliteError, KeyboardInterrupt) as e:
        message = "interrupted" if isinstance(e, KeyboardInterrupt) else e
        print(f"error: {message}", file=sys.stderr)
        return _exit_code(e)
    return code


def _exit_code(e: FedTfliteError | KeyboardInterrupt) -> int:
    """The exit code of a command ended by ``e`` (see the module docstring)."""
    if isinstance(e, RunInterruptedError):
        return 128 + (e.signum or signal.SIGINT)
    if isinstance(e, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if isinstance(e, RunFailedError):
        return EXIT_FAILED_RUN
    return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
