"""Native TensorRT backend: build an engine from ONNX (FP32, FP16, INT8 through the QDQ graph) and run it.

Supports TensorRT 8.6, 10.x and 11.x (and 8.5, the first with name-based I/O). What differs between versions is
decided by TensorRT-free functions (:func:`parse_trt_version`, :func:`trt_features`, :func:`plan_build`,
:func:`batch_profile`, :func:`engine_record`), which are unit-tested without TensorRT; the functions that import
``tensorrt`` only execute a :class:`BuilderPlan`. Version facts, from the TensorRT pybind sources and migration docs:

- 8.x/9.x: ``create_network`` needs ``EXPLICIT_BATCH`` (ignored since 10.0, gone from the enum in 11).
- 8.6/10.x: weakly typed networks; FP16/INT8 are builder flags (deprecated in 10.12, removed in 11.0).
  ``STRONGLY_TYPED`` exists since 9.x; in 11.x every network is strongly typed, so precision comes from the ONNX:
  FP16 needs an FP16 ONNX, INT8 a QDQ ONNX. Implicit INT8 calibrators are never used (removed in 11).
- Name-based I/O (``set_tensor_address``/``execute_async_v3``/``set_input_shape``) since 8.5: one runtime path.
- ``ParserError.node_name()`` since 10.0. DLA: up to 10.x, absent in 11.0-11.4.0, back in 11.4.1 (AGX Orin).
- Plans and timing caches only load on the exact TensorRT version (and GPU) that built them: the engine's manifest
  section records both and the runner refuses a mismatch instead of failing inside TensorRT.

Device memory, streams and CUDA graphs go through cuda-python's runtime module (``cuda.bindings.runtime`` from
cuda-bindings 11.8.6 / 12.8 on, ``cuda.cudart`` in older cuda-python releases), and only through :class:`CudaRuntime`:
one method per call, each checked by :func:`cuda_check`. Its arguments are tested against cuda-bindings 11.8, 12.x
and 13.x and the older ``cuda.cudart`` layout (``tests/test_tensorrt_cuda_bindings.py``); where the two differ, the
call that has one signature in all of them is used (``cudaGraphInstantiateWithFlags(graph, 0)``, not
``cudaGraphInstantiate``, which takes 3 arguments in 11.8 and 2 from 12.0). What is decided without TensorRT (the
build plan, the engine choice, the timing-cache fallback, DLA layer placement, the CUDA-graph policy and replay) lives
in plain functions and classes that take TensorRT objects duck-typed, and is unit-tested. Nothing here fakes a
result: without TensorRT every entry point raises :class:`~edgeconv.errors.BackendUnavailableError` with the install
command.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeconv.backends.base import INSTALL_HINTS, BackendRunner, LayerProfile, LayerTime, import_optional
from edgeconv.errors import (
    ArtifactError,
    BackendUnavailableError,
    CudaCallError,
    ExportError,
    InputError,
    InvalidArgumentError,
    QuantizationError,
)
from edgeconv.files import sha256_file, write_atomic
from edgeconv.manifest import Manifest

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

MIN_VERSION = (8, 5)
DEFAULT_WORKSPACE_MB = 1024


# ---------------------------------------------------------------------------------------------------------------
# Availability (TensorRT-free)
# ---------------------------------------------------------------------------------------------------------------
def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None. The ``tensorrt-stubs`` wheel installs a ``tensorrt`` folder that
    holds only ``.pyi`` files and imports as an empty namespace package: that is not TensorRT."""
    try:
        import tensorrt
    except ImportError:
        return None
    version = getattr(tensorrt, "__version__", None)
    if not isinstance(version, str) or not hasattr(tensorrt, "Builder"):
        return None
    return version


def require_tensorrt() -> TrtFeatures:
    """Features of the installed TensorRT, or BackendUnavailableError with the install command."""
    version = tensorrt_version()
    if version is None:
        raise BackendUnavailableError(f"TensorRT is not installed; install it with: {INSTALL_HINTS['tensorrt']}")
    return trt_features(parse_trt_version(version))


# ---------------------------------------------------------------------------------------------------------------
# Versions and features (TensorRT-free)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0
    build: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f".{self.build}" if self.build else "")

    def at_least(self, *parts: int) -> bool:
        return (self.major, self.minor, self.patch, self.build)[: len(parts)] >= parts


