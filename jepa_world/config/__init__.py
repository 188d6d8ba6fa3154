"""Configuration: one complete typed default, YAML recipes as small diffs, `key=value` command-line overrides.

Order of precedence: the dataclass defaults (`schema.py`) < each `--config FILE` in order < flag values <
`key=value` overrides (`load.py`). An unknown key or a value of the wrong type fails at once with a message that
names the key (and suggests the closest valid key for a typo); `checks.validate` then checks the values that types
cannot express, for every section in one place. The resolved config is saved as `config.yaml` in every run directory.

Sections: model / predictor / masks / data / optim / train for pretraining (`jepa-world pretrain`), wm for world models
(`train-wm`), plan for goal-reaching evaluation (`plan`), probe for frozen probes (`probe`). Every command takes
`--config FILE` and `key=value` overrides against this one schema.
"""

from jepa_world.config.checks import PATH_KEYS, validate
from jepa_world.config.load import defaults_table, load_config, saved_config, to_yaml
from jepa_world.config.schema import (
    COMMAND_DEFAULTS,
    Choice,
    Config,
    ConfigError,
    CostReduce,
    DataConfig,
    DataSource,
    EmaSchedule,
    EncoderComponent,
    Loss,
    LrSchedule,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    PlanAgent,
    PlanConfig,
    PlanEnv,
    PlannerKind,
    PlannerSettings,
    PolicyConfig,
    PolicyMethod,
    PosEmbed,
    Precision,
    PredictorConfig,
    ProbeConfig,
    ProbeKind,
    Reader,
    TrainConfig,
    WorldModelConfig,
)

__all__ = [
    "COMMAND_DEFAULTS",
    "PATH_KEYS",
    "Choice",
    "Config",
    "ConfigError",
    "CostReduce",
    "DataConfig",
    "DataSource",
    "EmaSchedule",
    "EncoderComponent",
    "Loss",
    "LrSchedule",
    "MaskConfig",
    "ModelConfig",
    "OptimConfig",
    "PlanAgent",
    "PlanConfig",
    "PlanEnv",
    "PlannerKind",
    "PlannerSettings",
    "PolicyConfig",
    "PolicyMethod",
    "PosEmbed",
    "Precision",
    "PredictorConfig",
    "ProbeConfig",
    "ProbeKind",
    "Reader",
    "TrainConfig",
    "WorldModelConfig",
    "defaults_table",
    "load_config",
    "saved_config",
    "to_yaml",
    "validate",
]
