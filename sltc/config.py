"""Typed run configuration: ``model.yaml`` validated into frozen objects.

Every field says why its default is what it is. Unknown keys and wrong types
are rejected with the dotted path of the key (``ConfigError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

CONFIG_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    arch: str = "mlp"  # a name in sltc.models.MODELS, or python:package.module:factory
    kwargs: dict[str, Any] = Field(default_factory=dict)  # python: factories only
    widths: list[int] = Field(default_factory=lambda: [300, 100])  # hidden widths, `mlp` only
    depth: int | None = Field(default=None, ge=1)  # wrn: 28, 16, ...; vit: blocks (None: preset)
    width: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # ResNets: channel multiplier (None: 1); wrn: the widening factor k (None: 10)
    patch: int | None = Field(default=None, ge=1)  # vit / swin: patch side (None: preset)
    dim: int | None = Field(default=None, ge=1)  # vit / swin: token width (None: preset)
    heads: int | None = Field(default=None, ge=1)  # vit / swin: attention heads (None: preset)
    window: int | None = Field(default=None, ge=1)  # swin: window side (None: preset)
    batchnorm: bool = False  # non-affine BatchNorm after each hidden layer (edge-popup style)
    init: Literal["signed_constant", "uniform", "kaiming_normal"] = "signed_constant"
    # signed constant needs one random bit per weight: cheapest to regenerate, best in edge-popup
    gain: float = Field(default=2**0.5, gt=0, allow_inf_nan=False)
    # Kaiming gain, sqrt(2) for ReLU; larger gains made the controller overshoot (results.md)


class DataConfig(_Strict):
    name: Literal["fashion_mnist", "mnist", "cifar10", "cifar100", "folder", "synthetic",
                  "loaders"] = "fashion_mnist"  # loaders: given in Python (sltc.find_ticket)
    root: str | None = None  # searched first, then the system and user data folders
    val_size: int = Field(default=5000, ge=0)  # carved from the training set, never the test set
    batch_size: int = Field(default=128, ge=1)  # the global batch: torchrun's ranks share it
    synthetic_size: int = Field(default=2048, ge=16)  # training images of `synthetic`
    synthetic_shape: list[int] = Field(default_factory=lambda: [1, 28, 28], min_length=3,
                                       max_length=3)  # (C, H, W) of `synthetic`, e.g. [3, 32, 32]
    augment: list[Literal["crop", "flip"]] = Field(default_factory=list)
    # crop: random 32x32-style crop after zero padding of 4; flip: horizontal; off by default
    # (Fashion-MNIST); the CIFAR examples turn both on, as the SLT papers do
    image_size: list[int] | None = Field(default=None, min_length=2, max_length=2)
    # `folder`: resize every image to [H, W] (None: the first training image's size)
    workers: int = Field(default=2, ge=0)  # `folder`: DataLoader worker processes

class GatesConfig(_Strict):
    method: str = "crbg"  # a name in sltc.gates.GATES
    granularity: Literal["weight", "neuron"] = "weight"
    target_sparsity: float | None = Field(default=0.9, ge=0, lt=1)
    # fraction of gated weights pruned; drives lambda (gate methods) or the top-k (edge_popup)
    lambda_: float = Field(default=1.0, ge=0, alias="lambda", allow_inf_nan=False)
    # starting weight of the expected-L0 term (mean expected density); the controller adapts
    # it towards target_sparsity; 0 turns the L0 term and the controller off
    sigma: float = Field(default=0.5, gt=0)  # CRBG noise std, STG's value
    mu_init: float = Field(default=0.5)  # CRBG mean at init: P(z > 0) = Phi(mu/sigma) = 0.84
    threshold: float = Field(default=0.5, ge=0, lt=1)
    # freeze rule: keep a weight when its deterministic gate exceeds this
    recalibrate: int = Field(default=4096, ge=0)
    # training images whose BatchNorm statistics the ticket stores, recomputed with its
    # binary masks (the run's own were gathered under noisy gates); 0: keep the run's
    gate_first: bool = True  # gate the input layer
    gate_last: bool = True  # gate the classifier (weight granularity only)
    ramp: float = Field(default=0.0, ge=0, le=1)
    # > 0: the controller's target rises linearly to target_sparsity over this fraction of
    # the run; 0 (measured best on the validation split): the target holds from the start
    controller_gain: float = Field(default=5.0, ge=0)
    # integral gain: change of log(lambda) over the whole run per unit of log-density error
    controller_kp: float = Field(default=0.6, ge=0)
    # proportional gain: log(lambda) offset per unit of current log-density error

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TrainConfig(_Strict):
    epochs: int = Field(default=60, ge=1)  # LeNet-300-100: val accuracy rises up to ~60
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(default=0.02, gt=0)  # gate learning rate (tuned on the validation split)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    max_steps: int | None = Field(default=None, ge=1)  # cap on steps per epoch, for smoke runs
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # auto: bf16 autocast for the network on CUDA, fp32 on the CPU; gates, their noise and
    # the L0 term always stay float32; the ticket is evaluated in fp32
    channels_last: bool | None = None  # None: on for networks with convolutions on CUDA
    compile: bool = False  # torch.compile the training forward pass (CUDA: faster steps)


class RunConfig(_Strict):
    version: int = CONFIG_VERSION
    seed: int = Field(default=0, ge=0, lt=2**63)  # the weights, gate noise and data order
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check_version(self) -> RunConfig:
        if self.version != CONFIG_VERSION:
            raise ValueError(f"unsupported config version {self.version}; this sltc reads 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def _check_names(cfg: RunConfig, source: str) -> None:
    """Registry names: checked after validation so the message can list the choices."""
    from .gates import GATES
    from .models import MODELS, PYTHON_PREFIX

    for key, name, registry in (("model.arch", cfg.model.arch, MODELS),
                                ("gates.method", cfg.gates.method, GATES)):
        if key == "model.arch" and name.startswith(PYTHON_PREFIX):
            continue
        if name not in registry:
            raise ConfigError(f"{source}: {key}: unknown {registry.kind} {name!r}; "
                              f"choose one of {', '.join(registry.names())}")


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after",)) or "<root>"


def from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a plain dict; raises ``ConfigError`` naming the offending key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = _dotted(err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{source}: unknown key '{key}'; remove it or fix its spelling") from None
        value = err.get("input")
        raise ConfigError(f"{source}: {key}: {err['msg']} (got {value!r})") from None
    _check_names(cfg, source)
    return cfg


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``KEY=VALUE`` in place; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from None
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML file (or defaults), apply ``--set`` overrides, validate."""
    data: dict[str, Any] = {}
    source = str(path) if path else "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; pass the path to a model.yaml")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}: invalid YAML{where}; fix the syntax") from None
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(data, source)


def save_config(config: RunConfig, path: Path) -> None:
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
