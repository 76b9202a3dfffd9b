"""The records a ticket and its exports hold, by name: a layer of the table (``LayerSpec``),
a tensor drawn by name (``DrawnTensor``), what every reader of a model needs to know
about it (``ModelMeta``), the dataset its run trained on (``DataSection``) and a ticket's
meta as a whole (``TicketMeta``).

Each reads itself from its JSON form with ``from_json``, checking it against
``docs/format.md`` (a ``TicketError`` naming the first rule broken), and writes it back
with ``to_json``. Below the ticket in the format (errors, limits and the generator's names
only, no torch, no config): the runtime reads these records without ``sltc.format.ticket``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from .errors import DataError, TicketError
from .limits import (
    MAX_BATCH,
    MAX_IMAGE_SIDE,
    MAX_IMAGES,
    MAX_SIDE,
    MAX_SYNTHETIC_PIXELS,
    MAX_WORKERS,
    number_in,
)
from .seeding import INITS

GRANULARITIES = ("weight", "neuron", None)
MAX_CLASSES = 1 << 20
STD_RANGE = (1e-12, 1e6)  # a drawn tensor's std, as a preprocessing std
SPARSITY_TOLERANCE = 1e-9  # a recorded sparsity against the masks: another order of float64 sums
DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100", "folder", "synthetic", "loaders")
AUGMENTS = ("crop", "flip")


def _int_list(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(v) is int and v > 0 for v in value):
        raise TicketError(f"broken header: {what} must be a list of positive integers")
    return tuple(value)


@dataclass(frozen=True)
class LayerSpec:
    """A weight the generator regenerates (format.md section 2.1): ``name`` is the
    generator's key, ``tensor`` the skeleton initializer it fills; ``granularity`` is
    ``weight`` or ``neuron`` for a gated layer, ``None`` for an ungated one."""

    name: str
    shape: tuple[int, ...]
    fan_in: int
    init: str
    gain: float
    granularity: str | None
    tensor: str

    @classmethod
    def from_json(cls, entry: dict, minor: int = 1) -> LayerSpec:
        """A table entry of a ticket (or a CSR manifest), checked; a 1.0 entry has no
        ``tensor`` and fills ``<name>.weight``."""
        name = entry["name"]
        if not isinstance(name, str):
            raise TicketError("broken header: a layer name must be a string")
        shape = _int_list(entry["shape"], f"layer {name!r} shape")
        if entry["init"] not in INITS or entry["fan_in"] != math.prod(shape[1:]):
            raise TicketError(f"layer {name!r}: unknown init or fan_in that does not add up")
        if not number_in(entry["gain"]) or not entry["gain"] > 0:
            raise TicketError(f"layer {name!r}: gain must be a positive number")
        if entry["granularity"] not in GRANULARITIES:
            raise TicketError(f"layer {name!r}: granularity must be weight, neuron or null")
        tensor = entry["tensor"] if minor >= 1 else f"{name}.weight"
        if not isinstance(tensor, str):
            raise TicketError(f"layer {name!r}: tensor must be a string")
        return cls(name, shape, entry["fan_in"], entry["init"], entry["gain"],
                   entry["granularity"], tensor)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "fan_in": self.fan_in,
                "init": self.init, "gain": self.gain, "granularity": self.granularity,
                "tensor": self.tensor}

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def gated(self) -> bool:
        return self.granularity is not None

    @property
    def mask_shape(self) -> tuple[int, ...]:
        """The stored mask's shape: one bit per weight, or per output unit (neuron)."""
        return self.shape[:1] if self.granularity == "neuron" else self.shape

    def check_mask_shape(self, value) -> tuple[int, ...]:
        """A table entry's ``mask_shape`` against the granularity."""
        mask_shape = _int_list(value, f"layer {self.name!r} mask_shape")
        if mask_shape != self.mask_shape:
            raise TicketError(f"layer {self.name!r}: mask shape {list(mask_shape)} does not fit "
                              f"weight shape {list(self.shape)} at granularity "
                              f"{self.granularity}")
        return mask_shape


