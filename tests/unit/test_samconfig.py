"""samconfig files and parameters, read as the SAM CLI reads them (and merged where it replaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import UsageError
from sandbox.samconfig import parse_key_values, read_samconfig, resolve_parameters

TEMPLATE = {
    "Parameters": {
        "Stage": {"Type": "String", "AllowedValues": ["dev", "prod"]},
        "CardLimit": {"Type": "Number"},
        "Greeting": {"Type": "String", "Default": "hello"},
    }
}


def write(tmp_path: Path, text: str, name: str = "samconfig.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_deploy_keys_sit_over_global_ones_of_the_chosen_env(tmp_path: Path) -> None:
    # GIVEN a file with global and deploy keys in two environments
    path = write(
        tmp_path,
        """version = 0.1
[default.global.parameters]
region = "eu-west-1"
stack_name = "from-global"
[default.deploy.parameters]
stack_name = "trips"
parameter_overrides = "Stage=dev CardLimit=500"
tags = 'team=travel note="two words"'
capabilities = "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
[prod.deploy.parameters]
stack_name = "trips-prod"
""",
    )
    # WHEN the default env is read
    config = read_samconfig(path, None)
    # THEN deploy's keys win over global's, and lists are parsed as the SAM CLI parses them
    assert (config.env, config.text("stack_name"), config.text("region")) == ("default", "trips", "eu-west-1")
    assert config.parameter_overrides == {"Stage": "dev", "CardLimit": "500"}
    assert config.tags == {"team": "travel", "note": "two words"}
    assert config.capabilities == ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    assert read_samconfig(path, "prod").text("stack_name") == "trips-prod"


def test_a_local_engine_reads_the_local_env_first_and_aws_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """version = 0.1
[default.deploy.parameters]
parameter_overrides = ["Stage=prod"]
[local.deploy.parameters]
parameter_overrides = ["Stage=dev"]
""",
    )
    assert read_samconfig(path, None).parameter_overrides == {"Stage": "dev"}
    assert read_samconfig(path, None, is_local=False).parameter_overrides == {"Stage": "prod"}


def test_a_yaml_samconfig_reads_the_same(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 0.1\ndefault:\n  deploy:\n    parameters:\n      stack_name: trips\n",
                 "samconfig.yaml")  # fmt: skip
    assert read_samconfig(path, None).text("stack_name") == "trips"


def test_an_unknown_env_and_a_broken_file_are_one_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, "version = 0.1\n[default.deploy.parameters]\nstack_name = 'x'\n")
    with pytest.raises(UsageError, match="has no such environment") as raised:
        read_samconfig(path, "staging")
    assert raised.value.hint == "it has: default"
    with pytest.raises(UsageError, match=r"samconfig\.toml is not valid"):
        read_samconfig(write(tmp_path, "[default\n"), None)


def test_key_values_take_both_spellings_and_refuse_a_bare_word() -> None:
    assert parse_key_values("ParameterKey=Stage,ParameterValue=dev Limit=5", what="x") == {
        "Stage": "dev",
        "Limit": "5",
    }
    assert parse_key_values(['Name="a b"', "Empty="], what="x") == {"Name": "a b", "Empty": ""}
    with pytest.raises(UsageError, match="'Stage' is not Key=Value"):
        parse_key_values("Stage", what="--parameter-overrides")


def test_parameters_merge_command_line_over_file_and_are_checked() -> None:
    # GIVEN the file's values and the command line's
    values = resolve_parameters(TEMPLATE, {"Stage": "dev", "CardLimit": "500"}, {"CardLimit": "900"})
    # THEN the command line wins for the names it gives, the file's others stay (merged)
    assert values == {"Stage": "dev", "CardLimit": "900"}


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (({"Stage": "dev", "CardLimit": "1", "Nope": "x"},), "unknown parameter Nope"),
        (({"Stage": "test", "CardLimit": "1"},), "parameter Stage='test' is not allowed"),
        (({"Stage": "dev"},), "parameter CardLimit has no value and no Default"),
    ],
)
def test_a_wrong_parameter_is_refused_before_any_call(
    layers: tuple[dict[str, str], ...], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_parameters(TEMPLATE, *layers)
