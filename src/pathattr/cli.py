"""The ``pathattr`` command: parse arguments, run a command from ``pathattr.commands``, and turn
errors into one line and an exit code (0 success, 2 bad arguments, 1 failure).

Heavy imports (torch, models, methods) happen only once a command runs, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .commands import positive_int, step_count
from .errors import EscapedStream, printable

DEFAULT_METHODS = "ig,idg,deeplift"

EXAMPLES = {
    "explain": """examples:
  pathattr explain cat.jpg dog.png --method ig,idg,deeplift --out results
  pathattr explain photo:chelsea --method all --steps 64 --curves --layer _blocks.15
  pathattr explain scan.png --model mypkg.nets:resnet --weights resnet.pt --target 3
  pathattr explain --text "A man is playing a guitar." --pair "Someone plays music."
  pathattr explain --text "Beautiful is" --generate 17 --method deeplift
  pathattr explain --text "Errors should" --target-text " never pass silently."
  pathattr explain --smiles "O=C(O)c1ccccc1OC(C)=O" --model admet-ai:AMES --method ig,deeplift
  pathattr explain --demo          # bundled photo, EfficientNet-Lite0, every image method""",
    "evaluate": """examples:
  pathattr evaluate photo:chelsea photo:coffee --method ig,idg,saliency
  pathattr evaluate cat.jpg --method all --curve-steps 20 --metrics insertion,deletion
  pathattr evaluate --data photos/ --method ig,idg --out results/photos   # store, resumable
  pathattr evaluate --results results/photos --metrics road_morf,road_lerf""",
    "neurons": """examples:
  pathattr neurons photo:chelsea --layer _blocks.15 --top 20
  pathattr neurons digit.png --model digits-cnn --layer features.relu2""",
    "reproduce": """examples:
  pathattr reproduce ig            # about 1.5 minutes on a quiet 2-core machine
  pathattr reproduce neurons --out results/neurons
  pathattr reproduce idg --quick
  pathattr reproduce idg --data digits   # 300 held-out digits: claims with power
  pathattr reproduce molecules     # atom attributions vs Crippen's contributions""",
    "models": """example:
  pathattr models""",
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage line is a ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    """The parser for every subcommand; each sets ``run`` to the function that executes it."""
    common = Parser(add_help=False)
    common.add_argument("--model", default="efficientnet-lite0",
                        help="built-in name (see `pathattr models`), module:factory, or a "
                             "TorchScript file (default: %(default)s)")
    common.add_argument("--weights", metavar="FILE",
                        help="state_dict for --model module:factory (loaded tensors-only)")
    common.add_argument("--target", metavar="CLASS",
                        help="class index or name to explain (default: the predicted class)")
    # no default here: set_defaults on one subparser would change this shared action for all
    common.add_argument("--steps", type=step_count,
                        help="path points per integral, or auto (the default, in every "
                             "command): methods with an error-controlled rule (ig) refine "
                             "until their gap is under 1 %%, the others take their own "
                             "default (50; Guided IG 200, Blur IG 100)")
    common.add_argument("--out", type=Path, default=Path("pathattr-out"),
                        help="output directory (default: %(default)s); explain writes one "
                             "subdirectory per input (neurons and evaluate a subdirectory of "
                             "it each, --text and --generate one per text), run an index "
                             "and shards; nothing another command wrote is replaced")
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or tables: only the final lines (where "
                             "the reports are) and errors")
    methods = Parser(add_help=False)
    methods.add_argument("--method", metavar="M[,M...]",
                         help=f"comma-separated methods or 'all' (default: {DEFAULT_METHODS};"
                              f" see `pathattr models`; with --generate: ig, idg, left-ig, "
                              f"idgi, input-x-gradient, deeplift, default ig). left_ig and "
                              f"left-ig are the same name")
    curves = Parser(add_help=False)
    curves.add_argument("--curve-steps", type=positive_int, default=40, metavar="N",
                        help="points of each insertion/deletion curve (default: %(default)s)")
    curves.add_argument("--metrics", type=_metrics, metavar="M[,M...]",
                        help="of insertion, deletion, road_morf, road_lerf (default: insertion,"
                             "deletion; evaluate: all four)")
    curves.add_argument("--no-controls", dest="controls", action="store_false",
                        help="leave out each method's inverse ranking and the random ranking")
    prep = Parser(add_help=False)
    prep.add_argument("--size", type=_crop_size, metavar="PX",
                      help="for a --model that is not built in: crop images to PX x PX "
                           "(default: 224)")
    prep.add_argument("--mean", type=_triple, metavar="R,G,B",
                      help="for a --model that is not built in: subtract from pixels in [0, 1] "
                           "(default: 0.498,0.498,0.498; torchvision nets: 0.485,0.456,0.406)")
    prep.add_argument("--std", type=_triple, metavar="R,G,B",
                      help="then divide by this (default: 0.502,0.502,0.502; torchvision: "
                           "0.229,0.224,0.225)")
    layer = Parser(add_help=False)
    layer.add_argument("--top", type=positive_int, default=20,
                       help="how many channels to list (default: %(default)s)")

    parser = Parser(prog="pathattr", description="Path-integrated attribution for PyTorch "
                    "models: explain images and sentences, rank neurons, score methods.")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND",
                                parser_class=Parser)

    def add(name: str, help: str, parents: list[Parser]) -> Parser:
        return sub.add_parser(name, help=help, description=help, parents=parents,
                              epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("explain", "Attribute a model's prediction to the pixels of images (heatmaps, "
            "attributions.npz, summary.json, report.html per image), or a sentence's "
            "similarity to its tokens.", [common, methods, curves, layer, prep])
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files, or photo:NAME for a bundled photo (chelsea, coffee, ...)")
    p.add_argument("--curves", action="store_true", help="add insertion/deletion curves")
    p.add_argument("--layer", metavar="NAME", help="add the top channels of this layer")
    p.add_argument("--text", metavar="SENTENCE", help="explain a sentence with MiniLM instead")
    p.add_argument("--pair", metavar="SENTENCE",
                   help="with --text: explain what makes the two sentences similar (without "
                        "it, the sentence is compared with its own embedding: which tokens "
                        "carry its meaning)")
    p.add_argument("--generate", type=positive_int, metavar="N",
                   help="with --text: continue it for N tokens with a language model (--model "
                        "tiny-lm, the default here) and explain every generated token")
    p.add_argument("--score", metavar="NAME",
                   help="with --generate / --target-text: what is attributed per token: "
                        "logit, logprob (default), probability, entropy, or a registered "
                        "score (pathattr models lists them)")
    p.add_argument("--target-text", metavar="TEXT",
                   help="with --text: explain this given continuation instead of generating")
    p.add_argument("--smiles", metavar="SMILES",
                   help="explain a molecule with a graph net instead (--model molecule-logs, "
                        "the default here, molecule-crippen or admet-ai:TASK)")
    p.add_argument("--demo", action="store_true", help="photo:chelsea with every image method "
                   "(unless --method), curves and the top channels of the model's default "
                   "layer (EfficientNet-Lite0: _blocks.15)")
    p.set_defaults(run=_explain)

    p = add("evaluate", "Score attribution methods by insertion and deletion (Petsiuk et al. "
            "2018) and ROAD (Rong et al. 2022) curves beside the inverse and random rankings, "
            "over images, a data set or a run's store: mean AUCs with bootstrap intervals and "
            "paired comparisons (evaluation.html, evaluation.json).", [common, methods, curves,
                                                                       prep])
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or photo:NAME")
    p.add_argument("--data", metavar="DIR|NPZ",
                   help="attribute every item of a data set into the store --out first (as "
                        "`pathattr run`, resumable), then evaluate it")
    p.add_argument("--results", type=Path, metavar="RESULTS",
                   help="evaluate the attributions of a `pathattr run` store")
    p.set_defaults(run=_evaluate)

    p = add("neurons", "Rank a layer's channels by Neuron IG and DeepLIFT and show what "
            "resetting each does to the prediction.", [common, layer, prep])
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or photo:NAME")
    p.add_argument("--layer", metavar="NAME", required=True, help="dotted layer name")
    p.set_defaults(run=_neurons)

    from .commands.run import register

    register(sub, common)  # run, summarize

    p = add("reproduce", "Reproduce a paper's claims on real pretrained models; writes a "
            "markdown table, plots and a JSON of every number to --out (default "
            "results/NAME).", [])
    p.add_argument("name", choices=("ig", "neurons", "idg", "molecules"),
                   help="ig: completeness vs steps and the axioms; neurons: Neuron IG vs "
                        "Dhamdhere vs DeepLIFT; idg: insertion/deletion of IDG and rivals; "
                        "molecules: IG's chemistry application against Crippen's per-atom "
                        "ground truth (the graph extra)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, seconds)")
    p.add_argument("--out", type=Path, help="output directory (default: results/NAME)")
    p.add_argument("--data", default="photos", choices=("photos", "digits", "mnist1d"),
                   help="idg only: the bundled photos (default; low power), or the first "
                        "--inputs held-out digits / MNIST-1D signals")
    p.add_argument("--inputs", type=_paired_count, metavar="N",
                   help="idg on held-out data: how many inputs, at least 2 (default 300)")
    p.set_defaults(run=_reproduce)

    p = add("models", "List the built-in models and the available methods.", [])
    p.set_defaults(run=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pathattr`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2)
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "steps", 0) is None:
        args.steps = "auto"
    from .commands import UsageError
    from .errors import one_line
    from .files import LinkInOutput

    try:
        # everything a command prints to stdout is escaped (stderr carries the progress bars'
        # own control characters, so its messages are escaped where they are printed)
        with contextlib.redirect_stdout(EscapedStream(sys.stdout)), _output_root(args):
            return args.run(args)
    except UsageError as e:
        print(f"pathattr: error: {printable(e.flag_message())}", file=sys.stderr)
        return 2
    except LinkInOutput as e:
        print(f"pathattr: error: --out: {printable(str(e.strerror))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pathattr: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        print(f"pathattr: error: {printable(one_line(e))}", file=sys.stderr)
        return 1


def _output_root(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The folder this command writes (``--out``, or summarize's RESULTS), held so that no
    link below it is written through (``files.output_root``)."""
    from .files import output_root

    folder = getattr(args, "out", None) or (getattr(args, "results", None)
                                            if args.run.__name__ == "summarize_command" else None)
    if folder is None:
        return contextlib.nullcontext()
    _check_writable(Path(folder), "--out" if getattr(args, "out", None) else "RESULTS")
    return output_root(folder)


def _check_writable(folder: Path, flag: str) -> None:
    """Refuse, before any work, a folder this command could not write (read-only, or under
    one): what it would compute would be lost."""
    from .commands import UsageError

    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: {str(folder)!r} cannot be written "
                         f"({str(existing)!r} is read-only)")


def _explain(args: argparse.Namespace) -> int:
    from .commands import UsageError

    if args.generate is not None or args.target_text is not None:
        if args.images or args.demo:
            raise UsageError("IMAGE: not used with --generate / --target-text")
        return _generation(args)
    if args.score is not None:
        raise UsageError("--score: only with --generate / --target-text")
    given = sum([bool(args.images), args.text is not None, args.demo, args.smiles is not None])
    if given != 1:
        raise UsageError("IMAGE: give images, or --text, or --smiles, or --demo (exactly one)")
    if args.smiles is not None:
        return _molecule(args)
    if args.pair is not None and args.text is None:
        raise UsageError("--pair: only with --text")
    if args.text is not None:
        for flag in ("method", "layer", "target", "weights", "curves"):
            if getattr(args, flag) not in (None, False):
                raise UsageError(f"--{flag}: not used with --text")
        from .commands.text import explain_text
        from .validate import check_out_dir

        check_out_dir(args.out)

        tables, report = explain_text(args.text, args.pair, args.steps, args.out)
        _say(args, *tables, f"report: {report}")
        return 0
    if args.demo:
        args.images, args.curves = ["photo:chelsea"], True
        args.method = args.method or "all"
    return _images(args, args.method or DEFAULT_METHODS, curves=args.curves,
                   layer=args.layer, demo=args.demo)


def _molecule(args: argparse.Namespace) -> int:
    from .commands import UsageError

    for flag in ("layer", "target", "weights", "curves", "pair"):
        if getattr(args, flag) not in (None, False):
            raise UsageError(f"--{flag}: not used with --smiles")
    from .commands.molecule import (
        DEFAULT_METHODS,
        DEFAULT_MODEL,
        explain_molecule,
        molecule_methods,
    )
    from .validate import check_out_dir

    methods = molecule_methods(args.method or DEFAULT_METHODS)
    check_out_dir(args.out)
    model = DEFAULT_MODEL if args.model == "efficientnet-lite0" else args.model  # the default
    tables, report = explain_molecule(args.smiles, model, methods, args.steps, args.out)
    _say(args, *tables, f"report: {report}")
    return 0


def _generation(args: argparse.Namespace) -> int:
    from .commands import UsageError

    if args.text is None:
        raise UsageError("--generate, --target-text: only with --text (the prompt)")
    if args.generate is not None and args.target_text is not None:
        raise UsageError("--generate, --target-text: give one (generate, or force a text)")
    for flag in ("pair", "layer", "target", "weights"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag}: not used with --generate / --target-text")
    from .commands.generate import explain_generation, generation_methods
    from .validate import check_out_dir

    methods = generation_methods(args.method or "ig")
    check_out_dir(args.out)
    model = "tiny-lm" if args.model == "efficientnet-lite0" else args.model  # the default
    text, reports = explain_generation(args.text, model, args.generate, args.target_text,
                                       methods, args.steps, args.out, args.quiet,
                                       args.score or "logprob")
    _say(args, text, *(f"report: {r}" for r in reports))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .commands import UsageError

    args.metrics = args.metrics or ("insertion", "deletion", "road_morf", "road_lerf")
    given = sum([bool(args.images), args.data is not None, args.results is not None])
    if given != 1:
        raise UsageError("IMAGE: give images, or --data, or --results (exactly one)")
    if args.images:
        return _images(args, args.method or DEFAULT_METHODS, curves=True, layer=None,
                       command="evaluate")
    from .commands.evaluate import evaluate_store

    args.method = args.method or DEFAULT_METHODS
    return evaluate_store(args)


def _neurons(args: argparse.Namespace) -> int:
    return _images(args, None, curves=False, layer=args.layer, command="neurons")


def _images(args: argparse.Namespace, method_spec: str | None, curves: bool, layer: str | None,
            demo: bool = False, command: str = "explain") -> int:
    from .commands import image
    from .files import claim
    from .named import Preprocessing, load_image, load_model
    from .registry import parse_methods
    from .validate import check_out_dir

    chosen = parse_methods(method_spec) if method_spec else []
    images = [load_image(s) for s in args.images]  # fail on a bad path before loading a model
    given = {k: getattr(args, k) for k in ("size", "mean", "std") if getattr(args, k)}
    bundle = load_model(args.model, args.weights, Preprocessing(**given) if given else None)
    check_out_dir(args.out)
    if demo:
        layer = bundle.layer
    sources = tuple(s if s.startswith("photo:") else str(Path(s).resolve())
                    for s in args.images)
    opts = image.Options(chosen, args.out, args.steps, args.target, curves,
                         vars(args).get("curve_steps"), layer, vars(args).get("top", 20),
                         args.quiet,
                         vars(args).get("metrics") or ("insertion", "deletion"),
                         vars(args).get("controls", True), command, sources)
    several = curves and len(images) > 1
    if several:  # explain --curves and evaluate never replace each other's evaluation.*
        claim(args.out, "evaluation", command, write=False)
    outcomes, evaluation = image.run(bundle, images, opts)
    for o in outcomes:
        tables = (t.text() for t in (o.methods, o.curves, o.neurons) if t)
        _say(args, f"== {o.label}: {o.explained}", *tables, f"report: {o.report}")
        for failure in o.failures:
            print(f"pathattr: warning: {printable(failure)}", file=sys.stderr)
    if evaluation is not None and len(evaluation.inputs) > 1:
        from .evaluation import write_evaluation

        claim(args.out, "evaluation", command)
        page = write_evaluation(evaluation, args.out, f"pathattr: {len(evaluation.inputs)} "
                                f"images", [("model", bundle.name), ("steps", str(args.steps))])
        _say(args, f"== {len(evaluation.inputs)} images", *(t.text()
             for t in evaluation.tables()), f"report: {page}")
    if demo and not args.quiet:
        print(f"open {outcomes[0].report.resolve().as_uri()}")
    return 1 if any(o.failures for o in outcomes) else 0


#: The largest --size crop: a 4096 x 4096 RGB image is 200 MB as float32 per path point.
MAX_CROP = 4096


def _crop_size(text: str) -> int:
    """An argparse type for ``--size``: pixels, 1 .. ``MAX_CROP``."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_CROP:
        raise argparse.ArgumentTypeError(f"expected pixels between 1 and {MAX_CROP}, "
                                         f"got {text!r}")
    return int(text)


def _paired_count(text: str) -> int:
    """An argparse type for ``--inputs``: an integer >= 2 (a paired test needs two)."""
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 (a paired test needs two), "
                                         f"got {text!r}")
    return int(text)


def _reproduce(args: argparse.Namespace) -> int:
    from .commands import UsageError
    from .experiments.__main__ import main as reproduce

    if args.name != "idg" and (args.data != "photos" or args.inputs is not None):
        raise UsageError(f"--data, --inputs: idg only, not {args.name}")

    return reproduce([args.name, *(["--quick"] if args.quick else []),
                      *(["--out", str(args.out)] if args.out else []),
                      *(["--data", args.data] if args.data != "photos" else []),
                      *(["--inputs", str(args.inputs)] if args.inputs is not None else [])])


def _models(args: argparse.Namespace) -> int:
    from .named import MODELS
    from .registry import available

    width = max(map(len, MODELS))
    print("models:")
    for name, what in MODELS.items():
        print(f"  {name:<{width}}  {what}")
    print(f"methods: {', '.join(available())}")
    from .methods.sequence.scores import SCORES

    print(f"scores (language models): {', '.join(SCORES)}")
    return 0


def _metrics(text: str) -> tuple[str, ...]:
    from .evaluation import METRICS

    names = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(METRICS)}, got {text!r}")
    return names


def _triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {text!r}")
    return values


def _say(args: argparse.Namespace, *blocks: str) -> None:
    """Print ``blocks``; with ``--quiet`` only the final lines, those saying where a report
    is (``report: PATH``)."""
    shown = [b for b in blocks if not args.quiet or b.startswith("report: ")]
    if shown:
        print("\n".join(shown))