def parse_trt_version(text: str) -> TrtVersion:
    """``"10.13.0.35"``, ``"8.6.1"``, ``"11.1.0.106"``, ``"10.3.0.30+cuda12"`` -> TrtVersion."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not match:
        raise InvalidArgumentError(f"TensorRT version {text!r} is not of the form MAJOR.MINOR[.PATCH[.BUILD]]")
    major, minor, patch, build = (int(g) if g else 0 for g in match.groups())
    return TrtVersion(major, minor, patch, build)


@dataclass(frozen=True)
class TrtFeatures:
    """What the Python API of one TensorRT version offers, as the build and runtime code needs to know it."""

    version: TrtVersion
    explicit_batch_flag: bool  # create_network(1 << EXPLICIT_BATCH) required (8.x, 9.x)
    strongly_typed_available: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (9.x+)
    always_strongly_typed: bool  # 11.x: precision flags are gone, types come from the ONNX
    precision_flags: bool  # BuilderFlag.FP16 / INT8 exist (< 11)
    builder_optimization_level: bool  # IBuilderConfig.builder_optimization_level (8.6+)
    parser_error_node_name: bool  # ParserError.node_name() / node_operator() (10.0+)
    dla: bool  # DLA can be targeted by this version at all (device support is checked at build time)
    engine_info_io_key: str  # engine-inspector JSON key of the I/O tensor list


def trt_features(version: TrtVersion) -> TrtFeatures:
    if not version.at_least(*MIN_VERSION):
        raise BackendUnavailableError(
            f"TensorRT {version} is too old: edgeconv needs {MIN_VERSION[0]}.{MIN_VERSION[1]}+ (name-based I/O); "
            "on Jetson upgrade to JetPack 5.1 (TensorRT 8.5) or later"
        )
    trt11 = version.major >= 11
    return TrtFeatures(
        version=version,
        explicit_batch_flag=version.major < 10,
        strongly_typed_available=version.major >= 9,
        always_strongly_typed=trt11,
        precision_flags=not trt11,
        builder_optimization_level=version.at_least(8, 6),
        parser_error_node_name=version.major >= 10,
        # 11.0-11.3 dropped DLA; 11.4.0 has only a Windows-on-Arm beta; 11.4.1 restores it on AGX Orin.
        dla=not trt11 or version.at_least(11, 4, 1),
        engine_info_io_key="I/O Tensors" if trt11 else "Bindings",
    )


# ---------------------------------------------------------------------------------------------------------------
# Build plans (TensorRT-free)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeProfile:
    """One optimization-profile entry: min/opt/max shapes of one input."""

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def ort_options(self) -> dict[str, str]:
        """The same profile as ONNX Runtime TensorRT-EP options (``trt_profile_*_shapes``)."""

        def dims(shape: tuple[int, ...]) -> str:
            return f"{self.input_name}:" + "x".join(str(d) for d in shape)

        return {
            "trt_profile_min_shapes": dims(self.min),
            "trt_profile_opt_shapes": dims(self.opt),
            "trt_profile_max_shapes": dims(self.max),
        }


def batch_profile(
    input_name: str, onnx_shape: Sequence[int], *, min_batch: int = 1, opt_batch: int = 1, max_batch: int = 1
) -> ShapeProfile | None:
    """Optimization profile for a dynamic batch dimension; None for a fully static input.

    Only the batch (first) dimension may be dynamic (-1); a static input must be asked for its own batch.
    """
    shape = tuple(int(d) for d in onnx_shape)
    if not shape:
        raise InvalidArgumentError(f"input {input_name!r} is a scalar; expected (batch, ...)")
    if any(d <= 0 for d in shape[1:]):
        raise InvalidArgumentError(
            f"input {input_name!r} has dynamic non-batch dimensions {shape}; export with a fixed --input-size"
        )
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise InvalidArgumentError(
            f"batch profile must satisfy 1 <= min <= opt <= max, got min={min_batch} opt={opt_batch} max={max_batch}"
        )
    rest = shape[1:]
    if shape[0] > 0:
        if (min_batch, opt_batch, max_batch) not in ((1, 1, 1), (shape[0],) * 3):
            raise InvalidArgumentError(
                f"input {input_name!r} has a static batch of {shape[0]}; re-export with --dynamic-batch to build "
                f"for batch {min_batch}..{max_batch}"
            )
        return None
    return ShapeProfile(input_name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))


@dataclass(frozen=True)
class OnnxSummary:
    """What the build plan needs to know about the ONNX file."""

    inputs: tuple[tuple[str, tuple[int, ...]], ...]  # (name, shape with -1 for dynamic)
    precision: str  # fp32 / fp16 / int8 (QDQ), from the graph
    has_qdq: bool


@dataclass(frozen=True)
class BuildRequest:
    """What the user asked for. ``typing``: ``auto`` (weakly typed + precision flags before 11, strongly typed in
    11), ``weak`` or ``strong`` (10.x: types from the ONNX only)."""

    precision: str = "fp32"
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mb: int | None = DEFAULT_WORKSPACE_MB
    dla_core: int | None = None
    gpu_fallback: bool = True
    timing_cache: str | None = None
    optimization_level: int = 3
    typing: str = "auto"


@dataclass(frozen=True)
class BuilderPlan:
    """Everything the builder will set, by TensorRT enum *name*, so it can be checked without TensorRT."""

    version: str
    precision: str
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    builder_flags: tuple[str, ...]  # BuilderFlag names
    memory_pools: tuple[tuple[str, int], ...]  # (MemoryPoolType name, bytes)
    profiles: tuple[ShapeProfile, ...]
    strongly_typed: bool
    optimization_level: int | None  # None: the version has no builder_optimization_level
    profiling_verbosity: str = "DETAILED"
    default_device: str = "GPU"
    dla_core: int | None = None
    timing_cache: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def plan_build(features: TrtFeatures, request: BuildRequest, onnx: OnnxSummary) -> BuilderPlan:
    """Decide flags, pools and profiles for one TensorRT version, precision and DLA request.

    Raises a clear error for combinations TensorRT cannot build: INT8 without a QDQ graph (edgeconv never uses the
    implicit calibrators, removed in 11), FP16 on a strongly typed network from an FP32 ONNX, DLA in FP32, DLA on a
    version without DLA, a dynamic batch on DLA.
    """
    precision = request.precision
    if precision not in ("fp32", "fp16", "int8"):
        raise InvalidArgumentError(f"precision {precision!r} is not valid; choose fp32, fp16 or int8")
    if request.typing not in ("auto", "weak", "strong"):
        raise InvalidArgumentError(f"typing {request.typing!r} is not valid; choose auto, weak or strong")
    if request.typing == "strong" and not features.strongly_typed_available:
        raise InvalidArgumentError(
            f"TensorRT {features.version} has no strongly typed networks (9.0+); use typing=weak"
        )
    if request.typing == "weak" and features.always_strongly_typed:
        raise InvalidArgumentError(f"TensorRT {features.version} builds only strongly typed networks; use typing=auto")
    strong = features.always_strongly_typed or request.typing == "strong"
    if not 0 <= request.optimization_level <= 5:
        raise InvalidArgumentError(f"builder optimization level {request.optimization_level} must be in 0..5")
    notes: list[str] = []

    if precision == "int8" and not onnx.has_qdq:
        raise QuantizationError(
            "TensorRT INT8 needs the QDQ graph (explicit quantization, the one INT8 path from TensorRT 8.6 to 11); "
            "export it with `edgeconv export MODEL --int8 --target tensorrt` and build from that artifact"
        )
    if precision != "int8" and onnx.has_qdq:
        raise InvalidArgumentError(f"the ONNX is a QDQ (INT8) graph; build it with precision int8, not {precision}")
    if strong and precision == "fp16" and onnx.precision != "fp16":
        raise InvalidArgumentError(
            f"TensorRT {features.version} with strong typing takes precision from the ONNX: FP16 needs an FP16 ONNX "
            "(`edgeconv export MODEL --fp16`), not an FP32 one"
        )
    if precision == "fp32" and onnx.precision == "fp16":
        raise InvalidArgumentError("the ONNX is FP16; build it with precision fp16 or use the FP32 ONNX")

    network_flags: list[str] = []
    if features.explicit_batch_flag:
        network_flags.append("EXPLICIT_BATCH")
    if strong and not features.always_strongly_typed:
        network_flags.append("STRONGLY_TYPED")  # in 11 the flag is deprecated and always on: set nothing

    builder_flags: list[str] = []
    if not strong:
        if precision == "fp16":
            builder_flags.append("FP16")
        elif precision == "int8":
            # Weakly typed Q/DQ networks still need the INT8 flag (TensorRT 8 developer guide); unquantized layers
            # stay FP32, matching what a strongly typed 11.x build of the same QDQ graph does.
            builder_flags.append("INT8")
            if request.dla_core is not None:
                # DLA runs no FP32 layer: the layers a QDQ graph leaves unquantized need FP16 allowed there, as
                # trtexec's `--int8 --fp16` for DLA; with INT8 alone they fall back to the GPU or fail the build.
                builder_flags.append("FP16")
    else:
        notes.append("strongly typed: precision comes from the ONNX types and Q/DQ nodes")

    pools: list[tuple[str, int]] = []
    if request.workspace_mb is not None:
        if request.workspace_mb < 1:
            raise InvalidArgumentError(f"workspace {request.workspace_mb} MB must be >= 1")
        pools.append(("WORKSPACE", request.workspace_mb << 20))

    min_b, opt_b, max_b = request.min_batch, request.opt_batch, request.max_batch
    default_device, dla_core = "GPU", None
    if request.dla_core is not None:
        if not features.dla:
            raise BackendUnavailableError(
                f"TensorRT {features.version} has no DLA support (DLA returns in 11.4.1 on AGX Orin; "
                "JetPack 6 ships TensorRT 10.3 with DLA)"
            )
        if request.dla_core < 0:
            raise InvalidArgumentError(f"DLA core {request.dla_core} must be >= 0")
        if precision == "fp32":
            raise InvalidArgumentError("DLA runs FP16 or INT8 only; use --precision fp16 or int8 with --dla-core")
        if min_b != max_b:
            raise InvalidArgumentError(
                f"DLA has no dynamic dimensions; build for one batch (got {min_b}..{max_b}), e.g. --batch {opt_b}"
            )
        default_device, dla_core = "DLA", request.dla_core
        if strong and precision == "int8":
            notes.append("strongly typed INT8 on DLA: layers without Q/DQ stay FP32, which DLA cannot run")
        if request.gpu_fallback:
            builder_flags.append("GPU_FALLBACK")
        else:
            notes.append("no GPU fallback: the build fails if any layer cannot run on DLA")

    profiles: list[ShapeProfile] = []
    for name, shape in onnx.inputs:
        profile = batch_profile(name, shape, min_batch=min_b, opt_batch=opt_b, max_batch=max_b)
        if profile is not None:
            profiles.append(profile)

    return BuilderPlan(
        version=str(features.version),
        precision=precision,
        network_flags=tuple(network_flags),
        builder_flags=tuple(builder_flags),
        memory_pools=tuple(pools),
        profiles=tuple(profiles),
        strongly_typed=strong,
        optimization_level=request.optimization_level if features.builder_optimization_level else None,
        default_device=default_device,
        dla_core=dla_core,
        timing_cache=request.timing_cache,
        notes=tuple(notes),
    )


def summarize_onnx(onnx_path: str | os.PathLike[str]) -> OnnxSummary:
    """Inputs, precision and QDQ presence of an ONNX file (reads it with ``onnx``; no TensorRT)."""
    onnx = import_optional("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(
        (value.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim))
        for value in model.graph.input
        if value.name not in initializers
    )
    ops = {node.op_type for node in model.graph.node}
    has_qdq = bool({"QuantizeLinear", "DequantizeLinear"} & ops)
    fp16 = any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    return OnnxSummary(inputs=inputs, precision="int8" if has_qdq else "fp16" if fp16 else "fp32", has_qdq=has_qdq)


# ---------------------------------------------------------------------------------------------------------------
# Engine files and their manifest section (TensorRT-free)
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineRecord:
    """The manifest entry of one serialized engine: enough to refuse loading it where it cannot run."""

    file: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    onnx_file: str
    onnx_sha256: str
    engine_sha256: str
    min_batch: int
    opt_batch: int
    max_batch: int
    dla_core: int | None
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    build_seconds: float
    created: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["network_flags"] = list(self.network_flags)
        data["builder_flags"] = list(self.builder_flags)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineRecord:
        try:
            values = {name: data[name] for name in cls.__dataclass_fields__}
        except KeyError as exc:
            raise ArtifactError(f"engine manifest entry lacks {exc}; rebuild with `edgeconv build`") from None
        values["network_flags"] = tuple(values["network_flags"])
        values["builder_flags"] = tuple(values["builder_flags"])
        return cls(**values)


def engine_file_name(
    onnx_stem: str, precision: str, compute_capability: str, version: TrtVersion, dla_core: int | None = None
) -> str:
    """``model.fp16.sm87.trt10.3.dla0.engine``: the name says where the plan can run."""
    dla = f".dla{dla_core}" if dla_core is not None else ""
    sm = compute_capability.replace(".", "")
    return f"{onnx_stem}.{precision}.sm{sm}.trt{version.major}.{version.minor}{dla}.engine"


def engine_mismatch(record: EngineRecord, installed: TrtVersion, compute_capability: str) -> str | None:
    """Why this engine cannot be deserialized here, or None. Plans need the exact TensorRT version and GPU."""
    built = parse_trt_version(record.tensorrt_version)
    if (built.major, built.minor, built.patch) != (installed.major, installed.minor, installed.patch):
        return f"it was built with TensorRT {record.tensorrt_version}, this machine has {installed}"
    if record.compute_capability != compute_capability:
        return f"it was built for compute capability {record.compute_capability}, this GPU is {compute_capability}"
    return None


def upsert_engine(manifest: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` (a manifest.json document, e.g. a board's) with ``entry`` (an engine record's JSON) under
    ``["tensorrt"]["engines"]``, replacing the entry of the same file (in place; returned for chaining)."""
    Manifest(Path(), manifest).record_engine(entry)
    return manifest


