"""Per-feature bit widths on the model side (issue 12, item 1): the quantizers, the config, training
and the model file. A width of 0 means the feature is neither measured nor sent, so nothing the
model computes may depend on it; equal widths are the uniform model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from softbits import TrainConfig, TrainedModel, load_dataset, train_dataset
from softbits.errors import ConfigError, DataError
from softbits.nn.quantizers import BitwiseQuantizer, MidpointQuantizer, SoftQuantizer, build_quantizer

from conftest import assert_train_refuses

SMALL = dict(layers=2, neurons=32, epochs=3, lr=3e-3, device="cpu")
#: diabetes has 10 features: a mix of widths, two features not sent
WIDTHS = (3, 0, 2, 4, 2, 0, 3, 2, 4, 2)

#: the threshold family as the methods build it: class and fixed options
QUANTIZERS = {
    "bw-sq": (BitwiseQuantizer, {}),
    "bw-qq": (BitwiseQuantizer, {"soft": False, "trainable": False}),
    "sq": (SoftQuantizer, {}),
    "pr-qq": (MidpointQuantizer, {"init": "quantile"}),
    "pr-mq": (MidpointQuantizer, {"init": "minmax"}),
}


def _make(name: str, widths: tuple[int, ...] | None, *, n_features: int = 0, bits: int = 0):
    """Quantizer ``name`` with ``widths``, or uniform with ``n_features`` and ``bits``."""
    cls, fixed = QUANTIZERS[name]
    if widths is None:
        return cls(n_features, bits, **fixed)
    return cls(len(widths), max(widths), widths=widths, **fixed)


@pytest.fixture(scope="module")
def diabetes():
    return load_dataset("diabetes")


def _data(rng: np.random.Generator, n: int = 3000, f: int = len(WIDTHS)) -> torch.Tensor:
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[:5] = [np.nan] * f  # NaN: code 0, like a uniform quantizer
    x[5:10] = np.inf
    return torch.as_tensor(x)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_codes_fit_each_feature_width_and_decode_equals_eval_forward(name, rng):
    x = _data(rng)
    q = _make(name, WIDTHS)
    q.init_from_data(x[10:])
    q.eval()
    codes = q.encode(x)
    top = np.array([2**w - 1 for w in WIDTHS])
    assert (codes.min(0).values.numpy() == 0).all()
    np.testing.assert_array_equal(codes.max(0).values.numpy(), top)  # every code of its width is reached
    assert torch.equal(q.decode(codes), q(x))


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_thresholds_are_initialised_per_feature_at_its_own_width(name, rng):
    x = _data(rng)[10:]
    q = _make(name, WIDTHS)
    q.init_from_data(x)
    table = q.sorted_thresholds()
    assert table.dtype == np.float32 and table.shape == (len(WIDTHS), 2**max(WIDTHS) - 1)
    for f, w in enumerate(WIDTHS):
        if w:
            own = _make(name, None, n_features=1, bits=w)
            own.init_from_data(x[:, f:f + 1])
            np.testing.assert_array_equal(table[f, :2**w - 1], own.sorted_thresholds()[0])
        assert np.isposinf(table[f, 2**w - 1:]).all()
    assert np.isfinite(q.thresholds.detach().numpy()).all()  # the stored tensor never holds inf


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_a_zero_width_feature_changes_nothing_in_training_or_eval(name, rng):
    x = _data(rng)[10:]
    q = _make(name, WIDTHS)
    q.init_from_data(x)
    varied = x.clone()
    varied[:, 1] = torch.as_tensor(rng.normal(scale=50, size=x.shape[0]), dtype=torch.float32)
    varied[:5, 5] = float("nan")
    for mode in (True, False):
        q.train(mode)
        assert torch.equal(q(x), q(varied)), f"training={mode}"


def test_unused_slots_get_no_gradient_and_stay_finite_under_weight_decay(rng):
    x = _data(rng)[10:]
    q = BitwiseQuantizer(len(WIDTHS), max(WIDTHS), widths=WIDTHS)
    q.init_from_data(x)
    q.train()
    q(x).square().sum().backward()
    assert (q.thresholds.grad[~q.active] == 0).all() and q.thresholds.grad[q.active].abs().sum() > 0
    for optimizer in (torch.optim.Adam(q.parameters(), lr=1e-2, weight_decay=1e-2),
                      torch.optim.AdamW(q.parameters(), lr=1e-2, weight_decay=1e-2)):
        for _ in range(20):
            optimizer.zero_grad()
            q(x).square().sum().backward()
            optimizer.step()
        assert torch.isfinite(q.thresholds).all()


def test_equal_widths_are_the_uniform_model(rng):
    assert TrainConfig(bits_per_feature=(3,) * 5) == TrainConfig(bits=3)
    assert "bits_per_feature" not in TrainConfig(bits=3).to_dict()
    x = _data(rng, f=4)[10:]
    for name in QUANTIZERS:
        a, b = _make(name, (3,) * 4), _make(name, None, n_features=4, bits=3)
        a.init_from_data(x)
        b.init_from_data(x)
        assert a.widths is None and "widths" not in a.config() and a.config() == b.config()
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_widths_set_bits_to_the_largest_and_size_the_payload():
    config = TrainConfig(bits=4, bits_per_feature=[3, 0, 2])
    assert config.bits == 3 and config.bits_per_feature == (3, 0, 2)
    assert config.payload_bytes(3) == 1 and config.to_dict()["bits_per_feature"] == [3, 0, 2]
    assert config.compression_factor == pytest.approx(32 * 3 / 5)
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="lsq"), "one bit width for every feature"),
    (dict(method="llt4"), "one bit width for every feature"),
    (dict(method="fp"), "full-precision"),
    (dict(method="pr-qq", bits_per_feature=(2, 1, 0)), "bits >= 2 for every sent feature"),
    (dict(bits_per_feature=(0, 0, 0)), "at least one feature"),
    (dict(bits_per_feature=(3, 17)), "0..16"),
    (dict(bits_per_feature="3,2"), "list of integers"),
])
def test_methods_and_widths_that_cannot_train_are_one_line_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{"bits_per_feature": (3, 2, 0), **kwargs})


def test_width_count_must_match_the_features(diabetes):
    with pytest.raises(ConfigError, match="3 bit widths given for 10 features"):
        train_dataset(diabetes, TrainConfig(bits_per_feature=(3, 2, 0), **SMALL))


@pytest.mark.parametrize("method", ["bw-sq", "bw-qq", "sq", "pr-qq", "po-qq", "bw-sq-ens"])
def test_training_with_widths_runs_and_ignores_unsent_features(method, diabetes):
    extra = {"members": 2} if method == "bw-sq-ens" else {}
    model = train_dataset(diabetes, TrainConfig(method=method, bits_per_feature=WIDTHS, **SMALL, **extra))
    assert np.isfinite(model.metrics["test_mse"])
    assert model.widths == WIDTHS and model.bits == 4
    if method.startswith("bw-"):  # the network sees only the used slots
        assert model.module.quantizer.out_features == sum(2**w - 1 for w in WIDTHS)
    X = diabetes.X.astype(np.float64)
    codes = model.encode(X)
    assert (codes <= np.array([2**w - 1 for w in WIDTHS])).all()
    np.testing.assert_array_equal(model.predict_codes(codes), model.predict(X))
    varied = X.copy()
    varied[:, [1, 5]] = np.random.default_rng(0).normal(scale=100, size=(X.shape[0], 2))
    np.testing.assert_array_equal(model.predict(varied), model.predict(X))


def test_model_file_round_trip_keeps_the_widths(tmp_path, diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", bits_per_feature=WIDTHS, weight_decay=1e-3,
                                                **SMALL))
    path = model.save(tmp_path / "mixed.safetensors")
    loaded = TrainedModel.load(path)
    assert loaded.widths == WIDTHS and loaded.config == model.config
    np.testing.assert_array_equal(loaded.predict(diabetes.X), model.predict(diabetes.X))
    np.testing.assert_array_equal(loaded.module.quantizer.sorted_thresholds(),
                                  model.module.quantizer.sorted_thresholds())
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        assert set(f.keys()) == set(model.module.state_dict())
    assert header["config"]["bits_per_feature"] == list(WIDTHS)
    assert header["quantizer"]["config"]["widths"] == list(WIDTHS)


def test_uniform_model_file_has_no_width_fields(tmp_path, diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-sq", bits=2, **SMALL))
    path = model.save(tmp_path / "uniform.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        keys = set(f.keys())
    assert "bits_per_feature" not in header["config"] and "widths" not in header["quantizer"]["config"]
    assert not any("active" in k for k in keys)
    assert TrainedModel.load(path).widths is None


def test_model_file_whose_widths_disagree_is_refused(tmp_path, diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-qq", bits_per_feature=WIDTHS, **SMALL))
    path = model.save(tmp_path / "mixed.safetensors")
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["softbits"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    from safetensors.torch import save_file

    header["quantizer"]["config"]["widths"] = [4, *WIDTHS[1:]]
    save_file(tensors, str(path), metadata={"softbits": json.dumps(header)})
    with pytest.raises(DataError, match="widths"):
        TrainedModel.load(path)


def test_codes_beyond_a_feature_width_are_refused(diabetes):
    model = train_dataset(diabetes, TrainConfig(method="bw-qq", bits_per_feature=WIDTHS, **SMALL))
    codes = np.zeros((2, len(WIDTHS)), dtype=np.int64)
    codes[1, 2] = 4  # feature 2 has 2 bits: codes 0..3
    with pytest.raises(DataError, match=f"codes of feature {diabetes.feature_names[2]} must lie in 0..3"):
        model.predict_codes(codes)
    codes[1, 2] = 0
    codes[0, 1] = 1  # a feature that is not sent has only code 0
    with pytest.raises(DataError, match="0..0"):
        model.predict_codes(codes)


def test_build_quantizer_checks_widths_from_a_file():
    with pytest.raises(ConfigError, match="0..16"):
        build_quantizer("bitwise", {"n_features": 2, "bits": 3, "widths": [3, 20]})
    with pytest.raises(ConfigError, match="largest"):
        build_quantizer("bitwise", {"n_features": 2, "bits": 4, "widths": [3, 2]})
    with pytest.raises(ConfigError, match="unknown option widths"):
        build_quantizer("lsq", {"n_features": 2, "bits": 3, "widths": [3, 2]})


def _train_cli(softbits_cmd, cli_env, *args: str):
    import subprocess

    return subprocess.run([*softbits_cmd, "train", "--dataset", "diabetes", "--epochs", "2", "--layers", "1",
                           "--neurons", "8", "--device", "cpu", *args],
                          capture_output=True, text=True, env=cli_env, timeout=120)


def test_train_cli_takes_widths_by_name_and_records_them(tmp_path, softbits_cmd, cli_env):
    path = tmp_path / "m.safetensors"
    run = _train_cli(softbits_cmd, cli_env, "--bits", "2", "--bits-per-feature", "age=0, bmi=4",
                     "--json", "--save", str(path))
    only = _train_cli(softbits_cmd, cli_env, "--bits", "0", "--bits-per-feature", "bmi=3,s5=2", "--json")
    assert only.returncode == 0, only.stderr
    assert [w for w in json.loads(only.stdout)["bits_per_feature"].values() if w] == [3, 2]
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    expected = {"age": 0, "sex": 2, "bmi": 4, "bp": 2, "s1": 2, "s2": 2, "s3": 2, "s4": 2, "s5": 2, "s6": 2}
    assert out["bits_per_feature"] == expected and out["bits"] == 4
    assert out["payload_bytes_per_sample"] == 3  # 20 bits
    assert out["settings"]["bits_per_feature"] == list(expected.values())
    assert TrainedModel.load(path).widths == tuple(expected.values())


@pytest.mark.parametrize("file_name, text", [
    ("w.json", json.dumps({"age": 0, "bmi": 4})),
    ("w.csv", "name,bits\nage,0\nbmi,4\n"),
])
def test_widths_file_gives_the_same_widths_as_the_option(tmp_path, file_name, text):
    from softbits.training.allocation import parse_widths

    names = load_dataset("diabetes").feature_names
    path = tmp_path / file_name
    path.write_text(text)
    assert parse_widths(str(path), names, 2) == parse_widths("age=0,bmi=4", names, 2)


@pytest.mark.parametrize("args, message", [
    (["--bits-per-feature", "agex=1"], "'agex', which is not a feature"),
    (["--bits-per-feature", "age=17"], "bits of 'age' must be an integer in 0..16, got 17"),
    (["--bits-per-feature", "age=1,age=2"], "names 'age' twice"),
    (["--bits-per-feature", "age"], "name=bits items"),
    (["--bits", "0", "--bits-per-feature", "age=0"], "every feature has 0 bits"),
    (["--bits", "0"], "bits must be an integer in 1..16"),
    (["--method", "lsq", "--bits-per-feature", "age=0"], "one bit width for every feature"),
    (["--bits-per-feature", "missing.json"], "cannot read --bits-per-feature file"),
])
def test_bad_widths_are_one_line_errors_and_write_nothing(tmp_path, capsys, args, message):
    assert_train_refuses(capsys, tmp_path / "m.safetensors", args, message)


def test_bad_widths_exit_2_from_a_real_process(tmp_path, softbits_cmd, cli_env):
    path = tmp_path / "m.safetensors"
    run = _train_cli(softbits_cmd, cli_env, "--bits-per-feature", "agex=1", "--save", str(path))
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [
        run.stderr.strip()] and "'agex', which is not a feature" in run.stderr
    assert not path.exists()


def test_estimator_takes_widths_and_ignores_unsent_columns(rng):
    from softbits.training.estimators import SoftbitsRegressor

    X = rng.normal(size=(300, 3))
    y = X[:, 0] + 0.5 * X[:, 2]
    est = SoftbitsRegressor(bits_per_feature=(3, 0, 2), layers=1, neurons=8, epochs=2, device="cpu").fit(X, y)
    codes = est.transform(X)
    assert codes[:, 1].max() == 0 and codes[:, 0].max() == 7 and codes[:, 2].max() == 3
    varied = X.copy()
    varied[:, 1] = 1e3
    np.testing.assert_array_equal(est.predict(varied), est.predict(X))


def test_mixed_widths_are_refused_by_stacked_training():
    from softbits.training.stacked import can_stack

    check = can_stack([TrainConfig(bits_per_feature=(3, 0, 2)), TrainConfig(bits_per_feature=(3, 0, 2))])
    assert not check.ok and "per-feature widths" in check.reason


def test_mixed_width_bitwise_forward_computes_the_used_slots_of_the_dense_form(rng):
    """Only the used slots are computed, with the same elementwise operations as the dense
    [B, F, M] form: the hard bits are those of the dense form at the used slots exactly, the
    sigmoids up to the vectorized sigmoid's last bit (its SIMD and scalar paths can differ)."""
    x = _data(rng)[10:]
    q = _make("bw-sq", WIDTHS)
    q.init_from_data(x)
    with torch.no_grad():
        q.thresholds.add_(torch.as_tensor(rng.normal(scale=0.1, size=tuple(q.thresholds.shape)), dtype=torch.float32))
    q.set_temperature(0.37)
    inv_t = q.temperature.reciprocal()
    dense_soft = torch.sigmoid((x * inv_t).unsqueeze(-1) + q.thresholds * -inv_t)[:, q.active]
    dense_hard = (x.unsqueeze(-1) > q.thresholds)[:, q.active].to(x.dtype)
    q.train()
    torch.testing.assert_close(q(x), dense_soft, rtol=1e-6, atol=0)
    q.eval()
    assert torch.equal(q(x), dense_hard)
