"""Device-side commands: ``export``, ``encode``, ``predict`` (registered by :mod:`softbits.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, overload

import typer

from softbits.cliutil import check_output_dir, check_output_file, writing
from softbits.errors import ConfigError, DataError

if TYPE_CHECKING:
    from softbits.device.wire import Frame

__all__ = ["encode_cmd", "export", "frame_option", "predict"]

FrameOption = Annotated[str, typer.Option(
    "--frame", help="full (16-byte header, any number of rows), compact (2 bytes of framing, one row) "
                    "or none (one bare row, for the route that names the model id).")]

ModelArg = Annotated[Path, typer.Argument(help="A model file written by `softbits train --save`.")]


def _load(model_path: Path):
    from softbits.training.trained_model import TrainedModel

    return TrainedModel.load(model_path)


def _spec(model):
    from softbits.device.spec import EncoderSpec

    return EncoderSpec.from_model(model)


@overload
def frame_option(text: str, auto: Literal[False] = False) -> Frame: ...
@overload
def frame_option(text: str, auto: Literal[True]) -> Frame | Literal["auto"]: ...
def frame_option(text: str, auto: bool = False) -> Frame | Literal["auto"]:
    """The ``--frame`` value, checked: full, compact or none (or auto, where a reader may detect it)."""
    from softbits.device.wire import FRAMES

    choices: tuple[Frame | Literal["auto"], ...] = ("auto", *FRAMES) if auto else FRAMES
    for frame in choices:
        if text.strip().lower() == frame:
            return frame
    raise ConfigError(f"--frame must be {', '.join(choices[:-1])} or {choices[-1]}, got {text!r}")


EXPORT_FORMATS = ("json", "c", "package", "onnx", "triton")


def export(
    model: ModelArg,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Directory for the export (a new or empty one for package).")],
    format: Annotated[str, typer.Option("--format", help="json (encoder.json, the device contract), c (softbits_encoder.{h,c}, C99, C++-safe) package (one library folder for Arduino, PlatformIO, ESP-IDF and Zephyr, with an example sketch; docs/device-guide.md), onnx (the server side: codes -> predictions, model.onnx; needs softbits[onnx]) or triton (the same as a Triton model repository entry softbits_<id>/1/model.onnx + config.pbtxt).")] = "json",
) -> None:
    """Export the device encoder of a threshold model (raw-unit float32 thresholds), or its server side as ONNX."""
    fmt = format.lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format must be {', '.join(EXPORT_FORMATS[:-1])} or {EXPORT_FORMATS[-1]}, got {format!r}")
    check_output_dir(out_dir, "--out-dir")
    trained = _load(model)
    spec = _spec(trained) if fmt in ("json", "c", "package") else None  # the server side needs codes only
    with writing("--out-dir"):
        if fmt == "json" and spec is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / "encoder.json"
            path.write_text(spec.to_json(), encoding="utf-8")
            paths = [path]
        elif fmt == "c" and spec is not None:
            from softbits.device.cgen import write_c

            paths = write_c(spec, out_dir)
        elif fmt == "package" and spec is not None:
            from softbits.device.package import write_package

            paths = write_package(spec, out_dir)
        elif fmt == "onnx":
            from softbits.training.onnx_export import export_onnx

            paths = [export_onnx(trained, out_dir / "model.onnx")]
        else:
            from softbits.training.onnx_export import write_triton

            paths = write_triton(trained, out_dir, f"softbits_{_file_id(model)}")
    for p in paths:
        typer.echo(str(p))


def _file_id(path: Path) -> str:
    """16 hex digits of the model file's SHA-256: a name for models with or without an encoder."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def encode_cmd(
    model: ModelArg,
    input: Annotated[Path, typer.Option("--input", help="CSV with a header row of raw features.")],
    out: Annotated[Path | None, typer.Option(help="Output file (hex: stdout when omitted).")] = None,
    format: Annotated[str, typer.Option("--format", help="bin (a wire payload) or hex (packed samples, one line each, no header).")] = "bin",
    frame: FrameOption = "full",
) -> None:
    """Encode raw CSV rows as the device does: a wire payload, or the bytes softbits_encode writes."""
    from softbits.device.encode import encode_packed
    from softbits.device.predict import read_features
    from softbits.device.wire import build_frame

    chosen = frame_option(frame)
    fmt = format.lower()
    if fmt not in ("bin", "hex"):
        raise ConfigError(f"--format must be bin or hex, got {format!r}")
    if fmt == "bin" and out is None:
        raise ConfigError("--format bin needs --out FILE")
    if fmt == "hex" and chosen != "full":
        raise ConfigError("--format hex writes bare packed samples; --frame applies to --format bin")
    if out is not None:
        check_output_file(out, "--out")
    m = _load(model)
    spec = _spec(m)
    packed = encode_packed(spec, read_features(input, m.feature_names, m.target_name, spec.unsent_features))
    if fmt == "bin":
        data = build_frame(spec, packed, chosen)
        with writing("--out"):
            out.write_bytes(data)  # type: ignore[union-attr]
        return
    text = "".join(row.tobytes().hex() + "\n" for row in packed)
    if out is None:
        sys.stdout.write(text)
    else:
        with writing("--out"):
            out.write_text(text, encoding="ascii")


def predict(
    model: ModelArg,
    input: Annotated[Path | None, typer.Option("--input", help="CSV with a header row of raw features.")] = None,
    payload: Annotated[Path | None, typer.Option(help="A wire payload (softbits encode --out).")] = None,
    frame: Annotated[str, typer.Option(
        "--frame", help="How --payload is framed: auto (full or compact, told apart by the first byte), "
                        "full, compact or none (one bare sample).")] = "auto",
) -> None:
    """Print one prediction per line, from raw rows (device-exact encoder) or from a payload."""
    from softbits.device.predict import (
        device_spec,
        format_prediction,
        predict_payload,
        predict_rows,
        prediction_values,
        read_features,
    )

    chosen = frame_option(frame, auto=True)
    if (input is None) == (payload is None):
        raise ConfigError("give exactly one of --input X.csv or --payload payload.bin")
    m = _load(model)
    spec = device_spec(m)
    if input is not None:
        unsent = spec.unsent_features if spec is not None else ()
        pred = predict_rows(m, read_features(input, m.feature_names, m.target_name, unsent))
    else:
        if spec is None:
            raise DataError(f"method {m.config.method} has no threshold encoder, so it reads no payloads")
        if not payload.is_file():  # type: ignore[union-attr]
            raise DataError(f"payload file not found: {payload}")
        pred = predict_payload(m, spec, payload.read_bytes(), frame=chosen)  # type: ignore[union-attr]
    sys.stdout.write("".join(format_prediction(v) + "\n" for v in prediction_values(m, pred)))