@dataclass(frozen=True)
class DrawnTensor:
    """A tensor drawn from the generator by its name (format.md section 1.3, ``normal``)."""

    name: str
    shape: tuple[int, ...]
    std: float
    init: str = "normal"

    @classmethod
    def from_json(cls, entry: dict) -> DrawnTensor:
        name = entry["name"]
        if not isinstance(name, str) or entry["init"] != "normal":
            raise TicketError(f"tensor {name!r}: init must be 'normal'")
        if not number_in(entry["std"], *STD_RANGE):
            raise TicketError(f"tensor {name!r}: std must be a number in [{STD_RANGE[0]}, "
                              f"{STD_RANGE[1]:g}]")
        return cls(name, _int_list(entry["shape"], f"tensor {name!r} shape"), entry["std"])

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "init": self.init,
                "std": self.std}

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ModelMeta:
    """What every reader of a model uses (format.md section 2.3): the input and class
    count it takes, its preprocessing, sparsity and recorded test accuracy, the dataset
    section of its run config (``data``) and its seed. An ONNX file without ``sltc.*``
    metadata has no sparsity (``nan``), accuracy, data or preprocessing."""

    input_shape: tuple[int, ...]
    classes: int
    sparsity: float
    test_accuracy: float | None
    data: dict | None = None
    seed: int = 0
    preprocessing: dict | None = None

    @classmethod
    def from_json(cls, meta, what: str = "meta") -> ModelMeta:
        """A ticket's ``meta`` (with ``data`` and ``seed`` where it holds them) or a CSR
        manifest, checked."""
        if not isinstance(meta, dict):
            raise TicketError(f"broken header: {what} must be an object")
        shape = meta.get("input_shape")
        if not isinstance(shape, list) or not 1 <= len(shape) <= 3 or not all(
                type(v) is int and 0 < v <= MAX_SIDE for v in shape):
            raise TicketError(f"broken header: {what}.input_shape must be 1 to 3 integers in "
                              f"[1, {MAX_SIDE}]")
        if type(meta.get("classes")) is not int or not 1 <= meta["classes"] <= MAX_CLASSES:
            raise TicketError(f"broken header: {what}.classes must be an integer in "
                              f"[1, {MAX_CLASSES}]")
        pre = meta.get("preprocessing")
        if not isinstance(pre, dict) or not number_in(pre.get("mean"), -1e6, 1e6) or \
                not number_in(pre.get("std"), *STD_RANGE):
            raise TicketError(f"broken header: {what}.preprocessing needs a finite mean and a "
                              "positive std")
        if not number_in(meta.get("sparsity"), 0, 1):
            raise TicketError(f"broken header: {what}.sparsity must be a number in [0, 1]")
        if "test_accuracy" not in meta:  # null where unknown, never absent
            raise TicketError(f"broken header: missing key '{what}.test_accuracy'")
        accuracy = meta["test_accuracy"]
        if accuracy is not None and not number_in(accuracy, 0, 1):
            raise TicketError(f"broken header: {what}.test_accuracy must be null or a number "
                              "in [0, 1]")
        return cls(tuple(shape), meta["classes"], meta["sparsity"], accuracy,
                   meta.get("data"), meta.get("seed", 0), pre)

    def to_json(self) -> dict:
        return {"input_shape": list(self.input_shape), "classes": self.classes,
                "preprocessing": self.preprocessing, "sparsity": self.sparsity,
                "test_accuracy": self.test_accuracy, "data": self.data, "seed": self.seed}


def sparsity_of(kept: int, total: int) -> float:
    """The pruned fraction of ``total`` gated weights of which ``kept`` stay; 0 for none."""
    return 1.0 - kept / total if total else 0.0


def check_sparsity(recorded: float, sparsity: float, what: str = "meta") -> None:
    """A recorded sparsity agrees with the masks (format.md section 2.1)."""
    if abs(recorded - sparsity) > SPARSITY_TOLERANCE:
        raise TicketError(f"broken header: {what}.sparsity {recorded} disagrees with the "
                          f"masks, which prune {sparsity!r} of the gated weights")


