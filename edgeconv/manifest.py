"""``manifest.json``: the one reader and writer of an artifact's manifest.

``edgeconv export`` writes it, ``edgeconv build`` (TensorRT) appends its engine records to it, and the runtime, the
backends, ``edgeconv remote`` (the local artifact's and the board's copy), ``edgeconv profile`` and the preflight
checks read it, all through :class:`Manifest`. Standard library only (no torch, onnx or numpy), so that
``edgeconv.runtime`` reads artifacts without importing PyTorch.

One policy for every reader (:meth:`Manifest.read`):

- whatever is there must be well formed: a readable UTF-8 file holding a JSON object, whose ``format`` (when given) is
  ``edgeconv-artifact/1`` and whose known sections (``files``, ``input``, ``model_kwargs``, ``labels``,
  ``preprocessing``, ``int8``, ``tensorrt`` ...) have the right JSON type; anything else is one ``ArtifactError`` line
  naming the file and the fix;
- ``required=True`` (a command that needs an artifact: the runtime on a folder) also demands that the file be there
  and be an artifact's (``format`` and ``files``); ``required=False`` (a folder that may hold bare .onnx files:
  backends, TensorRT's build record, ``remote``) reads a missing file as an empty manifest.

Keys a caller needs beyond that are checked by the accessor that reads them (:attr:`Manifest.input_name` ...), with
the same kind of one-line error. The JSON schema is the one ``edgeconv export`` has always written; the document is
kept as read (``data``), so keys this module does not know survive a rewrite.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeconv.errors import ArtifactError, first_line
from edgeconv.files import write_atomic

FORMAT = "edgeconv-artifact/1"
MANIFEST = "manifest.json"
LABELS = "labels.txt"
REEXPORT = "re-export the artifact with `edgeconv export MODEL`"
# Sections with one JSON type; None (null) is allowed where the writer writes it (``"int8": null``).
_OBJECTS = ("input", "output", "labels", "files", "weights", "validation", "fusion", "versions")
_NULLABLE_OBJECTS = ("model_kwargs", "preprocessing", "int8", "tensorrt")
_LISTS = ("precisions",)
_REQUIRED = ("format", "files")  # what makes a manifest an artifact's (required=True)


class ManifestError(ArtifactError):
    """A malformed manifest.json: ``problem`` names the file and what is wrong with it, the message adds the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem


@dataclass(frozen=True)
class FileEntry:
    """One model file the manifest lists: ``files[precision]``."""

    precision: str
    name: str  # the path as recorded, relative to the artifact folder
    path: Path  # the folder joined with ``name``
    sha256: str | None
    bytes: int | None