def add_engine_to_manifest(folder: Path, record: EngineRecord) -> Path:
    """Insert/replace ``record`` under ``manifest["tensorrt"]["engines"]`` of ``folder`` (atomic rewrite of
    manifest.json; a folder without one gets one holding the record alone). Returns the manifest's path."""
    manifest = Manifest.read(folder, required=False)
    manifest.record_engine(record.to_json())
    return manifest.write()


def engines_in_manifest(manifest: Manifest | dict[str, Any]) -> list[EngineRecord]:
    """The engine records of a manifest (a :class:`Manifest`, or a manifest.json document such as a board's)."""
    engines = manifest.engines if isinstance(manifest, Manifest) else Manifest(Path(), manifest).engines
    return [EngineRecord.from_json(e) for e in engines]


def find_engine(
    manifest: Manifest | dict[str, Any],
    *,
    precision: str,
    version: TrtVersion,
    compute_capability: str,
    batch: int,
    onnx_sha256: str,
    dla_core: int | None = None,
) -> EngineRecord | None:
    """A recorded engine that runs here at ``batch``: same precision, TensorRT version, GPU and DLA core, and built
    from the ONNX whose sha256 is ``onnx_sha256`` (an ONNX re-exported under the same name makes the engine stale)."""
    for record in engines_in_manifest(manifest):
        if (
            record.precision == precision
            and record.dla_core == dla_core
            and record.onnx_sha256 == onnx_sha256
            and record.min_batch <= batch <= record.max_batch
            and engine_mismatch(record, version, compute_capability) is None
        ):
            return record
    return None


def engine_onnx(target: Any, precision: str) -> Path:
    """The ONNX an engine of ``precision`` is built from: the QDQ graph for int8, the FP16 ONNX for fp16 when the
    target has one (strong typing needs it), else the FP32 ONNX (TensorRT lowers it itself)."""
    if precision == "fp16" and "fp16" in target.onnx:
        return Path(target.onnx["fp16"])
    return Path(target.onnx_for("int8" if precision == "int8" else "fp32"))