def _count(value, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _counts(value, n: int, high: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(_count(v, 1, high) for v in value)


# key -> (whether a recorded value is valid, what a valid one is); sltc.config.DataConfig is the
# same section as a user writes it, with the same names, defaults and ranges (a test holds them
# together)
_DATA_RULES = {
    "name": (lambda v: v in DATASETS, f"one of {', '.join(DATASETS)}"),
    "root": (lambda v: v is None or isinstance(v, str), "null or a string"),
    "val_size": (lambda v: _count(v, 0, MAX_IMAGES), f"an integer in [0, {MAX_IMAGES}]"),
    "train_size": (lambda v: v is None or _count(v, 1, MAX_IMAGES),
                   f"null or an integer in [1, {MAX_IMAGES}]"),
    "batch_size": (lambda v: _count(v, 1, MAX_BATCH), f"an integer in [1, {MAX_BATCH}]"),
    "synthetic_size": (lambda v: _count(v, 16, MAX_IMAGES), f"an integer in [16, {MAX_IMAGES}]"),
    "synthetic_shape": (lambda v: _counts(v, 3, MAX_SIDE),
                        f"three integers in [1, {MAX_SIDE}]"),
    "augment": (lambda v: isinstance(v, list) and all(a in AUGMENTS for a in v),
                "a list of crop and flip"),
    "image_size": (lambda v: v is None or _counts(v, 2, MAX_IMAGE_SIDE),
                   f"null or two integers in [1, {MAX_IMAGE_SIDE}]"),
    "workers": (lambda v: _count(v, 0, MAX_WORKERS), f"an integer in [0, {MAX_WORKERS}]"),
}


@dataclass(frozen=True)
class DataSection:
    """The ``data`` section of a run's config, as a ticket and its exports record it: where
    the run's images came from. The runtime reads it to find a model's test set, without
    the config (``sltc.config.DataConfig`` is the same section as a user writes it)."""

    name: str = "fashion_mnist"
    root: str | None = None
    val_size: int = 5000
    train_size: int | None = None
    batch_size: int = 128
    synthetic_size: int = 2048
    synthetic_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    augment: list[str] = field(default_factory=list)
    image_size: list[int] | None = None
    workers: int = 2

    @classmethod
    def from_json(cls, data, what: str = "the model's recorded dataset") -> DataSection:
        """A recorded ``data`` section, checked, a missing key at its default; a
        ``DataError`` naming the first key that breaks its rule."""
        if not isinstance(data, dict):
            raise DataError(f"{what}: data must be an object")
        unknown = sorted(set(data) - set(_DATA_RULES))
        if unknown:
            raise DataError(f"{what}: data.{unknown[0]} is not a key of the data section")
        for key, value in data.items():
            valid, rule = _DATA_RULES[key]
            if not valid(value):
                raise DataError(f"{what}: data.{key} must be {rule}")
        section = cls(**data)
        pixels = section.synthetic_size * math.prod(section.synthetic_shape)
        if section.name == "synthetic" and pixels > MAX_SYNTHETIC_PIXELS:
            raise DataError(f"{what}: synthetic_size x synthetic_shape is {pixels} pixels, over "
                            f"the limit of {MAX_SYNTHETIC_PIXELS}")
        return section

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TicketMeta:
    """A ticket's ``meta`` (format.md section 2.1), checked: the model entries every reader
    uses (``model``, with the data section and the seed), the gate method that found the
    ticket, the data section of its run, the run's whole config as a record, and a 1.0
    ticket's op list (``ops``, checked by ``legacy``; ignored from 1.1 on)."""

    model: ModelMeta
    method: str
    data: DataSection
    config: dict
    ops: list | None = None

    @classmethod
    def from_json(cls, meta, seed: int) -> TicketMeta:
        """``meta`` of a ticket of seed ``seed``; its config must be an object naming that
        seed (a missing data section is the default one)."""
        model = ModelMeta.from_json(meta)
        if not isinstance(meta.get("method"), str):
            raise TicketError("broken header: meta.method must be a string")
        config = meta.get("config")
        if not isinstance(config, dict):
            raise TicketError("broken header: meta.config must be an object")
        if config.get("seed", 0) != seed:
            raise TicketError(f"broken header: meta.config.seed {config.get('seed', 0)} is not "
                              f"the ticket's seed {seed}")
        try:
            data = DataSection.from_json(config.get("data", {}), "meta.config")
        except DataError as e:
            raise TicketError(f"broken header: {e}") from None
        model = replace(model, data=data.to_json(), seed=seed)
        return cls(model, meta["method"], data, config, meta.get("graph"))  # ops: 1.0 reads them