@dataclass
class Manifest:
    """The ``manifest.json`` of an artifact folder: ``data`` is the JSON document itself (the schema
    ``edgeconv export`` writes), ``folder`` where it lives. ``unchanged``: export found an identical artifact in place.

    An empty ``data`` is a folder without a manifest (``read(..., required=False)``)."""

    folder: Path
    data: dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False
    required: bool = field(default=True, repr=False, compare=False)  # as read: which fix the errors suggest

    # --- reading and writing ----------------------------------------------------------------------------------------

    @classmethod
    def read(cls, folder: str | os.PathLike[str], *, required: bool = True) -> Manifest:
        """``folder``'s manifest.json, checked by the one policy of this module (see its docstring);
        ``ArtifactError`` naming the file and the fix otherwise."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            if required:
                raise ArtifactError(
                    f"{path} not found: {folder} is not an edgeconv artifact folder; export one with "
                    "`edgeconv export MODEL`"
                )
            return cls(folder, {}, required=False)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror or type(exc).__name__}; {_fix(required)}") from None
        return cls.parse(raw, folder=folder, required=required)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Manifest:
        """The manifest of an artifact folder (``read(folder, required=True)``)."""
        return cls.read(folder, required=True)

    @classmethod
    def parse(cls, raw: bytes | str, *, folder: str | os.PathLike[str], required: bool = True) -> Manifest:
        """A manifest from its bytes (read from ``folder``, or from a board), by the same policy as :meth:`read`."""
        folder = Path(folder)
        path = folder / MANIFEST
        fix = _fix(required)
        try:
            data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except UnicodeDecodeError:
            raise ManifestError(f"{path} is not JSON (binary data, not UTF-8 text)", fix) from None
        except ValueError as exc:  # JSONDecodeError
            raise ManifestError(f"{path} is not JSON ({first_line(exc, 120)})", fix) from None
        if not isinstance(data, dict):
            raise ManifestError(f"{path} is not a JSON object (it holds a JSON {_kind(data)})", fix)
        manifest = cls(folder, data, required=required)
        manifest._check(required)
        return manifest

    def _check(self, required: bool) -> None:
        data = self.data
        if "format" in data and data["format"] != FORMAT:
            raise self._error(f"is a {data['format']!r} manifest, not an {FORMAT} one")
        if required:
            missing = [key for key in _REQUIRED if key not in data]
            if missing:
                raise self._error(f"lacks {', '.join(missing)}: it is not an {FORMAT} manifest")
        for key in _OBJECTS + _NULLABLE_OBJECTS:
            if key in data and not isinstance(data[key], dict) and not (key in _NULLABLE_OBJECTS and data[key] is None):
                raise self._error(f"{key} is not a JSON object", colon=True)
        for key in _LISTS:
            if key in data and not isinstance(data[key], list):
                raise self._error(f"{key} is not a JSON list", colon=True)
        for precision, entry in (data.get("files") or {}).items():
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
                raise self._error(f"files.{precision} names no file", colon=True)
        engines = (data.get("tensorrt") or {}).get("engines", [])
        if not isinstance(engines, list) or not all(isinstance(e, dict) and "file" in e for e in engines):
            raise self._error("tensorrt.engines is not a list of engine records", colon=True)

    def to_bytes(self) -> bytes:
        """The document as written to disk: two-space indented JSON and a final newline."""
        return (json.dumps(self.data, indent=2, default=str) + "\n").encode("utf-8")

    def write(self, folder: str | os.PathLike[str] | None = None) -> Path:
        """Write the document to ``folder`` (default: its own) atomically: a reader sees the old file or the new one.
        Returns the path written. A failed write is an ``OutputError`` and leaves the old file as it was."""
        path = Path(folder if folder is not None else self.folder) / MANIFEST
        write_atomic(path, self.to_bytes())
        return path

    def record_engine(self, entry: dict[str, Any]) -> None:
        """Add a TensorRT engine record (JSON of ``EngineRecord``, plus whatever the builder adds) under
        ``tensorrt.engines``, replacing the record of the same engine file. In place; :meth:`write` saves it."""
        section = self.data.get("tensorrt")
        if not isinstance(section, dict):
            section = self.data["tensorrt"] = {}
        kept = [e for e in section.get("engines") or [] if isinstance(e, dict) and e.get("file") != entry["file"]]
        section["engines"] = [*kept, entry]

    # --- what callers read ------------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @property
    def is_artifact(self) -> bool:
        """Written by ``edgeconv export`` (the ``format`` is this module's), not a hand-made or engine-only file."""
        return self.data.get("format") == FORMAT

    @property
    def model_name(self) -> str | None:
        """The zoo model the artifact was exported from (``model``; ``model.name`` in hand-written ones), or None."""
        model = self.data.get("model")
        if isinstance(model, dict):
            model = model.get("name")
        return model if isinstance(model, str) and model else None

    @property
    def model(self) -> str:
        """The zoo model's name; ``ArtifactError`` when the manifest names none."""
        name = self.model_name
        if name is None:
            raise self._error("names no model (model)")
        return name

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.data.get("model_kwargs") or {})

    @property
    def fused(self) -> bool:
        return bool(self.data.get("fused"))

    @property
    def files(self) -> dict[str, FileEntry]:
        """precision -> the model file it lists (empty without ``files``)."""
        out = {}
        for precision, entry in (self.data.get("files") or {}).items():
            size = entry.get("bytes")
            out[precision] = FileEntry(
                precision=precision,
                name=entry["path"],
                path=self.folder / entry["path"],
                sha256=entry.get("sha256") if isinstance(entry.get("sha256"), str) else None,
                bytes=size if isinstance(size, int) else None,
            )
        return out

    @property
    def precisions(self) -> list[str]:
        """The precisions exported (``precisions``, else the keys of ``files``)."""
        listed = self.data.get("precisions")
        return [str(p) for p in listed] if isinstance(listed, list) else list(self.data.get("files") or {})

    def file(self, precision: str = "fp32") -> Path:
        """The model file of ``precision``; ``ArtifactError`` naming what the artifact holds when it has none."""
        entry = self.files.get(precision)
        if entry is None:
            held = ", ".join(self.files) or "none"
            how = f"export it with --{precision}" if precision in ("fp16", "int8") else REEXPORT
            raise ArtifactError(f"{self.folder} has no {precision} model (it holds: {held}); {how}")
        return entry.path

    def recorded_hashes(self) -> dict[str, str]:
        """file name -> the sha256 the manifest records for it (model files and the labels file)."""
        recorded = {entry.name: entry.sha256 for entry in self.files.values() if entry.sha256}
        labels = self.labels
        if labels.get("file") and labels.get("sha256"):
            recorded[str(labels["file"])] = str(labels["sha256"])
        return recorded

    @property
    def input_name(self) -> str:
        name = (self.data.get("input") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise self._error("lacks input.name", colon=False)
        return name

    @property
    def input_shape(self) -> list[int | str]:
        """The input shape as exported: ints, and ``"batch"`` for a dynamic batch."""
        shape = (self.data.get("input") or {}).get("shape")
        if not isinstance(shape, list) or not shape:
            raise self._error("lacks input.shape", colon=False)
        return list(shape)

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        """How an image becomes the model's input (resize ratio, mean, std ...), or None when not recorded."""
        return self.data.get("preprocessing") or None

    @property
    def labels(self) -> dict[str, Any]:
        """The ``labels`` section (set, file, count, sha256); empty when not recorded."""
        return dict(self.data.get("labels") or {})

    @property
    def labels_file(self) -> Path:
        return self.folder / str(self.labels.get("file") or LABELS)

    @property
    def weights(self) -> dict[str, Any]:
        return dict(self.data.get("weights") or {})

    @property
    def int8(self) -> dict[str, Any] | None:
        """The INT8 section (calibration, fidelity, gate) of an artifact exported with --int8, else None."""
        return self.data.get("int8") or None

    @property
    def engines(self) -> list[dict[str, Any]]:
        """The TensorRT engine records (``tensorrt.engines``), as JSON objects."""
        section = self.data.get("tensorrt")
        engines = section.get("engines") if isinstance(section, dict) else None
        return [e for e in engines if isinstance(e, dict)] if isinstance(engines, list) else []

    # --- errors -----------------------------------------------------------------------------------------------------

    def _error(self, what: str, *, colon: bool = False) -> ManifestError:
        return ManifestError(f"{self.path}{':' if colon else ''} {what}", _fix(self.required))


def _fix(required: bool) -> str:
    return REEXPORT if required else f"{REEXPORT}, or delete it to use the folder's .onnx files without it"


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")
