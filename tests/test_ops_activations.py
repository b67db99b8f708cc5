"""The activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax, and tf-keras' ThresholdedReLU) replayed in
NumPy equal Keras 3 and tf-keras on models built here and saved as .keras and .h5; they keep the mask.
"""

from __future__ import annotations

import numpy as np
import pytest
from ops_keras import (
    KERAS3,
    Case,
    assert_bad_setting_refused,
    assert_cli_predict_equals_keras,
    assert_edited_file_equals_keras3,
    assert_garbage_settings_refused,
    assert_replay_equals_keras,
    assert_trace_equals_keras,
    branches,
    build_case,
    params,
    rng_input,
    sequence_model,
    traced,
)

import lstm_inspect as li
from lstm_inspect.errors import InputDataError, ModelFileError


def _relus(K, L):
    return branches(
        K, (5, 4),
        L.ReLU(name="plain"),
        L.ReLU(max_value=6.0, name="relu6"),
        L.ReLU(max_value=1.5, name="capped"),
        L.ReLU(negative_slope=0.1, name="leaky"),
        L.ReLU(negative_slope=0.2, threshold=0.5, name="slope_threshold"),
        L.ReLU(threshold=0.3, max_value=1.2, name="threshold_capped"),
        L.ReLU(negative_slope=0.1, max_value=2.0, name="slope_capped"),
        L.ReLU(negative_slope=0.3, threshold=0.4, max_value=2.5, name="all_three"),
    )


def _leaky(K, L):
    # Keras 3 calls the slope negative_slope, tf-keras alpha; both default to 0.3.
    slope = {"negative_slope": 0.05} if K.__name__ == "keras" else {"alpha": 0.05}
    return branches(K, (5, 4), L.LeakyReLU(name="default"), L.LeakyReLU(name="small", **slope))


def _elus(K, L):
    return branches(K, (5, 4), L.ELU(name="default"), L.ELU(alpha=0.5, name="half"), L.ELU(alpha=2.0, name="double"))


def _prelus(K, L):
    return branches(K, (5, 4), L.PReLU(name="full"), L.PReLU(shared_axes=[1], name="shared_steps"),
                    L.PReLU(shared_axes=[1, 2], name="shared_all"))


def _prelu_images(K, L):
    return branches(K, (3, 4, 2), L.PReLU(name="full"), L.PReLU(shared_axes=[1, 2], name="per_channel"))


def _softmaxes(K, L):
    return branches(K, (5, 4), L.Softmax(name="last"), L.Softmax(axis=1, name="steps"),
                    L.Softmax(axis=[1, 2], name="both"))


def _thresholded(K, L):
    return branches(K, (5, 4), L.ThresholdedReLU(name="default"), L.ThresholdedReLU(theta=0.4, name="low"))


def _activations_lstm(K, L):
    return sequence_model(K, L, (6, 3), L.Dense(5, name="dense"), L.PReLU(name="prelu"), L.ELU(alpha=0.7, name="elu"),
                          L.Softmax(name="softmax"))


def _masked_activations_lstm(K, L):
    """Masking -> activation layers -> LSTM: the mask passes through them to the LSTM."""
    return sequence_model(K, L, (6, 3), L.Masking(name="masking"), L.ReLU(negative_slope=0.1, name="relu"),
                          L.LeakyReLU(name="leaky"), L.PReLU(name="prelu"), L.ELU(name="elu"))


def _masked_input(seed):
    x = rng_input((3, 6, 3), seed, scale=2.0)
    x[0, 1:3] = 0.0
    x[2, 4:] = 0.0
    return x


def _masked_softmax(K, L):
    # Keras 3 builds this only because steps == features (4 == 4): the mask lines up with the last axes.
    return K.Sequential([K.Input((4, 4)), L.Masking(name="masking"), L.Softmax(name="softmax")])


def _relu_input():
    x = rng_input((3, 5, 4), 1, scale=2.0)
    x[0, 0] = [7.5, -3.0, 0.45, 1.3]  # above relu6's cap, far below zero, between threshold and cap
    return x


