"""The runtime formats written beside the SavedModel: one table, one entry per format.

The SavedModel is always written (it is the reference every other format is checked
against). Each other format is a `RuntimeFormat`: a writer that puts its files into the
version folder and a verifier that checks them in a clean process against the SavedModel's
outputs; `saved_model.export_saved_model` runs every requested one in the table's order.
Adding a format is its own module with those two functions, plus one `register_format`
call at the bottom of this file; the trainer's `--export-formats`, `python -m export
--formats`, the held-out sample and the run report's export table all read this table.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Callable, Dict, Optional, Sequence, Tuple

SAVED_MODEL = "saved_model"


@dataclasses.dataclass(frozen=True)
class WriteContext:
    """What a writer may read. `arrays`, `manifest`: `export.weights.weight_arrays(model)`."""

    module: object  # export.serving.ServingModule
    spec: object  # data.spec.DataSpec
    version_dir: str  # the unpublished version folder (tmp-<version>)
    vocab_path: str  # the spec's vocab.txt ("" for dense data)
    arrays: Dict
    manifest: Dict
    options: object  # export.saved_model.ExportOptions


@dataclasses.dataclass(frozen=True)
class VerifyContext:
    """What a verifier may read: the written files and the SavedModel's checked outputs.

    cases_path: npz of `serving_default` case groups (G/in/<name>) and `accuracy:<k>` groups
      with targets (see `verify_tflite.py`); outputs_path: npz of the SavedModel's outputs per
      group (G/out/<name>); scratch: a local folder the verifier may write into.
    """

    version_dir: str
    scratch: str
    cases_path: str
    outputs_path: str
    written: Dict  # what this format's writer returned
    options: object


@dataclasses.dataclass(frozen=True)
class RuntimeFormat:
    """One export format beside the SavedModel.

    name: the `--export-formats` word; folder: its folder inside the version (published
      with it); write(WriteContext) -> result entries (paths, sizes, or a "<name>_skipped"
      reason); verify(VerifyContext) -> result entries, raising RuntimeError on a failed check
      (not called when the writer skipped); report_rows: (result key, label) pairs for the
      run report; requires: a module that must import for this format, and install_hint the
      command that installs it.
    """

    name: str
    folder: str
    write: Callable[[WriteContext], Dict]
    verify: Callable[[VerifyContext], Dict]
    report_rows: Tuple[Tuple[str, str], ...] = ()
    requires: str = ""
    install_hint: str = ""

    def missing_requirement(self) -> Optional[str]:
        """A one-line reason this format cannot run here, or None."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"export format {self.name} needs the {self.requires} package: {self.install_hint}"
        return None


RUNTIME_FORMATS: Dict[str, RuntimeFormat] = {}


def register_format(runtime_format: RuntimeFormat) -> None:
    """Adds a format to the table; a name or folder already taken raises."""
    taken = {SAVED_MODEL} | set(RUNTIME_FORMATS)
    if runtime_format.name in taken:
        raise ValueError(f"export format {runtime_format.name!r} is already registered")
    if runtime_format.folder in {f.folder for f in RUNTIME_FORMATS.values()}:
        raise ValueError(f"export folder {runtime_format.folder!r} is already used")
    RUNTIME_FORMATS[runtime_format.name] = runtime_format


def format_names() -> Tuple[str, ...]:
    """Every `--export-formats` word, the SavedModel first."""
    return (SAVED_MODEL,) + tuple(RUNTIME_FORMATS)


def requested(formats: Sequence[str]) -> Tuple[RuntimeFormat, ...]:
    """The runtime formats among `formats`, in the table's order."""
    return tuple(f for name, f in RUNTIME_FORMATS.items() if name in formats)


def check_formats(formats: Sequence[str]) -> None:
    """Raises ValueError for an unknown format or one whose package is missing."""
    unknown = sorted(set(formats) - set(format_names()))
    if unknown:
        raise ValueError(f"export formats must be among {format_names()}, got {unknown}")
    for runtime_format in requested(formats):
        reason = runtime_format.missing_requirement()
        if reason:
            raise ValueError(reason)


def _register_builtin_formats() -> None:
    from export import onnx_export, tflite

    register_format(RuntimeFormat(
        name="tflite", folder=tflite.TFLITE_DIR, write=tflite.write_format,
        verify=tflite.verify_format, report_rows=tflite.REPORT_ROWS))
    register_format(RuntimeFormat(
        name="onnx", folder=onnx_export.ONNX_DIR, write=onnx_export.write_format,
        verify=onnx_export.verify_format, report_rows=onnx_export.REPORT_ROWS, requires="onnx",
        install_hint="pip install 'seqtrain[onnx]' (or pip install onnx onnxruntime)"))


_register_builtin_formats()
