"""Every setting is checked by its config's validation, with a message naming it and its range."""

import dataclasses

import pytest
import torch

from rl_coordconv.agents.a2c import A2CConfig
from rl_coordconv.agents.apex import ApeXConfig
from rl_coordconv.agents.config import Range, apply_overrides, check_ranges
from rl_coordconv.agents.distributed import DistributedConfig
from rl_coordconv.agents.dqn import DQNConfig
from rl_coordconv.agents.experiment import ExperimentConfig, config_from_dict
from rl_coordconv.devices import check_device

AGENT_CONFIGS = [(A2CConfig, "a2c"), (DQNConfig, "dqn"), (ApeXConfig, "apex"), (DistributedConfig, "distributed")]


def test_ranges_say_what_they_accept():
    assert str(Range(0, 1)) == "[0, 1]" and 0 in Range(0, 1) and 1 in Range(0, 1) and 1.5 not in Range(0, 1)
    assert str(Range(0, low_open=True)) == "(0, inf)" and 0 not in Range(0, low_open=True) and 1e9 in Range(0, low_open=True)
    assert str(Range(0, 1, low_open=True)) == "(0, 1]" and 0 not in Range(0, 1, low_open=True)
    assert str(Range(0, 1, high_open=True)) == "[0, 1)" and 1 not in Range(0, 1, high_open=True)
    assert str(Range(1)) == "[1, inf)" and 0 not in Range(1)


def outside(accepted: Range) -> list[float]:
    """Values just outside each finite end of ``accepted``."""
    values = []
    if accepted.low is not None:
        values.append(accepted.low if accepted.low_open else accepted.low - 1)
    if accepted.high is not None:
        values.append(accepted.high if accepted.high_open else accepted.high + 0.5)
    return values


@pytest.mark.parametrize("config_class, prefix", AGENT_CONFIGS)
def test_every_numeric_setting_is_refused_outside_its_range(config_class, prefix):
    config_class().validate()  # the defaults pass
    numeric = [field.name for field in dataclasses.fields(config_class) if field.type in ("int", "float", int, float)]
    assert sorted(numeric) == sorted(config_class.RANGES)  # every numeric setting has a range
    for name in numeric:
        for value in outside(config_class.RANGES[name]):
            config = dataclasses.replace(config_class(), **{name: value})
            with pytest.raises(ValueError, match=rf"^{prefix}\.{name} must be in "):
                config.validate()


def test_a_setting_without_a_range_is_a_programming_error():
    @dataclasses.dataclass
    class Settings:
        rate: float = 0.5

    with pytest.raises(TypeError, match="Settings.rate has no range"):
        check_ranges(Settings(), {}, "test")


def test_the_experiment_checks_its_agents_settings():
    config = ExperimentConfig(agent="apex", device="cpu")
    config.apex.alpha = 2.0
    with pytest.raises(ValueError, match=r"apex.alpha must be in \[0, 1\], got 2.0"):
        config.validate()
    config = ExperimentConfig(agent="a2c", device="cpu", eval_episodes=-1)
    with pytest.raises(ValueError, match=r"eval_episodes must be in \[0, inf\), got -1"):
        config.validate()


def test_a_renamed_setting_still_works_from_the_command_line_with_a_warning_naming_the_new_key():
    config = ExperimentConfig(agent="apex")
    with pytest.warns(FutureWarning, match=r"'apex\.n_steps' is now 'apex\.return_horizon'"):
        apply_overrides(config, ["apex.n_steps=5"])
    assert config.apex.return_horizon == 5
    assert not hasattr(config.apex, "n_steps")
    assert config.a2c.n_steps == 5 and A2CConfig().n_steps == 5  # the default, untouched
    apply_overrides(config, ["a2c.n_steps=7"])  # A2C's rollout length keeps its SB3 name, no warning
    assert (config.a2c.n_steps, config.apex.return_horizon) == (7, 5)


def test_a_config_json_written_before_a_rename_reads_back_under_the_new_name():
    saved = dataclasses.asdict(ExperimentConfig(agent="apex"))
    saved["apex"]["n_steps"] = saved["apex"].pop("return_horizon") + 2  # as version 0.2.0 wrote it: 5
    config = config_from_dict(saved)
    assert config.apex.return_horizon == 5
    expected = {key: value for key, value in saved["apex"].items() if key != "n_steps"}
    assert dataclasses.asdict(config.apex) == {**expected, "return_horizon": 5}


def test_devices_are_checked_by_name_and_against_the_gpus_there_are(monkeypatch):
    for name in ("auto", "cpu", "cpu:0"):
        check_device(name)
    for name in ("mps", "meta", "gpu", "cuda:x", "tpu"):
        with pytest.raises(ValueError, match=f"unknown device '{name}'; use auto, cpu, cuda or cuda:<index>"):
            check_device(name)
    with pytest.raises(ValueError, match="unknown device 'auto'; use cpu, cuda or cuda:<index>"):
        check_device("auto", allow_auto=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda:0' asked for, but this torch .* sees no CUDA GPU; use auto or cpu"):
        check_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cpu:0")
    check_device("cuda")
    check_device("cuda:1")
    with pytest.raises(ValueError, match=r"'cuda:2' asked for, but this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        check_device("cuda:2")


def test_the_run_settings_hold_one_field_per_registered_agent_of_its_settings_class():
    """ExperimentConfig is a plain dataclass: adding an agent to the registry takes its field too."""
    import dataclasses

    from rl_coordconv.agents.registry import AGENTS

    fields = {field.name: field for field in dataclasses.fields(ExperimentConfig)}
    for name, spec in AGENTS.items():
        assert fields[name].type in (spec.settings, spec.settings.__name__), name
        assert isinstance(getattr(ExperimentConfig(), name), spec.settings)
    assert [name for name in fields if name in AGENTS] == list(AGENTS)  # config.json keeps the registry's order