def engine_batch_range(
    onnx_batch: int, batch: int, *, max_batch: int | None = None, dla: bool = False
) -> tuple[int, int, int]:
    """``(min, opt, max)`` batch of the engine to build for running ``batch``. ``onnx_batch``: the ONNX input's
    batch dimension (<= 0 when dynamic). A static-batch ONNX runs only its own batch; DLA has no dynamic dimensions;
    else the profile spans 1..max(batch, max_batch) with opt = ``batch``."""
    if batch < 1:
        raise InvalidArgumentError(f"batch {batch} must be >= 1")
    if onnx_batch > 0:
        if batch != onnx_batch:
            raise InvalidArgumentError(
                f"the ONNX has a static batch of {onnx_batch}, so its engine runs batch {onnx_batch} only, not "
                f"{batch}; re-export it with --dynamic-batch (or --batch {batch})"
            )
        return onnx_batch, onnx_batch, onnx_batch
    if dla:
        return batch, batch, batch
    return 1, batch, max(batch, max_batch or batch)


# ---------------------------------------------------------------------------------------------------------------
# Per-layer times and parser errors (TensorRT-free)
# ---------------------------------------------------------------------------------------------------------------
class LayerTimeCollector:
    """Accumulates ``IProfiler.report_layer_time`` calls (one per fused layer per inference) into mean times."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self._calls: dict[str, int] = {}
        self.runs = 0
        self.wall_ms: list[float] = []

    def add(self, layer_name: str, ms: float) -> None:
        self._totals[layer_name] = self._totals.get(layer_name, 0.0) + float(ms)
        self._calls[layer_name] = self._calls.get(layer_name, 0) + 1

    def end_run(self, wall_ms: float) -> None:
        self.runs += 1
        self.wall_ms.append(wall_ms)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def summary(self) -> LayerProfile:
        if self.runs == 0:
            raise InvalidArgumentError("no profiled TensorRT run yet; run the model before asking for layer times")
        layers = tuple(
            LayerTime(
                name=name,
                op_type=trt_layer_op(name),
                mean_ms=total / self.runs,
                calls=self._calls[name] // self.runs,
                provider="tensorrt",
            )
            for name, total in self._totals.items()
        )
        return LayerProfile(
            layers=layers, end_to_end_ms=float(np.mean(self.wall_ms)), runs=self.runs, backend="tensorrt"
        )


_TRT_LAYER_OPS = (
    ("reformatting copynode", "Reformat"),
    ("reformat", "Reformat"),
    ("copynode", "Reformat"),
    ("pwn(", "PointWise"),
    ("myelin", "Myelin"),
)


def trt_layer_op(layer_name: str) -> str:
    """Best-effort operator of a (fused) TensorRT layer from its name: ``/features/features.0/Conv + /.../Relu`` ->
    ``Conv`` (the first fused ONNX node's op), reformat layers -> ``Reformat``, pointwise fusions -> ``PointWise``."""
    lower = layer_name.lower()
    for needle, op in _TRT_LAYER_OPS:
        if lower.startswith(needle) or (needle.endswith("(") and needle in lower):
            return op
    first = layer_name.split(" + ")[0].strip()
    tail = first.rsplit("/", 1)[-1]
    return re.sub(r"(_\d+)+$", "", tail) or first


def format_parser_errors(errors: Sequence[dict[str, Any]]) -> str:
    """ONNX parser errors (``code``, ``desc``, ``node``, and since 10.0 ``node_name`` / ``node_operator``) -> text."""
    lines = []
    for e in errors:
        where = f"node {e.get('node', '?')}"
        if e.get("node_name"):
            where += f" {e['node_name']!r}"
        if e.get("node_operator"):
            where += f" ({e['node_operator']})"
        lines.append(f"{where}: {e.get('desc', '')} [{e.get('code', '')}]")
    return "; ".join(lines) or "unknown parser error"


# ---------------------------------------------------------------------------------------------------------------
# CUDA (cuda-python): every runtime call edgeconv makes, in one class
# ---------------------------------------------------------------------------------------------------------------
# CUDA major version -> oldest Linux driver that runs it (CUDA's minor-version compatibility floors).
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580"}


def load_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-bindings 11.8.6+, 12.8+, 13.x), else the older ``cuda.cudart`` (cuda-python
    11.8.0-11.8.5 and 12.0-12.6.0, which have no ``cuda.bindings``)."""
    try:
        from cuda.bindings import runtime as cudart

        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # type: ignore[attr-defined,no-redef,unused-ignore]

        return cudart
    except ImportError as exc:
        raise BackendUnavailableError(
            f"cuda-python is not installed ({exc}); install it with: {INSTALL_HINTS['cuda-python']}"
        ) from exc


def cuda_check(result: Any, call: str = "CUDA call") -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple: raise CudaCallError on error, return the value(s)."""
    if not isinstance(result, tuple):
        result = (result,)
    err, *values = result
    if int(err) != 0:
        raise CudaCallError(f"{call} failed: {getattr(err, 'name', err)} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class CudaRuntime:
    """The CUDA runtime calls of the TensorRT backend, one method each, on cuda-python's runtime module.

    Each method passes arguments that cuda-bindings 11.8.x, 12.x and 13.x and the older ``cuda.cudart`` layout all
    accept, and raises :class:`~edgeconv.errors.CudaCallError` when the call fails: on an error code, and on the
    RuntimeError that cuda-python 11.8.x and 12.6 raise instead of an error code when they cannot load the driver
    (``Failed to dlopen libcuda.so.1``; 12.9 and 13.x return ``cudaErrorInsufficientDriver``).
    ``tests/test_tensorrt_cuda_bindings.py`` calls every method against each of those releases, installed for real,
    and checks that each call reaches CUDA (no TypeError).
    """

    def __init__(self, cudart: Any | None = None) -> None:
        self.cudart = cudart if cudart is not None else load_cudart()

    @staticmethod
    def _call(function: Any, *args: Any) -> Any:
        name = getattr(function, "__name__", "CUDA call")
        try:
            result = function(*args)
        except RuntimeError as exc:  # cuda-python 11.8 / 12.6 without a driver: an exception, no error code
            raise CudaCallError(f"{name} failed: {exc}") from exc
        return cuda_check(result, name)

    @staticmethod
    def handle(stream: Any) -> int:
        """A stream as the integer TensorRT's ``execute_async_v3`` takes."""
        return int(stream)

    # Device and versions
    def device_count(self) -> int:
        return int(self._call(self.cudart.cudaGetDeviceCount))

    def device_properties(self, device: int) -> Any:
        return self._call(self.cudart.cudaGetDeviceProperties, device)

    def driver_version(self) -> int:
        """CUDA version the driver supports (12020 for 12.2); 0 when there is no driver (cuda-bindings 12.9+)."""
        return int(self._call(self.cudart.cudaDriverGetVersion))

    def runtime_version(self) -> int:
        """CUDA version the bindings were built for (12090 for 12.9); needs no driver."""
        return int(self._call(self.cudart.cudaRuntimeGetVersion))

    def clear_error(self) -> None:
        """Reset the thread's last CUDA error (after a failed capture, as trtexec does); its value is not an error
        of this call, so it is not checked."""
        try:
            self.cudart.cudaGetLastError()
        except RuntimeError as exc:
            raise CudaCallError(f"cudaGetLastError failed: {exc}") from exc

    # Streams and memory
    def stream_create(self) -> Any:
        return self._call(self.cudart.cudaStreamCreate)

    def stream_synchronize(self, stream: Any) -> None:
        self._call(self.cudart.cudaStreamSynchronize, stream)

    def stream_destroy(self, stream: Any) -> None:
        self._call(self.cudart.cudaStreamDestroy, stream)

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.cudart.cudaMalloc, max(int(nbytes), 1)))

    def free(self, pointer: int) -> None:
        self._call(self.cudart.cudaFree, pointer)

    def copy_to_device_async(self, device_pointer: int, host: np.ndarray, stream: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.cudart.cudaMemcpyAsync, device_pointer, host.ctypes.data, host.nbytes, kind, stream)

    def copy_to_host_async(self, host: np.ndarray, device_pointer: int, stream: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.cudart.cudaMemcpyAsync, host.ctypes.data, device_pointer, host.nbytes, kind, stream)

    # CUDA graphs
    def begin_capture(self, stream: Any) -> None:
        # Thread-local, as trtexec: CUDA calls of other threads (a PyTorch model in the same process) stay legal.
        mode = self.cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call(self.cudart.cudaStreamBeginCapture, stream, mode)

    def end_capture(self, stream: Any) -> Any:
        return self._call(self.cudart.cudaStreamEndCapture, stream)

    def abandon_capture(self, stream: Any) -> None:
        """End a capture whose enqueue failed without using its graph (trtexec's ``endCaptureOnError``): CUDA either
        invalidated the capture (no graph) or returns a graph that must not run; then clear the error."""
        try:
            graph = self.end_capture(stream)
        except CudaCallError:
            graph = None
        if graph is not None:
            self.graph_destroy(graph)
        self.clear_error()

    def graph_instantiate(self, graph: Any) -> Any:
        # Not cudaGraphInstantiate: (graph, flags) from 12.0, (graph, log buffer, size) in 11.8.
        return self._call(self.cudart.cudaGraphInstantiateWithFlags, graph, 0)

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self._call(self.cudart.cudaGraphLaunch, graph_exec, stream)

    def graph_destroy(self, graph: Any) -> None:
        self._call(self.cudart.cudaGraphDestroy, graph)

    def graph_exec_destroy(self, graph_exec: Any) -> None:
        self._call(self.cudart.cudaGraphExecDestroy, graph_exec)


