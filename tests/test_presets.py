import json

import pytest

from edge_fer.errors import PresetError
from edge_fer.models import build_model
from edge_fer.presets import PRESETS, ModelPreset, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_round_trips_through_json(name):
    preset = get_preset(name)
    again = ModelPreset.from_dict(json.loads(json.dumps(preset.to_dict())))
    assert again == preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_rebuilt_preset_builds_the_same_architecture(name):
    preset = get_preset(name)
    again = ModelPreset.from_dict(json.loads(json.dumps(preset.to_dict())))
    a, b = build_model(preset), build_model(again)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(PresetError, match="stt_tiny"):
        get_preset("stt_huge")


def test_malformed_record_is_a_preset_error():
    record = get_preset("stt_tiny").to_dict()
    del record["preprocessing"]["mean"]
    with pytest.raises(PresetError, match="malformed"):
        ModelPreset.from_dict(record)


def test_preprocessing_checks_channel_count():
    record = get_preset("stt_tiny").to_dict()
    record["preprocessing"]["std"] = [1.0]
    with pytest.raises(PresetError, match="one value per channel"):
        ModelPreset.from_dict(record)


def test_with_classes_changes_the_output_width():
    mafw = (
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
        "contempt",
        "anxiety",
        "helplessness",
        "disappointment",
    )
    model = build_model(get_preset("stt_tiny").with_classes(mafw)).eval()
    assert model(model.example_input("full", 1)).shape == (1, 11)


def test_bad_arch_is_a_preset_error():
    import dataclasses

    bad = dataclasses.replace(get_preset("stt_tiny"), arch={"embed_dim": 90, "num_heads": 4})
    with pytest.raises(PresetError, match="not divisible"):
        build_model(bad)
