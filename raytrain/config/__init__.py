"""Experiment configs: the schema (`schema`), reading YAML with `extends` and `--set` (`loading`),
problems told as `file: dotted.path: message` (`messages`), search spaces expanded into experiments
(`search_space`) and torchvision's model names (`model_names`).

Imports pydantic and yaml; never torch or ray (`make lint` checks): `validate` and planning stay fast.
"""

from raytrain.config.loading import (
    CONFIG_SUFFIXES,
    find_configs,
    load_config,
    parse_override,
    published_config_hash,
    validate_config,
)
from raytrain.config.messages import ConfigError
from raytrain.config.schema import (
    AugmentationConfig,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    OtherConfig,
    ResourcesConfig,
    SearchConfig,
    TrainingConfig,
    config_hash,
    differences,
    resolved_dict,
    to_yaml,
)

__all__ = [
    "CONFIG_SUFFIXES",
    "AugmentationConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelConfig",
    "OtherConfig",
    "ResourcesConfig",
    "SearchConfig",
    "TrainingConfig",
    "config_hash",
    "differences",
    "find_configs",
    "load_config",
    "published_config_hash",
    "parse_override",
    "resolved_dict",
    "to_yaml",
    "validate_config",
]