def _version_or_none(read: Callable[[], int]) -> int | None:
    try:
        return read()
    except CudaCallError:
        return None


def cuda_driver_advice(driver_version: int | None, runtime_version: int | None) -> str:
    """What to do when CUDA is unusable, from the driver's and the bindings' CUDA versions (``12020`` = 12.2; None or
    0: unknown / no driver). Empty when the versions do not explain it."""
    if not driver_version:
        return "no NVIDIA driver was found (libcuda.so.1 did not load): install the NVIDIA driver (JetPack on Jetson)"
    if runtime_version is None:
        return ""
    driver_major, runtime_major = driver_version // 1000, runtime_version // 1000
    if driver_major >= runtime_major:
        return ""
    pin = "11.8.*" if driver_major == 11 else f"{driver_major}.*"
    need = MIN_DRIVER.get(runtime_major)
    return (
        f"the NVIDIA driver supports CUDA {driver_major}.{driver_version % 1000 // 10}, older than the CUDA "
        f"{runtime_major}.{runtime_version % 1000 // 10} of the installed cuda-python"
        + (f" (which needs driver {need}+)" if need else "")
        + f": install the bindings of the driver's CUDA major version, pip install 'cuda-bindings=={pin}'"
    )


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.6"
    driver_version: str
    runtime_version: str


def cuda_gpu_info(device: int = 0, cuda: CudaRuntime | None = None) -> GpuInfo:
    """Name and compute capability of a GPU through cuda-python; BackendUnavailableError naming the driver when
    there is none or it is too old for the installed bindings."""
    cuda = cuda if cuda is not None else CudaRuntime()
    try:
        count = cuda.device_count()
        if count < 1:
            raise CudaCallError("cudaGetDeviceCount found no CUDA device")
        props = cuda.device_properties(device)
        driver = cuda.driver_version()
        runtime = cuda.runtime_version()
    except CudaCallError as exc:
        advice = cuda_driver_advice(_version_or_none(cuda.driver_version), _version_or_none(cuda.runtime_version))
        raise BackendUnavailableError(
            f"no usable CUDA GPU for TensorRT: {exc}" + (f"; {advice}" if advice else "")
        ) from exc
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)

    def ver(v: int) -> str:
        return f"{v // 1000}.{(v % 1000) // 10}"

    return GpuInfo(name.rstrip("\x00"), f"{props.major}.{props.minor}", ver(driver), ver(runtime))


# ---------------------------------------------------------------------------------------------------------------
# Build and runtime decisions (TensorRT-free: TensorRT objects are duck-typed, so tests can stand in for them)
# ---------------------------------------------------------------------------------------------------------------
_TRT_LOGGER: Any = None


