"""The ``subdistill`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .errors import ConfigError, SubdistillError

T = TypeVar("T")
EPILOG = "Configs are YAML; `--set section.key=value` overrides any entry (value parsed as YAML)."


def _add_config(parser: argparse.ArgumentParser, resumable: bool = False,
                trains: bool = False) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set train.epochs=5 (repeatable)")
    if trains:
        parser.add_argument("--device", dest="overrides", action="append",
                            type=lambda name: f"train.device={name}", metavar="DEVICE",
                            help="train on cpu, cuda, cuda:1 or mps (= --set train.device=...)")
    if resumable:
        parser.add_argument("--resume", action="store_true", help="continue from the run "
                            "directory's checkpoint (same settings required)")
        parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in "
                            "the run directory (its files and saved bases are deleted)")


def _add_imports(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import a plugin module or .py file first (repeatable; "
                        "docs/extending.md)")


def _in_every_process(device: str, job: Callable[[], T]) -> T | None:
    """Run ``job`` in a process group when launched by torchrun; its result on rank 0 (or in
    the only process), None on the other ranks (which print nothing)."""
    from .distributed import is_main, process_group

    with process_group(device):
        result = job()
        return result if is_main() else None


def _cmd_distill(args: argparse.Namespace) -> None:
    from .config import load_config
    from .jobs import run_distill

    config = load_config(args.config, args.overrides)
    result = _in_every_process(config.train.device,
                               lambda: run_distill(config, resume=args.resume,
                                                           overwrite=args.overwrite))
    if result is None:
        return
    teacher = result.teacher_test_accuracy
    print(f"best epoch {result.best_epoch}: val accuracy {result.best_val_accuracy:.4f}, "
          f"test accuracy {result.test_accuracy:.4f}"
          + ("" if teacher is None else f" (teacher on the subtask: {teacher:.4f})"))
    print(f"run directory: {result.run_dir}")


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from .config import TeacherConfig, load_config
    from .jobs import run_train_teacher

    config = load_config(args.config, args.overrides, cls=TeacherConfig)
    result = _in_every_process(config.train.device,
                               lambda: run_train_teacher(config, resume=args.resume,
                                                                 overwrite=args.overwrite))
    if result is None:
        return
    print(f"best epoch {result.best_epoch}: val accuracy {result.best_val_accuracy:.4f}, "
          f"test accuracy {result.test_accuracy:.4f}")
    print(f"teacher weights: {result.run_dir}/model_best.safetensors")


def _cmd_fit_subspace(args: argparse.Namespace) -> None:
    from .config import load_config
    from .jobs import run_fit_subspaces

    config = load_config(args.config, args.overrides)
    fitted = _in_every_process(config.train.device, lambda: run_fit_subspaces(config))
    if fitted is None:
        return
    bases, path = fitted
    print(f"{'teacher layer':<24}{'d':>6}{'k':>6}{'energy':>12}{'top eigenvalue':>16}")
    for layer, basis in bases.items():
        print(f"{layer:<24}{basis.dim:>6}{basis.k:>6}{basis.energy:>12.4g}"
              f"{float(basis.eigenvalues[0]):>16.4g}")
    print(f"bases written to {path}")


def config_kind(raw: dict) -> str:
    """Which command a config is for, from its top-level keys: ``explain`` (students,
    attributions or a bench to read), ``bench`` (a grid, agreement or out_dir), ``teacher``
    (a single model) or ``distill``."""
    if raw.keys() & {"students", "attributions", "bench", "images"}:
        return "explain"
    if raw.keys() & {"grid", "agreement", "out_dir"}:
        return "bench"
    return "teacher" if "model" in raw else "distill"


def _cmd_check(args: argparse.Namespace) -> None:
    from .config import DistillConfig, TeacherConfig, apply_overrides, load_config, read_yaml

    kind = config_kind(apply_overrides(read_yaml(args.config), list(args.overrides)))
    if kind == "bench":
        from .bench import BenchConfig
        from .bench.check import check_bench

        report = check_bench(load_config(args.config, args.overrides, cls=BenchConfig))
    elif kind == "explain":
        from .explain.run import ExplainConfig, check_explain

        report = check_explain(load_config(args.config, args.overrides, cls=ExplainConfig))
    elif kind == "teacher":
        from .jobs import check_teacher_config

        report = check_teacher_config(load_config(args.config, args.overrides, cls=TeacherConfig))
    else:
        from .jobs import check_config

        report = check_config(load_config(args.config, args.overrides, cls=DistillConfig))
    print(report)
    print(f"{kind} config OK")


def _cmd_bench(args: argparse.Namespace) -> None:
    from .bench import BenchConfig, run_bench
    from .bench.runner import describe_rows
    from .config import load_config

    config = load_config(args.config, args.overrides, cls=BenchConfig)
    rows = run_bench(config, report_only=args.report_only)
    print((Path(config.out_dir) / "summary.md").read_text())
    print(f"{describe_rows(rows)}; results in {config.out_dir}/results.csv and summary.md")


def _cmd_explain(args: argparse.Namespace) -> None:
    from .config import load_config
    from .explain.run import ExplainConfig, run_explain

    config = load_config(args.config, args.overrides, cls=ExplainConfig)
    run_explain(config)
    print((Path(config.out_dir) / "summary.md").read_text())
    print(f"heatmaps, per_image.csv and summary.md written to {config.out_dir}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo
    from .methods import list_methods, method_class

    methods = list_methods() if args.methods == "all" else args.methods.split(",")
    for name in methods:
        method_class(name)  # an unknown name fails before any training
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    run_demo(dataset=args.dataset, data_root=args.data_root, out_dir=args.out,
             epochs_scale=args.epochs_scale, methods=methods, seeds=seeds, rho=args.rho,
             download=args.download, device=args.device)


def _cmd_toy(args: argparse.Namespace) -> None:
    from .experiments.xor_toy import run_xor_toy

    run_xor_toy(task=args.task, seed=args.seed, out_dir=args.out)


def _cmd_layers(args: argparse.Namespace) -> None:
    import torch
    import yaml

    from .models import create_model, format_layer_table, layer_shapes
    from .models.inspect import default_input_size
    from .models.stages import stage_outputs
    from .plugins import import_plugins

    import_plugins(args.imports)
    kwargs = {}
    for item in args.model_args:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            kwargs[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: {value!r} is not a YAML value") from None
    size = _input_size(args.input_size)
    model = create_model(args.model, num_classes=args.num_classes,
                         in_channels=size[0] if size else 3, **kwargs)
    size = size or default_input_size(model)
    example = torch.zeros(1, *size)
    print(format_layer_table(layer_shapes(model, example)))
    try:
        stages = stage_outputs(model, example)
    except SubdistillError:
        return
    print(f"stage outputs (what pairs: auto pairs): {', '.join(stages)}")


def _input_size(text: str | None) -> tuple[int, ...] | None:
    """``C,H,W`` as three positive integers (None: not given)."""
    if text is None:
        return None
    try:
        size = tuple(int(s) for s in text.split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1 or max(size) > 8192:
        raise ConfigError(f"--input-size expects C,H,W as three positive integers (e.g. "
                          f"3,224,224), got {text!r}")
    return size


def _cmd_methods(args: argparse.Namespace) -> None:
    from .methods import describe_methods
    from .methods.base import allowed_values

    for name, cls in describe_methods().items():
        print(f"{name:<14}{cls.description}")
        for key, default in cls.hparams.items():
            shown = json.dumps(default)  # as written in YAML: true, "text", 1.0
            print(f"{'':<16}{key + ':':<18}{shown:<16}{allowed_values(cls, key)}")


def _cmd_analyze(args: argparse.Namespace) -> None:
    from .analysis.run import analyze, format_analysis, write_analysis
    from .config import load_config

    config = load_config(args.config, args.overrides)
    layers = [s for s in args.layers.split(",") if s] if args.layers else None
    analysis = analyze(config, layers, args.bases.split(","), args.images)
    out = Path(args.out or Path(config.run_dir) / "analysis")
    write_analysis(analysis, out)
    print(format_analysis(analysis), end="")
    print(f"analysis.csv, analysis.md and one plot per layer written to {out}")


def _cmd_export(args: argparse.Namespace) -> None:
    from .deploy.export import export

    record = export(args.run_dir, args.format, args.out, args.parity_images, args.quantize)
    parity = record["parity"]
    print(f"exported {record['format']} ({record['exporter']}); parity on {parity['images']} "
          f"images: top class agrees on {parity['argmax_agreement']:.2%}, logits differ by up "
          f"to {parity['max_abs_logit_difference']:.3g}")
    if "int8" in record:
        q = record["int8"]
        accuracy = (f"; test accuracy {q['fp32_accuracy']:.4f} -> {q['int8_accuracy']:.4f}"
                    if "int8_accuracy" in q else "")
        print(f"int8 model {q['file']}: {q['int8_bytes']:,} bytes (fp32 {q['fp32_bytes']:,})"
              f"{accuracy}")


def _cmd_profile(args: argparse.Namespace) -> None:
    from .deploy.profile import format_profile, profile

    print(format_profile(profile(args.run_dir, args.repeats, args.batch, args.threads,
                                 onnx=not args.no_onnx)), end="")


def _cmd_predict(args: argparse.Namespace) -> None:
    import json

    from .deploy.predict import image_files, open_predictor, predict

    rows, errors = predict(open_predictor(args.model), image_files(args.images), args.top)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print("\t".join([row["file"], *(f"{c}\t{p:.4f}" for c, p in row["top"])]))
    if errors:
        raise ConfigError(f"{len(errors)} of {len(errors) + len(rows)} files could not be read: "
                          + "; ".join(errors))


def _cmd_compare(args: argparse.Namespace) -> None:
    from .compare import compare_runs, format_csv, format_markdown

    rows = compare_runs(args.run_dirs)
    print((format_csv if args.csv else format_markdown)(rows), end="")


def _listing(kind: str) -> list[str]:
    """The lines ``subdistill list KIND`` prints."""
    if kind == "models":
        from .models import list_models

        return list_models()
    if kind == "datasets":
        from .data import list_datasets

        return list_datasets()
    if kind == "subtasks":
        from .data import list_presets

        return [f"{family:<16}{', '.join(names)}" for family, names in list_presets().items()]
    if kind == "attributions":
        from .explain.attribution import list_attributions

        return list_attributions()
    if kind == "augmentations":
        from .data import list_augments

        return list_augments()
    if kind == "bases":
        from .subspace.basis import BASIS_METHODS

        return [f"{name:<12}{rule.description}" for name, rule in BASIS_METHODS.items()]
    if kind == "loggers":
        from .training.loggers import LOGGERS

        return LOGGERS.names()
    from .training.optim import OPTIMIZERS, SCHEDULES

    return (OPTIMIZERS if kind == "optimizers" else SCHEDULES).names()


LISTS = ("methods", "models", "datasets", "subtasks", "attributions", "augmentations", "bases",
         "optimizers", "schedules", "loggers")


def _cmd_list(args: argparse.Namespace) -> None:
    from .plugins import import_plugins

    import_plugins(args.imports)
    if args.kind == "methods":
        _cmd_methods(args)
        return
    print("\n".join(_listing(args.kind)))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="subdistill", description="Distil small domain experts from large classifiers "
        "by matching the teacher's task-relevant subspaces.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"subdistill {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("distill", help="distil a student as a config describes", epilog=EPILOG)
    _add_config(p, resumable=True, trains=True)
    p.set_defaults(func=_cmd_distill, distributed=True)

    p = commands.add_parser("train-teacher", epilog=EPILOG,
                            help="train a teacher on every class of a dataset (cross-entropy)")
    _add_config(p, resumable=True, trains=True)
    p.set_defaults(func=_cmd_train_teacher, distributed=True)

    p = commands.add_parser("fit-subspace", epilog=EPILOG,
                            help="estimate and save the relevant subspaces of the teacher layers")
    _add_config(p, trains=True)
    p.set_defaults(func=_cmd_fit_subspace, distributed=True)

    p = commands.add_parser("bench", epilog=EPILOG, help="run a grid of methods x subtasks x "
                            "rho x seeds (resumable: finished runs are skipped)")
    _add_config(p, trains=True)
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: rebuild the report from the grid's ledger")
    p.set_defaults(func=_cmd_bench)

    p = commands.add_parser("explain", epilog=EPILOG, help="compare teacher and student "
                            "explanations (LRP, IG, Shapley): heatmaps, similarity, flipping")
    _add_config(p)
    p.set_defaults(func=_cmd_explain)

    p = commands.add_parser("check", epilog=EPILOG, help="validate a config of any kind "
                            "(distill, teacher, bench, explain) without training: data, "
                            "subtask, models, weights, layer pairs, options")
    _add_config(p)
    p.set_defaults(func=_cmd_check)

    _add_tool_commands(commands)
    return parser


def _add_tool_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that need no config: demo, toy, layers, methods, list."""
    p = commands.add_parser("demo", help="offline end-to-end demo: train a teacher, distil a "
                            "subtask with SubDistill and KD, print a table")
    p.add_argument("--dataset", default="digits",
                   choices=["digits", "cifar10", "fashion-mnist", "cifar10-jpeg"],
                   help="digits ships with scikit-learn; the others read --data-root")
    p.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py/, "
                   "FashionMNIST/ (or fashion-mnist/) or cifar10-jpeg/ (default ./data)")
    p.add_argument("--download", action="store_true",
                   help="fetch cifar10 or fashion-mnist through torchvision into --data-root")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or mps (default cpu)")
    p.add_argument("--epochs-scale", type=float, default=1.0,
                   help="multiply every epoch count (e.g. 0.2 for a quick look)")
    p.add_argument("--methods", default="subdistill,kd,student-only",
                   help="comma-separated methods, or 'all' (default subdistill,kd,student-only)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--rho", type=float, default=None,
                   help="fraction of the subtask's training images used (default 0.8)")
    p.set_defaults(func=_cmd_demo)

    p = commands.add_parser("toy", help="the paper's 3D-XOR experiment: AUROC per basis and k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", type=int, default=None, choices=[0, 1, 2], help="one task (default all)")
    p.add_argument("--out", default=None, help="folder for xor_toy.csv and xor_toy.png")
    p.set_defaults(func=_cmd_toy)

    p = commands.add_parser("layers", help="list a model's layer paths with output shapes")
    p.add_argument("model", help="registry name, e.g. cifar_resnet, resnet18, vit_b_16, "
                   "timm:NAME, or your own factory as module:callable (my_pkg.models:make_net)")
    p.add_argument("--input-size", default=None, help="C,H,W of the probe input (default: the "
                   "size the model declares, e.g. 3,224,224 for a ViT, else 3,32,32)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--set", dest="model_args", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor argument, e.g. --set depth=20 (repeatable; value "
                   "parsed as YAML)")
    _add_imports(p)
    p.set_defaults(func=_cmd_layers)

    p = commands.add_parser("analyze", epilog=EPILOG, help="how many dimensions of each teacher "
                            "layer the subtask needs: accuracy with rank-k reconstructions")
    _add_config(p)
    p.add_argument("--layers", default=None, help="comma-separated teacher layers (default: the "
                   "config's pairs)")
    p.add_argument("--bases", default="subdistill,pca,gradpca,random",
                   help="basis methods compared (default subdistill,pca,gradpca,random)")
    p.add_argument("--images", type=int, default=1000,
                   help="validation images the curves are measured on (default 1000)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/analysis)")
    p.set_defaults(func=_cmd_analyze)

    p = commands.add_parser("export", help="export a run's student (ONNX, TorchScript, "
                            "ExportedProgram) with its metadata and a parity check")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript", "exported-program"])
    p.add_argument("--out", default=None, help="output file (default RUN_DIR/expert.<ext>)")
    p.add_argument("--quantize", default=None, choices=["int8"],
                   help="also write a statically quantised int8 ONNX model")
    p.add_argument("--parity-images", type=int, default=256,
                   help="test images the export is checked on (default 256)")
    p.set_defaults(func=_cmd_export)

    p = commands.add_parser("profile", help="teacher vs student: parameters, MACs, size, "
                            "latency, throughput, accuracy (PyTorch and ONNX fp32/int8)")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--repeats", type=int, default=50, help="timed runs at batch 1 (default 50)")
    p.add_argument("--batch", type=int, default=64, help="batch of the throughput (default 64)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-onnx", action="store_true", help="PyTorch only")
    p.set_defaults(func=_cmd_profile)

    p = commands.add_parser("predict", help="classify image files with a run's student or an "
                            "exported model")
    p.add_argument("model", help="a run directory, or an exported .onnx/.pt/.pt2 file")
    p.add_argument("images", nargs="+", help="image files or folders of them")
    p.add_argument("--top", type=int, default=3, help="classes per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(func=_cmd_predict)

    p = commands.add_parser("compare", help="finished runs side by side: scores, time and the "
                            "settings that differ (a Markdown table)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    p.add_argument("--csv", action="store_true", help="print CSV instead of Markdown")
    p.set_defaults(func=_cmd_compare)

    p = commands.add_parser("methods", help="list the distillation methods and their options")
    p.set_defaults(func=_cmd_methods)

    p = commands.add_parser("list", help="list what can be named in a config: "
                            + ", ".join(LISTS) + " (installed plugins included)")
    p.add_argument("kind", choices=LISTS)
    _add_imports(p)
    p.set_defaults(func=_cmd_list)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``subdistill`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .distributed import launch_environment
    from .training.provenance import invoked_as

    launch = launch_environment()  # under torchrun: log (and print) on rank 0 only
    worker = launch is not None and launch.rank > 0
    logging.basicConfig(level=logging.ERROR if worker else logging.INFO,
                        format="%(levelname)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir", "onnxruntime"):  # their optimisers' progress
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        if launch is not None and launch.world_size > 1 and not getattr(args, "distributed", False):
            raise ConfigError(f"{args.command} does not run as several processes; start it "
                              "without torchrun (distill, train-teacher and fit-subspace do)")
        with invoked_as(sys.argv[1:] if argv is None else argv):  # recorded in config.yaml
            args.func(args)
    except SubdistillError as err:
        if args.verbose:
            raise
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        where = f" (rank {launch.rank})" if worker and launch is not None else ""
        print(f"error{where}: {'; '.join(lines)}", file=sys.stderr)  # always one line
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
