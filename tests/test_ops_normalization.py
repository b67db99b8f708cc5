"""Normalization (the preprocessing layer), Rescaling, BatchNormalization, LayerNormalization,
UnitNormalization, GroupNormalization and RMSNormalization replayed in NumPy equal Keras 3 and tf-keras
(models built here, saved as .keras and .h5); and the inference-time identities (core.py) are the
identity in Keras too.
"""

from __future__ import annotations

import warnings

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

# Time-series-like data: each feature with its own offset and spread (what Normalization is adapted to).
SERIES = (rng_input((40, 6, 3), 30) * np.array([3.0, 0.5, 10.0], "float32") + np.array([5.0, -2.0, 100.0], "float32"))


def _adapted(L, data, **kwargs):
    layer = L.Normalization(**kwargs)
    layer.adapt(data)
    return layer


def _normalization_lstm(K, L):
    """The common time-series model: Normalization adapted to the training series, then an LSTM."""
    return sequence_model(K, L, (6, 3), _adapted(L, SERIES, name="norm"))


def _normalizations(K, L):
    data = SERIES[:, :5, :]
    return branches(
        K, (5, 3),
        _adapted(L, data, axis=None, name="norm_all"),
        _adapted(L, data, axis=(1, 2), name="norm_steps_features"),
        _adapted(L, data, axis=1, name="norm_steps"),
        _adapted(L, data, invert=True, name="norm_invert"),
        L.Normalization(mean=[1.0, -2.0, 50.0], variance=[4.0, 0.25, 900.0], name="norm_given"),
        L.Normalization(mean=3.0, variance=2.0, name="norm_scalar"),
        L.Normalization(mean=[1.0, -2.0, 50.0], variance=[4.0, 0.25, 900.0], invert=True, name="norm_given_invert"),
    )


def _rescalings(K, L):
    return branches(K, (5, 4), L.Rescaling(1.0 / 255, name="scale"), L.Rescaling(2.0, offset=-1.0, name="offset"),
                    L.Rescaling([1.0, 2.0, 3.0, -4.0], offset=[0.5, 0.0, -0.5, 1.0], name="per_channel"))


def _batch_norms(K, L):
    extra = [L.BatchNormalization(axis=[1, 2], name="bn_two_axes")] if K.__name__ == "tf_keras" else []
    return branches(
        K, (5, 4),
        L.BatchNormalization(name="bn"),
        L.BatchNormalization(axis=1, name="bn_steps"),
        L.BatchNormalization(axis=-2, name="bn_steps_negative"),
        L.BatchNormalization(center=False, name="bn_no_beta"),
        L.BatchNormalization(scale=False, name="bn_no_gamma"),
        L.BatchNormalization(epsilon=0.3, name="bn_eps"),
        L.BatchNormalization(renorm=True, name="bn_renorm"),
        *extra,
    )


def _batch_norm_images(K, L):
    return branches(K, (3, 4, 2), L.BatchNormalization(name="bn_channels"), L.BatchNormalization(axis=1, name="bn_rows"),
                    L.BatchNormalization(axis=2, name="bn_columns"))


def _layer_norms(K, L):
    # Keras 3's deprecated rms_scaling: x / sqrt(var + eps) * gamma, no mean subtracted.
    extra = [L.LayerNormalization(rms_scaling=True, name="ln_rms_scaling")] if K.__name__ == "keras" else []
    return branches(
        K, (5, 4),
        L.LayerNormalization(name="ln"),
        L.LayerNormalization(axis=1, name="ln_steps"),
        L.LayerNormalization(axis=[1, 2], name="ln_both"),
        L.LayerNormalization(axis=[1, -1], name="ln_mixed_signs"),
        L.LayerNormalization(center=False, name="ln_no_beta"),
        L.LayerNormalization(scale=False, name="ln_no_gamma"),
        L.LayerNormalization(epsilon=0.5, name="ln_eps"),
        *extra,
    )


def _unit_norms(K, L):
    return branches(K, (5, 4), L.UnitNormalization(name="unit"), L.UnitNormalization(axis=1, name="unit_steps"),
                    L.UnitNormalization(axis=[1, 2], name="unit_both"))


def _group_norms(K, L):
    return branches(K, (5, 6), L.GroupNormalization(groups=2, name="gn_two"), L.GroupNormalization(groups=-1, name="gn_instance"),
                    L.GroupNormalization(groups=1, name="gn_layer"), L.GroupNormalization(groups=5, axis=1, name="gn_steps"),
                    L.GroupNormalization(groups=3, center=False, epsilon=0.2, name="gn_no_beta"))


