"""Typed run configuration: ``model.yaml`` validated into frozen objects.

Every field says why its default is what it is, in its description: ``sltc config``
prints them (``reference``). Unknown keys and wrong types are rejected with the dotted
path of the key (``ConfigError``), an unknown key with the closest valid one.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .format.config_record import start
from .format.errors import ConfigError
from .format.limits import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_IMAGE_SIDE,
    MAX_IMAGES,
    MAX_SIDE,
    MAX_SYNTHETIC_PIXELS,
    MAX_WORKERS,
)
from .format.records import AUGMENTS, DATASETS

CONFIG_VERSION = 1
MAX_WIDTH = 1 << 16  # units or channels of one layer
CRBG_METHODS = ("crbg", "crbg_st")
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]  # an image side or channel count
ImageSide = Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _f(default=..., why: str = "", **kw):
    """A config field whose one-line reason is its description (``sltc config`` prints it)."""
    if callable(default):
        return Field(default_factory=default, description=why, **kw)
    return Field(default=default, description=why, **kw)


class ModelConfig(_Strict):
    arch: str = _f("mlp", "a name in sltc.models.MODELS, or python:package.module:factory")
    kwargs: dict[str, Any] = _f(dict, "keyword arguments of a python: factory")
    widths: list[Width] = _f(lambda: [300, 100], "hidden widths of `mlp` (LeNet-300-100)",
                             max_length=256)
    depth: int | None = _f(None, "wrn: 28, 16, ...; vit: blocks (null: the preset's)", ge=1,
                           le=2000)
    width: float | None = _f(None, "ResNets: channel multiplier (null: 1); wrn: the widening "
                             "factor k (null: 10)", gt=0, le=64, allow_inf_nan=False)
    patch: int | None = _f(None, "vit / swin: patch side (null: the preset's)", ge=1, le=1024)
    dim: int | None = _f(None, "vit / swin: token width (null: the preset's)", ge=1,
                         le=MAX_WIDTH)
    heads: int | None = _f(None, "vit / swin: attention heads (null: the preset's)", ge=1,
                           le=1024)
    window: int | None = _f(None, "swin: window side (null: the preset's)", ge=1, le=1024)
    batchnorm: bool = _f(False, "mlp / conv: non-affine BatchNorm after each hidden layer "
                         "(edge-popup style)")
    init: Literal["signed_constant", "uniform", "kaiming_normal"] = _f(
        "signed_constant", "weight init: signed constant needs one random bit per weight, "
        "cheapest to regenerate, best in edge-popup")
    gain: float = _f(2**0.5, "Kaiming gain, sqrt(2) for ReLU; larger gains made the "
                     "controller overshoot (results.md)", gt=0, le=100, allow_inf_nan=False)


class DataConfig(_Strict):
    name: Literal[DATASETS] = _f("fashion_mnist", "the dataset; loaders: DataLoaders given "
                                  "in Python (sltc.find_ticket)")
    root: str | None = _f(None, "folder searched first, then the system and user data folders")
    val_size: int = _f(5000, "validation images carved from the training set, never the "
                       "test set; at most half of it (a warning says when it is cut)", ge=0,
                       le=MAX_IMAGES)
    train_size: int | None = _f(None, "train on the first N images of the (shuffled) "
                                "training split, for quick trials (null: all)", ge=1,
                                le=MAX_IMAGES)
    batch_size: int = _f(128, "the global batch: torchrun's ranks share it", ge=1, le=MAX_BATCH)
    synthetic_size: int = _f(2048, "training images of `synthetic`", ge=16, le=MAX_IMAGES)
    synthetic_shape: list[Side] = _f(lambda: [1, 28, 28], "(C, H, W) of `synthetic`, e.g. "
                                    "[3, 32, 32]", min_length=3, max_length=3)
    augment: list[Literal[AUGMENTS]] = _f(
        list, "crop: random crop after zero padding of 4; flip: horizontal; off for "
        "(Fashion-)MNIST, on in the CIFAR examples, as the SLT papers do")
    image_size: list[ImageSide] | None = _f(None, "`folder`: resize every image to [H, W] "
                                           "(null: the first training image's size)",
                                           min_length=2, max_length=2)
    workers: int = _f(2, "`folder`: DataLoader worker processes", ge=0, le=MAX_WORKERS)

    @model_validator(mode="after")
    def _check_synthetic(self) -> DataConfig:
        pixels = self.synthetic_size * math.prod(self.synthetic_shape)
        if self.name == "synthetic" and pixels > MAX_SYNTHETIC_PIXELS:
            raise ValueError(f"synthetic_size x synthetic_shape is {pixels} pixels, over the "
                             f"limit of {MAX_SYNTHETIC_PIXELS}; make the set smaller")
        return self


class GatesConfig(_Strict):
    method: str = _f("crbg", "a name in sltc.gates.GATES: crbg, hard_concrete, edge_popup")
    granularity: Literal["weight", "neuron"] = _f("weight", "one gate per weight, or per "
                                                  "output unit / channel")
    target_sparsity: float | None = _f(0.9, "fraction of gated weights pruned; drives lambda "
                                       "(gate methods) or the top-k (edge_popup)", ge=0, lt=1,
                                       allow_inf_nan=False)
    lambda_: float | None = _f(None, "starting weight of the expected-L0 term; the controller "
                               "adapts it towards target_sparsity; 0 turns both off; null: 0.3 "
                               "for CRBG below a 0.85 target, else 1.0 (results.md section 9)",
                               ge=0, le=1e6, alias="lambda", allow_inf_nan=False)
    sigma: float = _f(0.5, "CRBG noise std, STG's value", gt=0, le=100, allow_inf_nan=False)
    sigma_final: float | None = _f(None, "CRBG: the samples' noise std falls linearly from "
                                   "sigma to this over the run, the L0 term keeping sigma, so "
                                   "that the network trained last is close to the ticket; "
                                   "null: no fall (the CRBG recipe of conv nets and "
                                   "transformers: 0.1, sltc.recipes)",
                                   gt=0, le=100, allow_inf_nan=False)
    mu_margin: float | None = _f(None, "CRBG: after every step mu is kept within [-margin, "
                                 "1 + margin], where the noise still reaches the clamp's "
                                 "inside and the gate still learns; null: unbounded; conv "
                                 "nets' and transformers' CRBG recipe: 0.25 "
                                 "(sltc.recipes)", ge=0, le=100, allow_inf_nan=False)
    spare_dead: bool = _f(False, "CRBG: no L0 push on closed gates whose samples no longer "
                          "reach the clamp's inside, so that they stay within reach instead of "
                          "sinking (results.md section 10)")
    budget: Literal["penalty", "projection"] = _f(
        "penalty", "gate methods: penalty: lambda * expected L0, lambda steered by the "
        "controller; projection: no penalty, the gates are shifted after every step so that "
        "their expected density is at most the (ramped) target, as ProbMask does")
    scope: Literal["global", "layer"] | None = _f(
        None, "where the sparsity target holds: over all gated weights, or in every layer "
        "(a lambda controller per layer, the projection's groups, the freezer's top-k); "
        "null: layer for edge_popup, global for the gate methods")
    layer_sparsity: dict[str, Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]] = _f(
        dict, "edge_popup: a sparsity per layer name, in place of target_sparsity for the "
        "layers named", max_length=4096)
    mu_init: float | None = _f(None, "CRBG mean at init; null: 0.75 below a 0.85 target (training "
                               "starts dense), else 0.5 = the threshold, P(z > 0) = 0.84 "
                               "(results.md section 9)", ge=-100, le=100, allow_inf_nan=False)
    threshold: float = _f(0.5, "freeze rule: keep a weight when its deterministic gate "
                          "exceeds this", ge=0, lt=1, allow_inf_nan=False)
    recalibrate: int = _f(4096, "training images on which freezing recomputes BatchNorm "
                          "statistics with the binary masks (the run's were gathered under "
                          "noisy gates); 0: keep the run's", ge=0, le=MAX_IMAGES)
    gate_first: bool = _f(True, "gate the input layer")
    gate_last: bool = _f(True, "gate the classifier (weight granularity only)")
    deadline: float = _f(0.5, "gate methods: the fraction of the run by which the threshold "
                         "rule holds the target: from then on, where it drifts off by more "
                         "than 0.25 points, every gate of a group is shifted by one amount "
                         "that puts it back, so that the run ends training the ticket's mask "
                         "(results.md section 11); 1: never", ge=0, le=1,
                         allow_inf_nan=False)
    sharpen: float | None = _f(10.0, "CRBG: from gates.deadline on, the samples' mean is "
                               "mu stretched about the threshold by a factor that rises "
                               "linearly from 1 to this at the end of the run, so that the "
                               "gates the network trains with become the ticket's binary "
                               "mask (results.md section 13); null: no stretch", ge=1,
                               le=1e4, allow_inf_nan=False)
    ramp: float = _f(0.0, "> 0: the target sparsity rises from 0 over this fraction of the "
                     "run (controller and projection); 0 (best on the validation split): it "
                     "holds from the start", ge=0, le=1, allow_inf_nan=False)
    ramp_shape: Literal["linear", "cubic"] = _f(
        "linear", "how the ramped target rises: linear, or cubic (fast at first, gentle near "
        "the target, as in gradual magnitude pruning)")
    controller_gain: float = _f(5.0, "integral gain: change of log(lambda) over the run per "
                                "unit of log-density error", ge=0, le=1000, allow_inf_nan=False)
    controller_kp: float = _f(0.6, "proportional gain: log(lambda) offset per unit of "
                              "current log-density error", ge=0, le=1000, allow_inf_nan=False)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _start(cls, data: Any) -> Any:
        """Fill a null ``mu_init`` and ``lambda`` from the method and the target (the
        recorded config then holds the values the run used)."""
        if not isinstance(data, dict):
            return data
        mu, lam = start(data.get("method", "crbg"), data.get("target_sparsity", 0.9))
        data = dict(data)
        if data.get("mu_init") is None:
            data["mu_init"] = mu
        key = "lambda_" if "lambda_" in data else "lambda"
        if data.get(key) is None:
            data[key] = lam
        return data

    @model_validator(mode="after")
    def _check_budget(self) -> GatesConfig:
        top_k = self.method == "edge_popup"
        if top_k and self.target_sparsity is None:
            raise ValueError("edge_popup keeps a top-k: it needs a gates.target_sparsity")
        if top_k and self.scope == "global":
            raise ValueError("edge_popup keeps a top-k in every layer: gates.scope must be "
                             "layer or null")
        if self.budget == "projection" and self.target_sparsity is None:
            raise ValueError("gates.budget projection needs a gates.target_sparsity to hold")
        if self.layer_sparsity and not top_k:
            raise ValueError("gates.layer_sparsity applies to edge_popup only; remove it")
        return self

    def ramped(self, progress: float) -> float | None:
        """The target sparsity at ``progress`` (the fraction of the run done)."""
        if self.target_sparsity is None or self.ramp <= 0:
            return self.target_sparsity
        x = min(1.0, progress / self.ramp)
        return self.target_sparsity * (x if self.ramp_shape == "linear" else 1 - (1 - x) ** 3)


class TrainConfig(_Strict):
    epochs: int = _f(60, "LeNet-300-100's validation accuracy rises up to about 60", ge=1,
                     le=MAX_EPOCHS)
    optimizer: Literal["adam", "sgd"] = _f("adam", "optimizer of the gate parameters")
    lr: float = _f(0.02, "gate learning rate; each method and network family has its own, "
                   "filled in where a config leaves it out (sltc.recipes)",
                   gt=0, le=100, allow_inf_nan=False)
    budget_lr: float | None = _f(None, "a short run's learning rate: at least budget_lr / "
                                 "sqrt(the run's steps), so that gates travel as far in "
                                 "fewer steps (2: 0.2 at 100 steps, 0.1 at 400); null: "
                                 "train.lr alone; recipes fill it where train.lr is not set",
                                 gt=0, le=100, allow_inf_nan=False)
    momentum: float = _f(0.9, "sgd only", ge=0, lt=1, allow_inf_nan=False)
    weight_decay: float = _f(0.0, "on the gate parameters", ge=0, le=100, allow_inf_nan=False)
    schedule: Literal["cosine", "constant"] = _f("cosine", "learning-rate schedule over the "
                                                 "run's steps")
    max_steps: int | None = _f(None, "cap on steps per epoch, for smoke runs", ge=1,
                                   le=1 << 31)
    eval_every: int = _f(1, "validate (relaxed and frozen) every N epochs and after the "
                         "last; quick trials save the time", ge=1, le=100_000)
    precision: Literal["auto", "fp32", "bf16"] = _f(
        "auto", "auto: bf16 autocast for the network on CUDA, fp32 on the CPU; gates, noise "
        "and the L0 term stay float32; tickets are evaluated in fp32")
    channels_last: bool | None = _f(None, "null: on for networks with convolutions on CUDA")
    compile: bool = _f(False, "torch.compile the training forward pass (CUDA: faster steps)")
    threads: int | None = _f(None, "CPU threads of torch in each process (null: torch's "
                             "default, one per core or OMP_NUM_THREADS); results.md section 7 "
                             "measured the default within 1.15x of the best setting",
                             ge=1, le=4096)


class RecipeConfig(_Strict):
    family: Literal["auto", "mlp", "conv", "residual", "transformer", "none"] = _f(
        "auto", "the network family whose recipe fills the keys this config leaves out "
        "(sltc.recipes); auto: read off the network's forward pass; none: the defaults here")
    chosen: str | None = _f(None, "written by sltc: the recipe filled in (method/family); "
                            "a config that holds it is used as it is")
    reason: str | None = _f(None, "written by sltc: why that family, and what chose its recipe",
                            max_length=2000)
    filled: list[str] = _f(list, "written by sltc: the keys the recipe filled", max_length=64)


class RunConfig(_Strict):
    version: int = _f(CONFIG_VERSION, "config format version")
    seed: int = _f(0, "the weights, gate noise and data order", ge=0, lt=2**64)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    recipe: RecipeConfig = Field(default_factory=RecipeConfig)

    @model_validator(mode="after")
    def _check_version(self) -> RunConfig:
        if self.version != CONFIG_VERSION:
            raise ValueError(f"unsupported config version {self.version}; this sltc reads 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "gates": GatesConfig,
            "train": TrainConfig, "recipe": RecipeConfig}
EVERY_ARCH = ("arch", "init", "gain")  # model.* keys that every network reads


def default_of(field) -> Any:
    """A schema field's default value."""
    return field.get_default(call_default_factory=True)