def trt_logger(trt_module: Any) -> Any:
    """The process's one ``trt.Logger``, as Polygraphy's ``get_trt_logger``: TensorRT keeps the first logger it is
    given for the whole process and warns when a later builder or runtime brings a different one."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        _TRT_LOGGER = trt_module.Logger(trt_module.Logger.WARNING)
    return _TRT_LOGGER


def attach_timing_cache(config: Any, blob: bytes, source: str) -> bool:
    """Give a builder config the timing cache in ``blob`` (read from ``source``), or a fresh one when ``blob`` is
    empty, unreadable (``create_timing_cache`` fails or returns None) or refused (``set_timing_cache`` returns False:
    a cache made by another TensorRT version or GPU). Returns whether the config holds a cache to save after the
    build."""
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except (RuntimeError, TypeError, ValueError):  # pybind11's translations of TensorRT's C++ exceptions
            cache = None
        if cache is not None and config.set_timing_cache(cache, False):
            return True
        log.warning(
            "timing cache %s is unreadable or was made by another TensorRT version or GPU; building with a fresh "
            "one, which replaces it after the build",
            source,
        )
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        log.warning("TensorRT could not create a timing cache; building without one (%s is left as it was)", source)
        return False
    return True


def timing_cache_bytes(config: Any) -> bytes | None:
    """The serialized timing cache of a builder config after the build; None when it has none (``get_timing_cache``
    returns None then; Polygraphy checks for it too)."""
    cache = config.get_timing_cache()
    if cache is None:
        return None
    return bytes(memoryview(cache.serialize()))


def dla_gpu_layers(layers: Sequence[tuple[str, bool]], *, gpu_fallback: bool, dla_core: int) -> list[str]:
    """Names of the layers a DLA build places on the GPU: those DLA cannot run (``layers``: ``(name,
    can_run_on_DLA)``). Without GPU fallback a single such layer fails the build, naming them all."""
    on_gpu = [name for name, runs_on_dla in layers if not runs_on_dla]
    if on_gpu and not gpu_fallback:
        shown = ", ".join(on_gpu[:10]) + (f" and {len(on_gpu) - 10} more" if len(on_gpu) > 10 else "")
        raise ExportError(
            f"DLA core {dla_core} cannot run {len(on_gpu)} of {len(layers)} layers ({shown}); build without "
            "--no-gpu-fallback to run them on the GPU"
        )
    return on_gpu


def cuda_graph_policy(requested: bool, *, dla_core: int | None, profile: bool) -> tuple[bool, str]:
    """Whether a runner replays CUDA graphs, and why not when they were asked for. Never with DLA (trtexec turns
    them off: "CUDA graphs and DLA offloading are not simultaneously supported"), never with per-layer profiling
    (the IProfiler reports from the plain enqueue)."""
    if not requested:
        return False, ""
    if dla_core is not None:
        return False, f"CUDA graphs are off: TensorRT does not support them with DLA (core {dla_core})"
    if profile:
        return False, "CUDA graphs are off: per-layer profiling needs the plain enqueue"
    return True, ""


def enqueue(context: Any, stream: Any) -> None:
    """One ``execute_async_v3`` of an execution context on ``stream``; CudaCallError when TensorRT refuses it."""
    if not context.execute_async_v3(CudaRuntime.handle(stream)):
        raise CudaCallError("TensorRT execute_async_v3 failed; the TensorRT log above says why")


def create_context(engine: Any, engine_name: str) -> Any:
    """A new execution context of ``engine``; CudaCallError when TensorRT returns None (it could not allocate the
    context's device memory)."""
    context = engine.create_execution_context()
    if context is None:
        raise CudaCallError(
            f"TensorRT could not create an execution context for {engine_name} (out of GPU memory?); close other GPU "
            "programs or use a smaller batch"
        )
    return context


def set_input_shape(context: Any, input_name: str, shape: Sequence[int]) -> None:
    """``context.set_input_shape`` checked: it returns False for a shape outside the optimization profile."""
    if not context.set_input_shape(input_name, tuple(shape)):
        raise InputError(
            f"input shape {tuple(shape)} of {input_name!r} is outside the engine's optimization profile; rebuild the "
            "engine with that batch (--batch / --max-batch)"
        )


def set_tensor_addresses(context: Any, buffers: dict[str, int]) -> None:
    """``context.set_tensor_address`` for every I/O tensor, checked: it returns False for a name the engine does not
    have or a misaligned pointer."""
    for name, pointer in buffers.items():
        if not context.set_tensor_address(name, pointer):
            raise CudaCallError(f"TensorRT refused device address {pointer:#x} for tensor {name!r}")


@dataclass
class _BatchGraph:
    context: Any  # the execution context of this batch size, its input shape set once
    graph_exec: Any | None  # None: capture failed, this batch runs by plain enqueue


class GraphReplay:
    """CUDA-graph replay of one engine, per batch size (contexts and CUDA are duck-typed).

    A graph bakes in the shapes and addresses its execution context had when it was captured; after
    ``set_input_shape`` changes them, TensorRT needs a new capture (NVIDIA/TensorRT#3798: one execution context per
    captured graph). So each batch size gets its own context from ``new_context(batch)``, captured once the way
    trtexec does it (``sampleInference.cpp``): one plain enqueue (deferred shape and allocation work must not be
    captured), a stream synchronize, then the capture. When the enqueue fails under capture (a layer that cannot be
    captured) or CUDA invalidates the capture, that batch runs by plain enqueue from then on, with a warning: a
    graph whose capture failed is never launched.
    """

    def __init__(self, cuda: Any, stream: Any, new_context: Callable[[int], Any]) -> None:
        self.cuda = cuda
        self.stream = stream
        self.new_context = new_context
        self.batches: dict[int, _BatchGraph] = {}

    def context(self, batch: int) -> Any:
        return self._entry(batch).context

    def run(self, batch: int) -> None:
        entry = self._entry(batch)
        if entry.graph_exec is None:
            enqueue(entry.context, self.stream)
        else:
            self.cuda.graph_launch(entry.graph_exec, self.stream)

    def close(self) -> None:
        """Destroy the instantiated graphs and drop the contexts (before their engine goes)."""
        batches, self.batches = self.batches, {}
        for batch, entry in batches.items():
            if entry.graph_exec is not None:
                try:
                    self.cuda.graph_exec_destroy(entry.graph_exec)
                except CudaCallError as exc:
                    log.warning("batch %d: could not destroy its CUDA graph: %s", batch, exc)

    def _entry(self, batch: int) -> _BatchGraph:
        entry = self.batches.get(batch)
        if entry is None:
            context = self.new_context(batch)
            entry = _BatchGraph(context, self._capture(context, batch))
            self.batches[batch] = entry
        return entry

    def _capture(self, context: Any, batch: int) -> Any | None:
        cuda, stream = self.cuda, self.stream
        enqueue(context, stream)
        cuda.stream_synchronize(stream)
        cuda.begin_capture(stream)
        try:
            captured = bool(context.execute_async_v3(CudaRuntime.handle(stream)))
        except BaseException:
            cuda.abandon_capture(stream)
            raise
        if not captured:
            cuda.abandon_capture(stream)
            log.warning(
                "batch %d: TensorRT's enqueue failed under CUDA-graph capture (the engine has operations that "
                "cannot be captured); running it without a graph",
                batch,
            )
            return None
        try:
            graph = cuda.end_capture(stream)
        except CudaCallError as exc:
            cuda.clear_error()
            log.warning("batch %d: CUDA invalidated the graph capture (%s); running it without a graph", batch, exc)
            return None
        try:
            return cuda.graph_instantiate(graph)
        except CudaCallError as exc:
            cuda.clear_error()
            log.warning("batch %d: the captured graph does not instantiate (%s); running without a graph", batch, exc)
            return None
        finally:
            cuda.graph_destroy(graph)


# ---------------------------------------------------------------------------------------------------------------
# Build (needs TensorRT)
# ---------------------------------------------------------------------------------------------------------------
def build_engine(
    onnx_path: str | os.PathLike[str],
    request: BuildRequest,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> EngineRecord:
    """Build a serialized engine from ``onnx_path`` and record it in the folder's manifest.json.

    The engine is written atomically next to the ONNX (or into ``out_dir``); an up-to-date engine for the same
    request is reused unless ``force``.
    """
    features = require_tensorrt()
    import tensorrt as trt

    onnx_file = Path(onnx_path)
    if not onnx_file.is_file():
        raise ArtifactError(f"ONNX file {onnx_file} does not exist; export one with `edgeconv export MODEL`")
    folder = Path(out_dir) if out_dir is not None else onnx_file.parent
    summary = summarize_onnx(onnx_file)
    plan = plan_build(features, request, summary)
    gpu = cuda_gpu_info(0)
    name = engine_file_name(onnx_file.stem, plan.precision, gpu.compute_capability, features.version, plan.dla_core)
    engine_path = folder / name
    onnx_sha = sha256_file(onnx_file)
    for record in engines_in_manifest(Manifest.read(folder, required=False)):
        if (
            record.file == name
            and not force
            and engine_path.is_file()
            and record.onnx_sha256 == onnx_sha
            and (record.min_batch, record.opt_batch, record.max_batch)
            == (request.min_batch, request.opt_batch, request.max_batch)
        ):
            log.info("engine %s is up to date", engine_path)
            return record

    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    for flag_name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, flag_name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse() with the path lets the parser find external-data weights next to the model.
    if not parser.parse(onnx_file.read_bytes(), str(onnx_file)):
        errors = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            entry: dict[str, Any] = {"code": str(error.code()), "desc": error.desc(), "node": error.node()}
            if features.parser_error_node_name:
                entry["node_name"], entry["node_operator"] = error.node_name(), error.node_operator()
            errors.append(entry)
        raise ExportError(f"TensorRT {features.version} cannot parse {onnx_file}: {format_parser_errors(errors)}")

    config = builder.create_builder_config()
    for pool_name, size in plan.memory_pools:
        config.set_memory_pool_limit(getattr(trt.MemoryPoolType, pool_name), size)
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, plan.profiling_verbosity)
    if plan.optimization_level is not None:
        config.builder_optimization_level = plan.optimization_level
    for flag_name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag_name))
    if plan.profiles:
        profile = builder.create_optimization_profile()
        for shape in plan.profiles:
            profile.set_shape(
                shape.input_name, trt.Dims(list(shape.min)), trt.Dims(list(shape.opt)), trt.Dims(list(shape.max))
            )
        config.add_optimization_profile(profile)
    if plan.dla_core is not None:
        _configure_dla(trt, builder, network, config, plan.dla_core, gpu_fallback="GPU_FALLBACK" in plan.builder_flags)

    cache_path = Path(plan.timing_cache) if plan.timing_cache else None
    save_cache = False
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        save_cache = attach_timing_cache(config, blob, str(cache_path))

    log.info("building %s with TensorRT %s (%s)", name, features.version, ", ".join(plan.builder_flags) or "no flags")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ExportError(
            f"TensorRT {features.version} failed to build {onnx_file} ({plan.precision}); run with "
            "--debug for the builder log"
        )
    # Engine and manifest first: a timing cache that cannot be saved must not cost the engine its record.
    write_atomic(engine_path, bytes(memoryview(serialized)))
    record = engine_record(plan, request, gpu, name, onnx_file, onnx_sha, engine_path, seconds)
    add_engine_to_manifest(folder, record)
    if cache_path is not None and save_cache:
        cache_blob = timing_cache_bytes(config)
        if cache_blob is None:
            log.warning("TensorRT returned no timing cache after the build; %s is left as it was", cache_path)
        else:
            try:
                write_atomic(cache_path, cache_blob)
            except OSError as exc:
                log.warning("could not save the timing cache %s: %s", cache_path, exc)
    return record