def _group_norm_images(K, L):
    return branches(K, (3, 4, 6), L.GroupNormalization(groups=3, name="gn_images"))


def _rms_norms(K, L):
    return branches(K, (5, 4), L.RMSNormalization(name="rms"), L.RMSNormalization(axis=[1, 2], epsilon=0.1, name="rms_both"))


def _norms_lstm(K, L):
    return sequence_model(K, L, (6, 3), L.Rescaling(0.5, offset=0.25, name="rescale"), L.BatchNormalization(name="bn"),
                          L.LayerNormalization(name="ln"), L.Dense(4, name="dense"), L.GroupNormalization(groups=2, name="gn"),
                          L.UnitNormalization(name="unit"))


def _video_norms_lstm(K, L):
    """Normalisation inside TimeDistributed: the wrapped layer's axes count on one frame's batch."""
    td = L.TimeDistributed
    return sequence_model(K, L, (4, 3, 5, 2), td(L.BatchNormalization(axis=1), name="td_bn"),
                          td(L.LayerNormalization(axis=[1, 2]), name="td_ln"), td(L.GroupNormalization(groups=2), name="td_gn"),
                          td(L.Flatten(), name="td_flat"))


def _masked_norms_lstm(K, L):
    """Masking -> normalisation layers -> LSTM: the mask passes through them (tf-keras: BN and LN)."""
    layers = [L.Masking(name="masking")]
    if K.__name__ == "keras":
        layers += [_adapted(L, SERIES, name="norm"), L.Rescaling(2.0, name="rescale")]
    layers += [L.BatchNormalization(name="bn"), L.LayerNormalization(name="ln")]
    return sequence_model(K, L, (6, 3), *layers)


def _masked_rms_lstm(K, L):
    """Keras 3's RMSNormalization does not support masking: the mask stops there."""
    return sequence_model(K, L, (6, 3), L.Masking(name="masking"), L.RMSNormalization(name="rms"))


def _masked(x):
    x = x.copy()
    x[0, 1:3] = 0.0
    x[2, 4:] = 0.0
    return x


def _unit_input():
    x = rng_input((3, 5, 4), 36)
    x[1, 2] = 0.0  # a zero vector stays zero
    return x


SERIES_X = rng_input((4, 6, 3), 31) * np.array([3.0, 0.5, 10.0], "float32") + np.array([5.0, -2.0, 100.0], "float32")

