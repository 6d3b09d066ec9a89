"""Export: new initial weights patched into a trainable file, run-directory checks,
the measured table, and inference-only / quantized rebuilds.

Models come from the on-disk cache (built with TensorFlow on a miss); the
quantized rebuilds import TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedtflite.data import FashionMnist
from fedtflite.errors import ExportError, WeightsMismatchError
from fedtflite.export import (
    ExportOptions,
    FormatResult,
    format_table,
    inference_model,
    load_finished_run,
    measure,
    with_initial_weights,
)
from fedtflite.export.inference import check_rebuildable, representative_images
from fedtflite.models.cache import cached_model
from fedtflite.models.specs import ModelSpec, OptimizerSpec
from fedtflite.runtime import ClientModel


@pytest.fixture(scope="module")
def two_nn_momentum() -> bytes:
    # Equal zero biases (200 and 200) and zero momentum slots: the converter
    # shares buffers between them, which the patch must split.
    spec = ModelSpec("2nn", OptimizerSpec("sgd", learning_rate=0.05, momentum=0.9))
    return cached_model(spec)


def _random_like(model: ClientModel, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        (0.05 * rng.standard_normal(p.shape)).astype(np.float32)
        for p in model.contract.parameters
    ]


def test_patched_parameters_are_the_new_weights_bitwise(two_nn_momentum: bytes) -> None:
    original = ClientModel(two_nn_momentum)
    weights = _random_like(original, 0)
    patched = ClientModel(with_initial_weights(two_nn_momentum, weights))
    for got, want in zip(patched.parameters(), weights, strict=True):
        assert got.tobytes() == want.tobytes()
    assert len(patched.model_bytes) < len(two_nn_momentum) * 1.01  # no stale copies


def test_patched_file_trains_as_the_original_restored_to_the_weights(
    two_nn_momentum: bytes, data: FashionMnist
) -> None:
    # Same weights, zero momentum, same learning rate: the same three steps.
    weights = _random_like(ClientModel(two_nn_momentum), 1)
    original = ClientModel(two_nn_momentum)
    original.restore(weights)
    patched = ClientModel(with_initial_weights(two_nn_momentum, weights))
    x, y = data.train.images[:96], data.train.labels[:96]
    for model in (original, patched):
        model.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0))
    for a, b in zip(original.parameters(), patched.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    before = patched.evaluate(x, y).loss
    patched.fit(x, y, epochs=3, batch_size=32, rng=np.random.default_rng(1))
    assert patched.evaluate(x, y).loss < before
    patched.restore(weights)  # restore still loads weights
    assert patched.parameters()[0].tobytes() == weights[0].tobytes()


def test_wrong_weights_are_refused_naming_the_parameter(two_nn_momentum: bytes) -> None:
    weights = _random_like(ClientModel(two_nn_momentum), 2)
    with pytest.raises(WeightsMismatchError, match=r"got 5 arrays.*6 outputs"):
        with_initial_weights(two_nn_momentum, weights[:5])
    weights[1] = np.zeros(7, np.float32)
    with pytest.raises(
        WeightsMismatchError, match=r"a1 got float32\[7\].*float32\[200\]"
    ):
        with_initial_weights(two_nn_momentum, weights)


def _run_dir(
    tmp: Path,
    model: bytes,
    weights: dict[str, np.ndarray] | None,
    source: str = "mlp",
) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.toml").write_text(f'model = "{source}"\nseed = 4\n')
    (tmp / "model.tflite").write_bytes(model)
    if weights is not None:
        np.savez(tmp / "final_weights.npz", **weights)  # type: ignore[arg-type]
    return tmp


def test_an_unfinished_run_points_at_resume(tmp_path: Path, mlp_bytes: bytes) -> None:
    run_dir = _run_dir(tmp_path, mlp_bytes, None)
    with pytest.raises(ExportError, match=r"did not finish.*--resume"):
        load_finished_run(run_dir)
    with pytest.raises(ExportError, match="not a run directory"):
        load_finished_run(tmp_path / "nothing")


def test_final_weights_that_do_not_fit_the_model_are_refused(
    tmp_path: Path, mlp_bytes: bytes
) -> None:
    weights = {
        p.name: np.zeros(p.shape, np.float32)
        for p in ClientModel(mlp_bytes).contract.parameters
    }
    good = load_finished_run(_run_dir(tmp_path, mlp_bytes, weights))
    assert (good.model, good.seed, len(good.weights)) == ("mlp", 4, 4)
    weights["a2"] = np.zeros((3, 3), np.float32)
    with pytest.raises(
        ExportError, match=r"a2 is float32\[3, 3\].*a2: float32\[128,10\]"
    ):
        load_finished_run(_run_dir(tmp_path, mlp_bytes, weights))
    del weights["a2"]
    with pytest.raises(
        ExportError, match=r"holds a0, a1, a3.*parameters a0, a1, a2, a3"
    ):
        load_finished_run(_run_dir(tmp_path, mlp_bytes, weights))


def test_formats_are_checked_before_any_work() -> None:
    with pytest.raises(ExportError, match="'int4' is not a format; valid: fp16"):
        ExportOptions(Path("x.tflite"), inference=True, quantize="int4")
    with pytest.raises(ExportError, match="cannot train\\): add --inference"):
        ExportOptions(Path("x.tflite"), quantize="int8")
    with pytest.raises(ExportError, match=r"no TensorFlow source.*trainable file"):
        check_rebuildable("/somewhere/model.tflite")


def test_table_has_float_first_and_sizes_relative_to_it() -> None:
    rows = [
        FormatResult("float32", 400 * 1024, 0.8312, 0.48, 0.01),
        FormatResult("int8", 100 * 1024, 0.8301, 0.49, 0.005),
    ]
    lines = format_table(rows).splitlines()
    assert lines[2].startswith("| float32 | 400.0 KiB | 1.00x |")
    assert "| int8 | 100.0 KiB | 4.00x smaller | 83.01 % | 0.4900 | 0.005 |" in lines[3]


def test_measure_agrees_with_the_client_runtime(
    data: FashionMnist, mlp_bytes: bytes
) -> None:
    test = data.test
    expected = ClientModel(mlp_bytes).evaluate(test.images[:500], test.labels[:500])
    got = measure(
        "float32", mlp_bytes, test.images[:500], test.labels[:500], latency_calls=5
    )
    assert got.accuracy == expected.accuracy
    assert got.loss == pytest.approx(expected.loss, rel=1e-6)
    assert got.size_bytes == len(mlp_bytes) and got.latency_ms > 0


def test_representative_images_are_a_seeded_draw(data: FashionMnist) -> None:
    a = representative_images(data.train.images, 50, seed=3)
    b = representative_images(data.train.images, 50, seed=3)
    c = representative_images(data.train.images, 50, seed=4)
    assert a.shape == (50, 28, 28) and np.array_equal(a, b) and not np.array_equal(a, c)


def _fit_epoch(model: ClientModel, data: FashionMnist, n: int) -> None:
    """One seeded epoch (batch 32) on the first ``n`` training examples."""
    x, y = data.train.images[:n], data.train.labels[:n]
    model.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0))


def test_int8_inference_file_is_integer_and_agrees_with_float(
    data: FashionMnist, mlp_bytes: bytes
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    mlp = ClientModel(mlp_bytes)
    test = data.test
    _fit_epoch(mlp, data, 2000)
    weights = mlp.parameters()
    floating = inference_model("mlp", weights)
    calibration = representative_images(data.train.images, 200, seed=0)
    int8 = inference_model("mlp", weights, quantize="int8", representative=calibration)
    f = measure("float32", floating, test.images, test.labels, latency_calls=5)
    q = measure("int8", int8, test.images, test.labels, latency_calls=5)
    assert f.accuracy == mlp.evaluate(test.images, test.labels).accuracy
    assert abs(q.accuracy - f.accuracy) < 0.01
    assert f.size_bytes / q.size_bytes > 3.5
    interpreter = Interpreter(model_content=int8)
    kinds = {d["dtype"].__name__ for d in interpreter.get_tensor_details()}
    assert "int8" in kinds and list(interpreter.get_signature_list()) == ["infer"]


def _agrees(trainable: ClientModel, inference: bytes, data: FashionMnist) -> None:
    from ai_edge_litert.interpreter import Interpreter

    x = data.test.images[:64]
    runner = Interpreter(model_content=inference).get_signature_runner("infer")
    shape = runner.get_input_details()["x"]["shape_signature"]
    got = runner(x=x.reshape((64, *shape[1:])))
    key = trainable.contract.infer_output
    np.testing.assert_allclose(got[key], trainable.predict(x), rtol=1e-4, atol=1e-5)


def test_cnn_inference_rebuild_computes_the_trainable_infer(
    data: FashionMnist, cnn_bytes: bytes
) -> None:
    cnn = ClientModel(cnn_bytes)
    _fit_epoch(cnn, data, 256)
    _agrees(cnn, inference_model("cnn", cnn.parameters()), data)


def test_keras_model_inference_rebuild_keeps_batch_norm_state(
    data: FashionMnist, tmp_path: Path
) -> None:
    import keras

    from fedtflite.models.build import from_keras

    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    path = tmp_path / "mine.keras"
    model.save(path)
    trainable = ClientModel(from_keras(path))
    # moves the weights and the moving statistics away from init
    _fit_epoch(trainable, data, 256)
    _agrees(trainable, inference_model(str(path), trainable.parameters()), data)


def test_a_run_of_a_foreign_tflite_exports_trainable_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mlp_bytes: bytes
) -> None:
    from fedtflite.cli import main

    model = ClientModel(mlp_bytes)
    weights = {
        p.name: w + 1
        for p, w in zip(model.contract.parameters, model.parameters(), strict=True)
    }
    run_dir = _run_dir(tmp_path / "run", mlp_bytes, weights, source="/phone/app.tflite")
    out = tmp_path / "out.tflite"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    assert ClientModel(out).parameters()[0].tobytes() == weights["a0"].tobytes()
    assert main(["export", str(run_dir), "--out", str(out), "--inference"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'/phone/app.tflite' is a .tflite with no" in err[0]