def kind_name(value) -> str:
    """What a YAML value is, as a message says it."""
    return {list: "list", str: "string", dict: "mapping"}.get(type(value), "single value")


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


def check_applicable(cfg: RunConfig, source: str = "config") -> None:
    """Reject ``model.*`` keys set (away from their defaults) for an architecture that does
    not read them. Checked where a user's config enters (``discover``, ``find_ticket``), not
    on the configs that tickets and run directories record, which older versions wrote."""
    from .models import MODELS, PYTHON_PREFIX

    arch = cfg.model.arch
    reads = ("kwargs",) if arch.startswith(PYTHON_PREFIX) else MODELS.get(arch).reads
    for key, field in ModelConfig.model_fields.items():
        if key not in EVERY_ARCH + tuple(reads) and getattr(cfg.model, key) != default_of(field):
            raise ConfigError(f"{source}: model.{key} does not apply to {arch} (it reads "
                              f"model.{', model.'.join(EVERY_ARCH[1:] + tuple(reads))}); "
                              f"remove it, or --set model.{key}=null")


def fields_at(path) -> dict | None:
    """The fields (by their names in a file) of the section holding the dotted key
    ``path`` (a sequence of its parts); None past the sections."""
    owner = SECTIONS.get(str(path[0])) if len(path) == 2 else RunConfig if len(path) == 1 \
        else None
    return {f.alias or k: f for k, f in owner.model_fields.items()} if owner else None


