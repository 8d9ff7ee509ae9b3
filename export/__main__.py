"""`python -m export --model-dir DIR [--export-dir DIR] [--formats saved_model,tflite] [--quantize]`

Re-exports a trained model dir's best checkpoint (see `export/reexport.py`) and prints the
result as JSON.
"""

import argparse
import json
import logging
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[1])
    parser.add_argument("--model-dir", required=True, help="a trainer model dir (config.json, best/)")
    parser.add_argument("--export-dir", default="",
                        help="folder of versions (default: $AIP_MODEL_DIR, the run's, <model-dir>/export)")
    parser.add_argument("--formats", default=None, help="comma list of saved_model,tflite,onnx")
    parser.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=None,
                        help="also write a dynamic-range quantized TFLite model")
    parser.add_argument("--mc-samples", type=int, default=None, help="MC dropout samples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from export.reexport import reexport  # after parsing: --help stays fast

    overrides = {}
    if args.formats is not None:
        overrides["formats"] = tuple(f for f in args.formats.split(",") if f)
    if args.quantize is not None:
        overrides["quantize"] = args.quantize
    if args.mc_samples is not None:
        overrides["mc_samples"] = args.mc_samples
    result = reexport(args.model_dir, args.export_dir, **overrides)
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
