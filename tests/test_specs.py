"""Saved configs: schema 2 round-trips through JSON for every model kind, a grid and a minibatch schedule; the flat
schema-1 config written by the code before the refactor (a literal copy of its `to_dict()`) reads as the same
numbers in schema 2, also from a results directory; a bad schema, model kind or field is one sentence naming it.
"""

import dataclasses
import json

import pytest

from configs import S3_VS_A3Z2, small
from grokjax.errors import UserError
from grokjax.models import LinearSpec, MLP2Spec, MLP3Spec
from grokjax.optim import OptimizerSpec
from grokjax.problems import GroupsProblem
from grokjax.run.specs import SweepConfig, read_config
from grokjax.run.sweep import read_sweep_config
from grokjax.train import Schedule

# What the schema-1 code (commit 292b981) saved as config.json's "sweep" for a non-default config.
_SCHEMA_1 = {
    "groups": ["S(3)", "times(A(3),Z(2))"], "task": "intersection_plus", "fraction": 1.0, "group_fractions": [0.1, 0.0],
    "iid_group": 0, "data_seed": 3, "seed": 5, "n_seeds": 7, "grok_threshold": 0.999, "ci_method": "wilson",
    "seeds_per_call": 4, "lr_grid": [0.01, 0.003], "weight_decay_grid": [],
    "train": {"embed_dim": 8, "hidden_dim": 16, "unembed_bias": False, "optimizer": "sgd", "lr": 0.01, "beta1": 0.9,
              "beta2": 0.98, "eps": 1e-08, "weight_decay": 2e-05, "momentum": 0.5, "epochs": 40, "log_every": 10,
              "keep_every": 20, "matmul_precision": "high"}}


def schema_1(**train) -> dict:
    """A fresh copy of the schema-1 sweep config, with `train` fields added."""
    d = json.loads(json.dumps(_SCHEMA_1))
    d["train"].update(train)
    return d

SCHEMA_1_AS_2 = SweepConfig(
    problem=GroupsProblem(S3_VS_A3Z2, "intersection_plus", 1.0, (0.1, 0.0), 0, 3),
    model=MLP2Spec(8, 16, False), optimizer=OptimizerSpec("sgd", 0.01, 0.9, 0.98, 1e-8, 2e-5, 0.5),
    schedule=Schedule(length=40, log_every=10, keep_every=20), seed=5, n_seeds=7, seeds_per_call=4,
    lr_grid=(0.01, 0.003), matmul_precision="high")


def saved(sweep: dict, **top) -> dict:
    """A parsed config.json holding `sweep`, through JSON text as on disk."""
    return json.loads(json.dumps({"schema": 2, "sweep": sweep, "task": {}, "environment": {}, **top}))


@pytest.mark.parametrize("cfg", [
    small(model=MLP2Spec(8, 16, False)),
    small(model=MLP3Spec(8, 64), lr_grid=(1e-2, 3e-3), weight_decay_grid=(0.0, 1e-3), n_seeds=5),
    small(model=LinearSpec(bias=False), kind="adamw", matmul_precision="default"),
    dataclasses.replace(small(), optimizer=OptimizerSpec(filter="ema"), filter_alpha_grid=(0.9, 0.98),
                        filter_lambda_grid=(2.0, 5.0)),
    SweepConfig(problem=GroupsProblem(S3_VS_A3Z2, "iid", 0.5, (), 1, 9), model=MLP3Spec(),
                schedule=Schedule(length=12, log_every=4, keep_every=4, batch_size=5, unit="steps", warmup_steps=3)),
], ids=["mlp2", "mlp3-grid", "linear", "grokfast-grid", "minibatch-steps"])
def test_schema_2_round_trips_through_json(cfg):
    back = read_config(saved(cfg.to_dict()))
    assert back == cfg and type(back.model) is type(cfg.model)
    assert back.to_dict() == cfg.to_dict() and isinstance(back.lr_grid, tuple)


def test_schema_1_config_reads_as_the_equivalent_schema_2_config():
    old = {"sweep": schema_1(), "task": {}, "environment": {}}  # the schema-1 code wrote no "schema" key
    assert read_config(old) == SCHEMA_1_AS_2
    assert old["sweep"] == _SCHEMA_1  # the caller's dict is left as it was
    assert read_config(saved(schema_1(), schema=1)) == SCHEMA_1_AS_2
    old_defaults = {"sweep": {"train": {}}, "task": {}}  # every field at its old default: the published run
    assert read_config(old_defaults) == SweepConfig()


def test_results_written_by_the_schema_1_code_still_load(tmp_path):
    config = {"sweep": schema_1(), "task": {"n": 6, "n_train": 24}, "environment": {"jax": "0.4"}}
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2))
    assert read_sweep_config(tmp_path) == SCHEMA_1_AS_2


def refusal(saved_config) -> str:
    with pytest.raises(UserError) as e:
        read_config(saved_config)
    message = str(e.value)
    assert "\n" not in message and message.endswith(".")
    return message


def test_unknown_schema_kind_and_fields_are_refused_with_one_sentence_naming_them():
    d = small().to_dict()
    assert "schema 3" in refusal(saved(d, schema=3))
    assert "'mlp9'" in refusal(saved({**d, "model": {"kind": "mlp9", "embed_dim": 8}}))
    assert "depth" in refusal(saved({**d, "model": {**d["model"], "depth": 2}}))
    assert "warp" in refusal(saved({**d, "warp": 1}))
    assert "nesterov" in refusal(saved({**d, "optimizer": {**d["optimizer"], "nesterov": True}}))
    assert "dropout" in refusal({"sweep": schema_1(dropout=0.1)})
