"""Export a student (ONNX, TorchScript or an ExportedProgram) with its metadata, and check the
exported model against PyTorch before keeping it."""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..atomic import atomic_path, write_text
from ..errors import SubdistillError, first_line
from .expert import ExpertSpec, build_expert, load_spec, sample_images

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
PARITY_AGREEMENT = 0.999
"""The exported model must give the same top class on at least this fraction of images."""
PARITY_TOLERANCE = 1e-3
"""... and logits within this fraction of the largest logit magnitude (at least 1)."""


class ExportError(SubdistillError):
    """A model cannot be exported, or its export does not answer as the PyTorch model does."""


def export(run_dir: str | Path, fmt: str = "onnx", out: str | Path | None = None,
           parity_images: int = 256, quantize: str | None = None) -> dict[str, Any]:
    """Export the student of a finished run to ``out`` (default ``RUN_DIR/expert.<ext>``)
    with ``out + ".json"`` beside it (metadata and parity); ``quantize="int8"`` also writes
    the statically quantised ONNX model (see :mod:`.quantize`). Returns the JSON record."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantisation {quantize!r}; the one offered is int8")
    if quantize and fmt != "onnx":
        raise ExportError("--quantize int8 needs --format onnx (onnxruntime quantises it)")
    spec = load_spec(run_dir)
    target = Path(out) if out is not None else spec.run_dir / f"expert{FORMATS[fmt]}"
    record = export_module(build_expert(spec), spec.metadata(), fmt, target,
                           _parity_batch(spec, parity_images))
    if quantize:
        from .quantize import quantize_int8

        record["int8"] = quantize_int8(spec, target)
        write_text(_sidecar(target), json.dumps(record, indent=1) + "\n")
    return record


def _parity_batch(spec: ExpertSpec, count: int) -> Tensor:
    """Test images of the run's subtask, or uniform random images when its data is absent."""
    sampled = sample_images(spec, "test", count)
    if sampled is not None:
        return sampled[0]
    log.warning("the run's data cannot be loaded here: the parity check uses random images")
    return torch.rand(count, *spec.input_shape, generator=torch.Generator().manual_seed(0))


def export_module(model: nn.Module, metadata: dict[str, Any], fmt: str, out: str | Path,
                  images: Tensor) -> dict[str, Any]:
    """Export ``model`` (images in [0, 1] -> logits) to ``out`` as ``fmt`` with
    ``metadata``, check it on ``images`` and write the record beside it."""
    out = Path(out)
    model = model.eval()
    example = images[:2]
    with atomic_path(out) as tmp:
        exporter = _write(model, fmt, example, tmp, metadata)
        run = load_exported(tmp, fmt)
        parity = check_parity(model, run, images)
    record = {**metadata, "format": fmt, "exporter": exporter, "parity": parity}
    write_text(_sidecar(out), json.dumps(record, indent=1) + "\n")
    return record


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _write(model: nn.Module, fmt: str, example: Tensor, path: Path,
           metadata: dict[str, Any]) -> str:
    """Write the export; the exporter used."""
    batch = torch.export.Dim("batch", min=1)
    if fmt == "torchscript":
        with warnings.catch_warnings():  # torch marks TorchScript deprecated; users still ask
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(model, example)
            torch.jit.save(traced, str(path),
                           _extra_files={"subdistill.json": json.dumps(metadata)})
        return "torch.jit.trace"
    if fmt == "exported-program":
        program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}})
        buffer = io.BytesIO()  # torch.export.save wants a .pt2 name or a buffer
        torch.export.save(program, buffer, extra_files={"subdistill.json": json.dumps(metadata)})
        path.write_bytes(buffer.getvalue())
        return "torch.export"
    return _write_onnx(model, example, path, metadata, batch)


def _write_onnx(model: nn.Module, example: Tensor, path: Path, metadata: dict[str, Any],
                batch: Any) -> str:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs onnx, onnxscript and onnxruntime: "
                          "pip install 'subdistill[deploy]'") from None
    try:
        torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["images"],
                          output_names=["logits"], dynamic_shapes={"images": {0: batch}},
                          external_data=False, verbose=False)
        exporter = "torch.onnx (dynamo)"
    except Exception as err:  # noqa: BLE001 - any failure of the new exporter: the old one
        log.warning("the torch.export-based ONNX exporter failed (%s: %s); using the "
                    "TorchScript-based one", type(err).__name__, first_line(err))
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as second:  # noqa: BLE001
            raise ExportError(f"neither ONNX exporter of torch handles this model (dynamo: "
                              f"{type(err).__name__}: {first_line(err)}; TorchScript: "
                              f"{type(second).__name__}: {first_line(second)})") from None
        exporter = "torch.onnx (TorchScript)"
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"subdistill.{key}", json.dumps(value)
    onnx.save(proto, str(path))
    return exporter


def load_exported(path: str | Path, fmt: str | None = None) -> Any:
    """A callable ``images -> logits`` (torch tensors) for an exported model file."""
    path = Path(path)
    fmt = fmt or {v: k for k, v in FORMATS.items()}.get(path.suffix)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path))
    if fmt == "exported-program":
        return torch.export.load(io.BytesIO(path.read_bytes())).module()
    if fmt != "onnx":
        raise ExportError(f"{path}: not an exported model (.onnx, .pt or .pt2)")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(images: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: images.numpy()})[0])

    return run


def check_parity(model: nn.Module, exported: Any, images: Tensor,
                 batch_size: int = 64) -> dict[str, Any]:
    """Logits of ``model`` and ``exported`` on ``images``: the largest absolute difference,
    the top-class agreement; an :class:`ExportError` below the documented bounds."""
    with torch.no_grad():
        ours = torch.cat([model(x) for x in images.split(batch_size)])
        theirs = torch.cat([exported(x.contiguous()) for x in images.split(batch_size)])
    difference = float((ours - theirs).abs().max())
    agreement = float((ours.argmax(1) == theirs.argmax(1)).float().mean())
    scale = max(1.0, float(ours.abs().max()))
    parity = {"images": len(images), "max_abs_logit_difference": difference,
              "argmax_agreement": agreement}
    if agreement < PARITY_AGREEMENT or difference > PARITY_TOLERANCE * scale:
        raise ExportError(f"the export answers differently: top class agrees on "
                          f"{agreement:.2%} of {len(images)} images (needed "
                          f"{PARITY_AGREEMENT:.1%}), logits differ by up to {difference:.3g} "
                          f"(allowed {PARITY_TOLERANCE * scale:.3g}); the file was not kept")
    return parity
