"""`python -m training.jobs.export_encoder`: export the frozen text encoder to ONNX (fp32 + int8) with its
parity gate and golden vectors (:mod:`training.encoder.export`).

    python -m training.jobs.export_encoder export ARTIFACT_ROOT [--model-dir DIR] [--max-length N]
    python -m training.jobs.export_encoder torch-onnx --out FILE   # internal: the child process of an export
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from training.config import EncoderExportConfig
from training.encoder.export import export_encoder, torch_to_onnx


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_exp = sub.add_parser("export", help="full export into ARTIFACT_ROOT/encoder")
    p_exp.add_argument("artifact_root", type=Path)
    p_exp.add_argument("--model-dir", type=Path, default=None, help="HF model folder (default: base model)")
    p_exp.add_argument("--max-length", type=int, default=EncoderExportConfig.max_length)
    p_one = sub.add_parser("torch-onnx", help="internal: torch -> ONNX only (run in its own process)")
    p_one.add_argument("--out", type=Path, required=True)
    p_one.add_argument("--model-dir", type=Path, default=None)
    p_one.add_argument("--opset", type=int, default=EncoderExportConfig.opset)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "torch-onnx":
        torch_to_onnx(args.model_dir, args.out, opset=args.opset)
        return
    cfg = EncoderExportConfig(
        model_dir=str(args.model_dir) if args.model_dir else None,
        max_length=args.max_length,
    )
    spec, golden = export_encoder(args.artifact_root, cfg)
    print(json.dumps({"encoder": asdict(spec), "n_golden": len(golden)}, indent=2))


if __name__ == "__main__":
    main()