CASES = [
    Case("normalization_lstm", _normalization_lstm, SERIES_X, keep=("norm",)),
    Case("normalizations", _normalizations, SERIES_X[:, :5], keep=("norm_all", "norm_steps_features", "norm_steps",
                                                                   "norm_invert")),
    Case("rescalings", _rescalings, rng_input((3, 5, 4), 32, scale=50.0)),
    Case("batch_norms", _batch_norms, rng_input((3, 5, 4), 33, scale=2.0, loc=1.0)),
    Case("batch_norm_images", _batch_norm_images, rng_input((2, 3, 4, 2), 34, scale=2.0)),
    Case("layer_norms", _layer_norms, rng_input((3, 5, 4), 35, scale=2.0, loc=1.0)),
    Case("unit_norms", _unit_norms, _unit_input()),
    Case("group_norms", _group_norms, rng_input((3, 5, 6), 37, scale=2.0, loc=1.0)),
    Case("group_norm_images", _group_norm_images, rng_input((2, 3, 4, 6), 38, scale=2.0)),
    Case("rms_norms", _rms_norms, rng_input((3, 5, 4), 39, scale=2.0), KERAS3),  # Keras 3 only
    Case("norms_lstm", _norms_lstm, rng_input((3, 6, 3), 40, scale=2.0)),
    Case("video_norms_lstm", _video_norms_lstm, rng_input((2, 4, 3, 5, 2), 42, scale=2.0, loc=0.5)),
    Case("masked_norms_lstm", _masked_norms_lstm, _masked(SERIES_X[:3]), keep=("norm",)),
    Case("masked_rms_lstm", _masked_rms_lstm, _masked(rng_input((3, 6, 3), 41)), KERAS3),
]
BY_ID = {case.id: case for case in CASES}
TRACED = ["normalization_lstm", "norms_lstm", "video_norms_lstm", "masked_norms_lstm", "masked_rms_lstm"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops_normalization")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rms_scaling=True is deprecated in Keras 3 and says so
        return {case.id: build_case(case, folder) for case in CASES}


@pytest.mark.parametrize("case_id, backend, suffix", params(CASES))
def test_predict_equals_keras(built, case_id, backend, suffix):
    assert_replay_equals_keras(built[case_id], backend, suffix)


@pytest.mark.parametrize("case_id", ["normalizations", "batch_norms", "layer_norms", "group_norms", "unit_norms"])
def test_float64_replay_equals_keras(built, case_id):
    """The float64 replay (``--dtype float64``) gives float64 arrays within TOL of Keras' float32."""
    assert_replay_equals_keras(built[case_id], "keras3", "keras", dtype=np.float64)


@pytest.mark.parametrize("case_id, backend, suffix", params([BY_ID[i] for i in TRACED]))
def test_lstm_after_the_layers_traced_as_keras(built, case_id, backend, suffix):
    assert_trace_equals_keras(built[case_id], backend, suffix)


def test_normalization_uses_the_adapted_statistics(built):
    """The adapted layer really normalises: Keras' own output of it has mean ~0 and std ~1 per feature
    on the data it was adapted to, and the stored mean is the data's."""
    case = built["normalization_lstm"]
    norm = case.models["keras3"].get_layer("norm")
    np.testing.assert_allclose(np.asarray(norm.mean).reshape(-1), SERIES.reshape(-1, 3).mean(axis=0), rtol=1e-4)
    model = li.load_model(str(case.paths[("keras3", "keras")]))
    assert "norm" in model.weights and set(model.weights["norm"]) >= {"mean", "variance"}


@pytest.mark.parametrize("backend, suffix", [("keras3", "keras"), ("tfkeras", "h5")])
def test_normalisation_layers_keep_the_mask(built, backend, suffix):
    case = built["masked_norms_lstm"]
    masked = traced(li.load_model(str(case.paths[(backend, suffix)])), case.x, value="masked")[..., 0].astype(bool)
    np.testing.assert_array_equal(masked, ~np.any(case.x != 0, axis=-1))
    assert masked.any()


def test_rms_normalization_drops_the_mask(built):
    case = built["masked_rms_lstm"]
    assert not traced(li.load_model(str(case.paths[("keras3", "keras")])), case.x, value="masked").any()


def test_normalization_then_lstm_on_the_command_line(built, tmp_path):
    assert_cli_predict_equals_keras(built["normalization_lstm"], "tfkeras", "h5", tmp_path)


@pytest.mark.parametrize(
    "case_id, layer, remove",
    [
        pytest.param("normalizations", "norm_invert", ("invert",), id="normalization-invert"),
        pytest.param("batch_norms", "bn_eps", ("epsilon",), id="bn-epsilon"),
        pytest.param("layer_norms", "ln_eps", ("epsilon",), id="ln-epsilon"),
        pytest.param("group_norms", "gn_no_beta", ("epsilon",), id="gn-epsilon"),
        pytest.param("unit_norms", "unit_steps", ("axis",), id="unit-axis"),
    ],
)
def test_missing_settings_take_keras_defaults(built, tmp_path, case_id, layer, remove):
    """A config without the key means what it means to Keras 3 loading it."""
    assert_edited_file_equals_keras3(built[case_id], tmp_path, layer, remove)


@pytest.mark.parametrize(
    "case_id, layer, changes, error, words",
    [
        pytest.param("batch_norms", "bn", {"epsilon": "small"}, ModelFileError, "epsilon", id="bn-epsilon-text"),
        pytest.param("batch_norms", "bn", {"axis": 7}, InputDataError, "axis 7", id="bn-axis-outside"),
        pytest.param("layer_norms", "ln", {"axis": ["x"]}, ModelFileError, "axis", id="ln-axis-text"),
        pytest.param("layer_norms", "ln", {"rms_scaling": "yes"}, ModelFileError, "rms_scaling", id="ln-rms-text"),
        pytest.param("normalizations", "norm_given", {"mean": [1.0, float("nan"), 2.0]}, ModelFileError, "mean",
                     id="normalization-nan-mean"),
        pytest.param("normalizations", "norm_given", {"variance": None}, ModelFileError, "variance",
                     id="normalization-no-variance"),
        pytest.param("normalizations", "norm_given", {"mean": [1.0, 2.0], "variance": [1.0, 2.0]}, InputDataError,
                     "do not fit", id="normalization-misfit"),
        pytest.param("rescalings", "scale", {"scale": "big"}, ModelFileError, "scale", id="rescaling-text"),
        pytest.param("group_norms", "gn_two", {"groups": 0}, ModelFileError, "groups", id="groups-zero"),
        pytest.param("group_norms", "gn_two", {"groups": 4}, InputDataError, "4 groups", id="groups-misfit"),
    ],
)
def test_bad_settings_are_one_line_errors(built, tmp_path, case_id, layer, changes, error, words):
    assert_bad_setting_refused(built[case_id], tmp_path, layer, changes, error, words)


# ------------------------------------------------------------------ the inference-time identities (core.py)


def _identities(K, L):
    layers = [L.Dropout(0.5, name="dropout"), L.SpatialDropout1D(0.5, name="spatial1d"), L.GaussianNoise(1.0, name="noise"),
              L.GaussianDropout(0.5, name="gaussian_dropout"), L.AlphaDropout(0.5, name="alpha_dropout"),
              L.ActivityRegularization(l1=0.1, l2=0.1, name="activity"), L.Identity(name="identity")]
    return branches(K, (5, 4), *layers)


# Image augmentations act only in training (settings chosen to change images when they do act).
AUGMENTATIONS_BOTH = {
    "RandomFlip": {"mode": "horizontal_and_vertical"}, "RandomRotation": {"factor": 0.3},
    "RandomTranslation": {"height_factor": 0.2, "width_factor": 0.2}, "RandomZoom": {"height_factor": 0.3},
    "RandomContrast": {"factor": 0.5}, "RandomBrightness": {"factor": 0.4},
}
AUGMENTATIONS_KERAS3 = {
    "RandomGrayscale": {"factor": 0.5}, "RandomHue": {"factor": 0.5, "value_range": (0, 255)},
    "RandomSaturation": {"factor": 0.5, "value_range": (0, 255)}, "RandomSharpness": {"factor": 0.5, "value_range": (0, 255)},
    "RandomShear": {"x_factor": 0.3, "y_factor": 0.2},
    "RandomColorJitter": {"value_range": (0, 255), "brightness_factor": 0.3, "contrast_factor": 0.3},
    "RandomColorDegeneration": {"factor": 0.5}, "RandomInvert": {"factor": 0.5}, "RandomPosterization": {"factor": (1, 4)},
    "RandomErasing": {"factor": 0.5}, "RandomGaussianBlur": {"factor": 0.5}, "RandomPerspective": {"factor": 0.5},
    "RandomElasticTransform": {"factor": 0.5}, "AugMix": {}, "CutMix": {}, "MixUp": {}, "RandAugment": {},
}


def _augmentations(K, L):
    found = dict(AUGMENTATIONS_BOTH, **(AUGMENTATIONS_KERAS3 if K.__name__ == "keras" else {}))
    return branches(K, (8, 8, 3), *[getattr(L, name)(name=name.lower(), **kwargs) for name, kwargs in found.items()])


IDENTITY_CASES = [
    # Keras 3 cannot write RandomBrightness, RandomSaturation, ... to .h5 (TypeError: cannot pickle 'module' object).
    Case("augmentations", _augmentations, np.random.default_rng(53).uniform(-50, 300, (2, 8, 8, 3)).astype("float32"),
         formats=(("keras3", "keras"), ("tfkeras", "h5"))),
    Case("identities", _identities, rng_input((3, 5, 4), 50)),
    Case("spatial2d", lambda K, L: branches(K, (3, 4, 2), L.SpatialDropout2D(0.5, name="spatial2d")),
         rng_input((2, 3, 4, 2), 51)),
    Case("spatial3d", lambda K, L: branches(K, (2, 3, 4, 2), L.SpatialDropout3D(0.5, name="spatial3d")),
         rng_input((2, 2, 3, 4, 2), 52)),
]


@pytest.fixture(scope="module")
def identities(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ops_identities")
    return {case.id: build_case(case, folder) for case in IDENTITY_CASES}


@pytest.mark.parametrize("case_id, backend, suffix", params(IDENTITY_CASES))
def test_identities_at_inference_equal_keras(identities, case_id, backend, suffix):
    """Dropout, SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout,
    ActivityRegularization, Identity and the image augmentations: Keras' predict gives the input back,
    and so does the replay."""
    case = identities[case_id]
    for output in case.expected(backend):
        np.testing.assert_array_equal(output, case.x)
    assert_replay_equals_keras(case, backend, suffix)


def test_garbage_settings_never_crash():
    """Random garbage in the config and weights of these layers ends in a one-line error or a result."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf/NaN settings overflow float32, as in Keras
        assert_garbage_settings_refused(
            ["Normalization", "Rescaling", "BatchNormalization", "LayerNormalization", "UnitNormalization",
     "GroupNormalization", "RMSNormalization"], trials=3000, seed=13)