CASES = [
    Case("relus", _relus, _relu_input()),
    Case("leaky", _leaky, rng_input((3, 5, 4), 2, scale=2.0)),
    Case("elus", _elus, rng_input((3, 5, 4), 3, scale=2.0)),
    Case("prelus", _prelus, rng_input((3, 5, 4), 4, scale=2.0)),
    Case("prelu_images", _prelu_images, rng_input((2, 3, 4, 2), 5, scale=2.0)),
    Case("softmaxes", _softmaxes, rng_input((3, 5, 4), 6, scale=3.0)),
    Case("thresholded", _thresholded, rng_input((3, 5, 4), 7, scale=2.0), ("tfkeras",)),  # not in Keras 3
    Case("activations_lstm", _activations_lstm, rng_input((3, 6, 3), 8)),
    Case("masked_activations_lstm", _masked_activations_lstm, _masked_input(9)),
]
BY_ID = {case.id: case for case in CASES}
TRACED = ["activations_lstm", "masked_activations_lstm"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops_activations")
    return {case.id: build_case(case, folder) for case in CASES}


@pytest.mark.parametrize("case_id, backend, suffix", params(CASES))
def test_predict_equals_keras(built, case_id, backend, suffix):
    assert_replay_equals_keras(built[case_id], backend, suffix)


@pytest.mark.parametrize("case_id", ["relus", "softmaxes", "prelus", "elus"])
def test_float64_replay_equals_keras(built, case_id):
    """The float64 replay (``--dtype float64``) gives float64 arrays within TOL of Keras' float32."""
    assert_replay_equals_keras(built[case_id], "keras3", "keras", dtype=np.float64)


@pytest.mark.parametrize("case_id, backend, suffix", params([BY_ID[i] for i in TRACED]))
def test_lstm_after_the_layers_traced_as_keras(built, case_id, backend, suffix):
    assert_trace_equals_keras(built[case_id], backend, suffix)


@pytest.mark.parametrize("backend, suffix", [("keras3", "keras"), ("tfkeras", "h5")])
def test_activation_layers_keep_the_mask(built, backend, suffix):
    """The LSTM after Masking -> ReLU -> LeakyReLU -> PReLU -> ELU skips exactly the all-zero steps."""
    case = built["masked_activations_lstm"]
    model = li.load_model(str(case.paths[(backend, suffix)]))
    masked = traced(model, case.x, value="masked")[..., 0].astype(bool)  # one flag per (sequence, step)
    np.testing.assert_array_equal(masked, ~np.any(case.x != 0, axis=-1))
    assert masked.any()


def test_the_relu_settings_reach_every_region(built):
    """The inputs cross each setting's threshold, slope and cap: the outputs are not all alike."""
    case = built["relus"]
    outputs = case.expected("keras3")
    distinct = {np.round(output, 5).tobytes() for output in outputs}
    assert len(distinct) == len(outputs)
    assert min(o.min() for o in outputs) < -0.1 and max(o.max() for o in outputs) > 2.5


def test_softmax_with_a_step_mask_over_features_is_refused(tmp_path):
    """Keras 3 lines an (N, T) mask up with the last two axes of an (N, T, F) softmax input, so its
    result depends on the batch size (and fails for most sizes): the replay refuses it in one line."""
    case = build_case(Case("masked_softmax", _masked_softmax, rng_input((1, 4, 4), 10), KERAS3), tmp_path)
    model = li.load_model(str(case.paths[("keras3", "keras")]))
    with pytest.raises(InputDataError, match="'softmax' \\(Softmax\\) gets a step mask"):
        li.predict(model, case.x)


def test_predict_on_the_command_line(built, tmp_path):
    assert_cli_predict_equals_keras(built["activations_lstm"], "keras3", "h5", tmp_path)


@pytest.mark.parametrize(
    "case_id, layer, remove",
    [
        pytest.param("leaky", "small", ("negative_slope",), id="leaky-slope"),
        pytest.param("elus", "half", ("alpha",), id="elu-alpha"),
        pytest.param("softmaxes", "steps", ("axis",), id="softmax-axis"),
        pytest.param("relus", "all_three", ("negative_slope", "threshold", "max_value"), id="relu-all"),
    ],
)
def test_missing_settings_take_keras_defaults(built, tmp_path, case_id, layer, remove):
    """A config without the key (as older files have) means what it means to Keras 3 loading it."""
    assert_edited_file_equals_keras3(built[case_id], tmp_path, layer, remove)


@pytest.mark.parametrize(
    "case_id, layer, changes, words",
    [
        pytest.param("relus", "capped", {"max_value": "high"}, "max_value", id="relu-text"),
        pytest.param("relus", "leaky", {"negative_slope": float("nan")}, "negative_slope", id="relu-nan"),
        pytest.param("leaky", "small", {"negative_slope": float("inf")}, "negative_slope", id="leaky-inf"),
        pytest.param("elus", "half", {"alpha": [1, 2]}, "alpha", id="elu-list"),
        pytest.param("softmaxes", "steps", {"axis": "1"}, "axis", id="softmax-text"),
    ],
)
def test_bad_settings_are_one_line_errors(built, tmp_path, case_id, layer, changes, words):
    assert_bad_setting_refused(built[case_id], tmp_path, layer, changes, ModelFileError, words)

def test_garbage_settings_never_crash():
    """Random garbage in the config and weights of these layers ends in a one-line error or a result."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf/NaN settings overflow float32, as in Keras
        assert_garbage_settings_refused(
            ["ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "ThresholdedReLU"], trials=3000, seed=11)