def engine_for(
    target: Any, *, precision: str, batch: int, max_batch: int | None = None, dla_core: int | None = None
) -> tuple[Path, EngineRecord]:
    """An engine of ``target`` (an ``edgeconv.backends.artifacts.Target``) that runs ``batch`` here: the recorded
    one when its TensorRT version, GPU, precision, batch range and source ONNX (sha256) fit, else a new build
    (cached next to the ONNX). A static-batch ONNX asked for another batch is an InvalidArgumentError.

    The ONNX is the target's QDQ graph for int8, its FP16 ONNX for fp16 when it has one (required by strong
    typing), else the FP32 ONNX.
    """
    features = require_tensorrt()
    gpu = cuda_gpu_info(0)
    onnx_path = engine_onnx(target, precision)
    low, opt, high = engine_batch_range(target.input_shape[0], batch, max_batch=max_batch, dla=dla_core is not None)
    folder = onnx_path.parent
    found = find_engine(
        Manifest.read(folder, required=False),
        precision=precision,
        version=features.version,
        compute_capability=gpu.compute_capability,
        batch=batch,
        onnx_sha256=sha256_file(onnx_path),
        dla_core=dla_core,
    )
    if found is not None and (folder / found.file).is_file():
        return folder / found.file, found
    request = BuildRequest(precision=precision, min_batch=low, opt_batch=opt, max_batch=high, dla_core=dla_core)
    record = build_engine(onnx_path, request)
    return folder / record.file, record


