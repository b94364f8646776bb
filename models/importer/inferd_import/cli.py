"""`inferd-import SOURCE --name NAME [--precision fp32|fp16|int4] [--layout optimum|genai] [--models DIR] [--force]`
and `inferd-import --random CONFIG --tokenizer SOURCE --name NAME ...`."""
import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__, placement
from .errors import ImportFailed
from .graph import Builder
from .progress import stage
from .writer import Staging, genai_config, manifest

PRECISIONS = ("fp32", "fp16", "int4")


def open_source(path):
    p = Path(path)
    if p.is_dir():
        from .sources.hf_folder import HfSource

        return HfSource(p)
    if p.is_file():
        from .sources.gguf_file import GgufSource

        return GgufSource(p)
    raise ImportFailed(f"{path}: no such file or folder (expected a .gguf file or a Hugging Face checkpoint folder)")


def run(args):
    started = time.time()
    with stage("read", 1) as bar:
        if args.random:
            from .sources.random_init import RandomSource

            source = RandomSource(Path(args.random), open_source(args.tokenizer) if args.tokenizer else None, args.seed)
            desc = f"random weights from {Path(args.random).name} (seed {args.seed})"
        else:
            source = open_source(args.source)
            desc = Path(args.source).name
        tok = source.tokenizer()
        bar.update(1)
    arch = source.arch
    staging = Staging(args.models, args.name, args.force)
    try:
        weights = (12 if arch.attention_bias else 9) * arch.num_layers + 3
        matmuls = 7 * arch.num_layers + 1
        with stage("convert", weights) as conv, stage("quantize", matmuls if args.precision == "int4" else 0) as quant:
            builder = Builder(arch, args.precision, on_weight=lambda n: conv.update(1),
                              on_quantized=lambda n: quant.update(1), layout=args.layout)
            model = builder.build(source)
            model.metadata_props.add(key="inferd_import", value=json.dumps({"version": __version__, "source": desc, "precision": args.precision}))
        with stage("write", 1) as bar:
            staging.write_model(model)
            del model
            staging.write_json("tokenizer.json", tok.tokenizer_json)
            tok_cfg = dict(tok.config)
            if tok.chat_template:
                tok_cfg["chat_template"] = tok.chat_template
                (staging.dir / "chat_template.jinja").write_text(tok.chat_template)
            tok_cfg.setdefault("model_max_length", arch.context_length)
            tok_cfg.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
            staging.write_json("tokenizer_config.json", tok_cfg)
            staging.write_json("config.json", arch.hf_config())
            staging.write_json("generation_config.json", source.generation_defaults())
            staging.write_json("genai_config.json", genai_config(arch, args.threads, args.layout))
            (staging.dir / "model.toml").write_text(manifest(arch, args.precision, desc))
            bar.update(1)
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    print(f"imported {desc} as {staging.dest} ({args.precision}, {arch.family}, "
          f"{arch.num_layers} layers) in {time.time() - started:.1f} s", file=sys.stderr)
    off = placement.check_file(staging.dest / "model.onnx")
    if off:
        print("note: on CUDA, ONNX Runtime would run these on the CPU: "
              + ", ".join(f"{op} ({why})" for op, why in off)
              + "; for the GPU, import with --precision fp16 or --layout optimum", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="inferd-import", description=__doc__)
    ap.add_argument("source", nargs="?", help="a .gguf file or a Hugging Face checkpoint folder")
    ap.add_argument("--name", required=True, help="model name in the repository")
    ap.add_argument("--precision", choices=PRECISIONS, default="int4")
    ap.add_argument("--models", default=str(Path.home() / ".cache/inferd/models"), help="model repository")
    ap.add_argument("--force", action="store_true", help="replace an existing model folder")
    ap.add_argument("--random", metavar="CONFIG", help="build deterministic random weights from a config.json")
    ap.add_argument("--tokenizer", metavar="SOURCE", help="with --random: where the tokenizer comes from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="intra_op_num_threads written to genai_config.json")
    ap.add_argument("--layout", choices=("optimum", "genai"), default="optimum",
                    help="graph layout: optimum (position_ids, standard operators) or genai "
                         "(the onnxruntime-genai builder's: GroupQueryAttention, no position_ids)")
    args = ap.parse_args(argv)
    if bool(args.source) == bool(args.random):
        ap.error("give either SOURCE or --random CONFIG")
    try:
        run(args)
    except ImportFailed as e:
        print(f"inferd-import: {e}", file=sys.stderr)
        sys.exit(2)