def _unknown(loc: tuple) -> str:
    """The unknown key's dotted path and the closest valid key, if one is close."""
    valid = fields_at(loc)
    key = _dotted(loc)
    if valid is None:
        return f"unknown key '{key}'"
    close = difflib.get_close_matches(str(loc[-1]), list(valid), n=1, cutoff=0.6)
    hint = f"; did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?" if close else ""
    return f"unknown key '{key}'{hint} (sltc config lists every key)"


def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after",)) or "<root>"


_SHORT = reprlib.Repr()  # a value in a message: short whatever it holds (an alias bomb)
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 60, 60


def from_dict(data: dict[str, Any], source: str = "config", names: bool = True) -> RunConfig:
    """Validate a plain dict; raises ``ConfigError`` naming the offending key. ``names``:
    check registry names too (that imports torch)."""
    cfg = validated(RunConfig, data, source)
    if names:
        _check_names(cfg, source)
    return cfg


def validated(model: type[BaseModel], data, source: str, prefix: tuple = ()):
    """``model`` (RunConfig or a section) validated from ``data``, or a one-line
    ``ConfigError`` naming the key (``prefix``: the section's own path)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping, got a {kind_name(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = (*prefix, *err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{source}: {_unknown(loc)}") from None
        shown = "" if err["type"] == "value_error" else f" (got {_SHORT.repr(err.get('input'))})"
        raise ConfigError(f"{source}: {_dotted(loc)}: {err['msg']}{shown}") from None


def first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    """The dotted key of the first value that differs between two config dicts."""
    for key in dict.fromkeys([*a, *b]):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                return first_difference(a[key], b[key], f"{prefix}{key}.")
            return f"{prefix}{key}"
    return None


def run_difference(a: dict, b: dict) -> str | None:
    """``first_difference`` of two configs of one run (as dicts): ``train.epochs`` aside,
    which a resumed run may grow."""
    def fixed(d: dict) -> dict:
        train = d.get("train")
        return {**d, "train": {k: v for k, v in train.items() if k != "epochs"}} \
            if isinstance(train, dict) else d

    return first_difference(fixed(a), fixed(b))