def engine_record(
    plan: BuilderPlan,
    request: BuildRequest,
    gpu: GpuInfo,
    name: str,
    onnx_file: Path,
    onnx_sha256: str,
    engine_path: Path,
    build_seconds: float,
) -> EngineRecord:
    return EngineRecord(
        file=name,
        precision=plan.precision,
        tensorrt_version=plan.version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        onnx_file=onnx_file.name,
        onnx_sha256=onnx_sha256,
        engine_sha256=sha256_file(engine_path),
        min_batch=request.min_batch,
        opt_batch=request.opt_batch,
        max_batch=request.max_batch,
        dla_core=plan.dla_core,
        network_flags=plan.network_flags,
        builder_flags=plan.builder_flags,
        build_seconds=round(build_seconds, 3),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _configure_dla(
    trt_module: Any,
    builder: trt.Builder,
    network: trt.INetworkDefinition,
    config: trt.IBuilderConfig,
    core: int,
    *,
    gpu_fallback: bool,
) -> None:
    cores = builder.num_DLA_cores
    if core >= cores:
        raise BackendUnavailableError(
            f"DLA core {core} does not exist here ({cores} DLA cores; DLA is on Jetson Xavier/Orin only)"
        )
    config.default_device_type = trt_module.DeviceType.DLA
    config.DLA_core = core
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    runs_on_dla = [bool(config.can_run_on_DLA(layer)) for layer in layers]
    on_gpu = dla_gpu_layers(
        [(layer.name, ok) for layer, ok in zip(layers, runs_on_dla, strict=True)],
        gpu_fallback=gpu_fallback,
        dla_core=core,
    )
    for layer, ok in zip(layers, runs_on_dla, strict=True):
        if not ok:
            config.set_device_type(layer, trt_module.DeviceType.GPU)
    if on_gpu:
        log.warning(
            "%d of %d layers fall back to the GPU: %s",
            len(on_gpu),
            len(layers),
            ", ".join(on_gpu[:10]) + (" ..." if len(on_gpu) > 10 else ""),
        )


# ---------------------------------------------------------------------------------------------------------------
# Runtime (needs TensorRT + cuda-python + a GPU)
# ---------------------------------------------------------------------------------------------------------------
def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _make_profiler(collector: LayerTimeCollector) -> trt.IProfiler:
    import tensorrt as trt

    class _LayerTimer(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)  # pybind needs the explicit base init

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            collector.add(layer_name, ms)

    return _LayerTimer()


def _release(release: Callable[..., None], *args: Any) -> None:
    """A cleanup call that must not hide the error that led to the cleanup: failures are logged."""
    try:
        release(*args)
    except CudaCallError as exc:
        log.warning("cleanup: %s", exc)


class TensorRTRunner(BackendRunner):
    """Runs a serialized engine with device buffers allocated once for the profile's max batch.

    ``cuda_graph``: replay a CUDA graph per batch size, each batch with its own execution context
    (:class:`GraphReplay`; inputs are copied into the same buffers, so a capture stays valid); never with DLA or
    ``profile`` (:func:`cuda_graph_policy`). ``profile``: attach an IProfiler for per-layer times.
    """

    backend = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike[str],
        record: EngineRecord,
        *,
        profile: bool = False,
        cuda_graph: bool = False,
        label: str = "",
    ) -> None:
        super().__init__(device="cuda", precision=record.precision, label=label)
        self.engine_path = Path(engine_path)
        self.record = record
        self.profile = profile
        self.cuda_graph, self.cuda_graph_note = cuda_graph_policy(cuda_graph, dla_core=record.dla_core, profile=profile)
        if self.cuda_graph_note:
            log.warning("%s: %s", self.engine_path.name, self.cuda_graph_note)
        self._collector = LayerTimeCollector()
        self._state: dict[str, Any] = {}

    def _activate(self) -> None:
        features = require_tensorrt()
        import tensorrt as trt

        cuda = CudaRuntime()
        gpu = cuda_gpu_info(0, cuda)
        why = engine_mismatch(self.record, features.version, gpu.compute_capability)
        if why:
            raise ArtifactError(
                f"engine {self.engine_path.name} cannot run here: {why}; rebuild it with "
                "`edgeconv build ARTIFACT --backend tensorrt`"
            )
        if not self.engine_path.is_file():
            raise ArtifactError(f"engine {self.engine_path} is missing; rebuild it with `edgeconv build`")
        runtime = trt.Runtime(trt_logger(trt))
        if self.record.dla_core is not None:
            runtime.DLA_core = self.record.dla_core
        engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:
            raise ArtifactError(f"TensorRT {features.version} could not deserialize {self.engine_path}")
        context = create_context(engine, self.engine_path.name)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1:
            raise ArtifactError(f"engine has {len(inputs)} inputs; edgeconv runs single-input classifiers")
        input_name = inputs[0]
        engine_shape = _dims(engine.get_tensor_shape(input_name))
        if -1 in engine_shape:
            max_shape = _dims(engine.get_tensor_profile_shape(input_name, 0)[2])
        else:
            max_shape = engine_shape
        self.input_shape = engine_shape
        set_input_shape(context, input_name, max_shape)
        missing = context.infer_shapes()
        if missing:
            raise ArtifactError(f"TensorRT could not infer shapes of {missing}")
        stream = cuda.stream_create()
        buffers: dict[str, int] = {}
        dtypes: dict[str, Any] = {}
        try:
            for name in names:
                shape = _dims(context.get_tensor_shape(name))
                dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                buffers[name] = cuda.malloc(int(np.prod(shape)) * dtypes[name].itemsize)
            set_tensor_addresses(context, buffers)
        except BaseException:
            for pointer in buffers.values():
                _release(cuda.free, pointer)
            _release(cuda.stream_destroy, stream)
            raise
        if self.profile:
            context.profiler = _make_profiler(self._collector)
        self._state = {
            "trt": trt,
            "cuda": cuda,
            "runtime": runtime,
            "engine": engine,
            "context": context,
            "stream": stream,
            "buffers": buffers,
            "dtypes": dtypes,
            "input": input_name,
            "outputs": outputs,
            "max_shape": max_shape,
            "batch": None,
            # CUDA graphs: one execution context per batch size; the first batch takes the context made above.
            "graphs": GraphReplay(cuda, stream, self._new_context) if self.cuda_graph else None,
            "spare_context": context if self.cuda_graph else None,
        }

    def _new_context(self, batch: int) -> Any:
        s = self._state
        context, s["spare_context"] = s["spare_context"], None
        if context is None:
            context = create_context(s["engine"], self.engine_path.name)
            set_tensor_addresses(context, s["buffers"])
        set_input_shape(context, s["input"], (batch, *s["max_shape"][1:]))
        return context

    def _deactivate(self) -> None:
        state, self._state = self._state, {}
        if not state:
            return
        cuda = state["cuda"]
        _release(cuda.stream_synchronize, state["stream"])
        if state["graphs"] is not None:
            state["graphs"].close()
        for pointer in state["buffers"].values():
            _release(cuda.free, pointer)
        _release(cuda.stream_destroy, state["stream"])
        # Contexts before engine before runtime: TensorRT objects must die in reverse order of creation.
        for key in ("graphs", "spare_context", "context", "engine", "runtime"):
            state.pop(key, None)

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        s = self._state
        cuda, stream, graphs = s["cuda"], s["stream"], s["graphs"]
        batch = inputs.shape[0]
        if batch > s["max_shape"][0]:
            raise InputError(f"batch {batch} exceeds the engine's max batch {s['max_shape'][0]}; rebuild with --batch")
        name = s["input"]
        host_in = np.ascontiguousarray(inputs, dtype=s["dtypes"][name])
        if graphs is not None:
            context = graphs.context(batch)  # captured on first use of this batch size
        else:
            context = s["context"]
            if s["batch"] != batch:
                set_input_shape(context, name, host_in.shape)
                s["batch"] = batch
        start = time.perf_counter()
        cuda.copy_to_device_async(s["buffers"][name], host_in, stream)
        if graphs is not None:
            graphs.run(batch)
        else:
            enqueue(context, stream)
        output = s["outputs"][0]
        host_out = np.empty(_dims(context.get_tensor_shape(output)), dtype=s["dtypes"][output])
        cuda.copy_to_host_async(host_out, s["buffers"][output], stream)
        cuda.stream_synchronize(stream)
        if self.profile:
            self._collector.end_run((time.perf_counter() - start) * 1000.0)
        return host_out.astype(np.float32, copy=False)

    def synchronize(self) -> None:
        if self._state:
            self._state["cuda"].stream_synchronize(self._state["stream"])

    def layer_profile(self, skip_runs: int = 0) -> LayerProfile | None:
        if not self.profile:
            return None
        return self._collector.summary()

    def reset_layer_times(self) -> None:
        """Forget the layer times so far (call after warm-up)."""
        self._collector.reset()
