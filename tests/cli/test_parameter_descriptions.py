"""Every flow parameter has a description, so `advdesign COMMAND --help` and the Prefect UI's run form say what
each field means (issue 14)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel


def _flows():
    from flows.baselines import BaselineParameters, baselines
    from flows.campaign import campaign
    from flows.design_search import DesignParameters, design_search
    from flows.parameters import CampaignParameters
    from flows.train_surrogate import TrainParameters, train_surrogate
    from flows.tune import TuneParameters, tune

    return {"campaign": (campaign, CampaignParameters), "train": (train_surrogate, TrainParameters),
            "design": (design_search, DesignParameters), "tune": (tune, TuneParameters),
            "baselines": (baselines, BaselineParameters)}


def _undescribed(model: type[BaseModel], prefix: str = "") -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        if not field.description:
            missing.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            missing += _undescribed(field.annotation, prefix + name + ".")
    return missing


@pytest.mark.parametrize("name", ["campaign", "train", "design", "tune", "baselines"])
def test_every_field_has_a_description_in_the_model_and_in_prefects_form(name):
    from prefect.utilities.callables import parameter_schema

    flow, model = _flows()[name]
    assert _undescribed(model) == []
    schema = parameter_schema(flow.fn).model_dump_for_openapi()
    definitions = schema.get("definitions", {})
    for definition in definitions.values():
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), (name, definition.get("title"), field)
