"""``kdspec list [architectures|datasets|methods]``: what a spec can name, and where each came
from.

Architectures: kdspec's own and every installed plugin's (name, source, parameters, forward
cost, smallest input, feature points), then the torchvision classification models
(``torchvision:NAME``) and, with timm installed, the count of timm models (``timm:NAME``;
``--all`` lists them). Datasets: name, source, channels, size, classes, attributes and how to
get the data. Methods: the distillation methods and control arms of ``distill { method = ...
}``, their keys with the defaults, and the paper each comes from.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from kdspec.catalogue.model_names import MSG_NO_TIMM, MSG_NO_TRANSFORMERS
from kdspec.catalogue.registry import registry, timm_models, torchvision_models
from kdspec.distillation_methods import CONTROL_MODELS, METHOD_MODELS, STANDARDIZABLE
from kdspec.dsl.methods import SECTION_KEYS

#: Hugging Face models a text study is most likely to name (any sequence classifier works).
HF_EXAMPLES = ("bert-base-uncased", "distilbert-base-uncased", "roberta-base",
               "distilroberta-base", "google/bert_uncased_L-2_H-128_A-2")

KINDS = ("architectures", "datasets", "methods")
#: timm names shown without ``--all``.
TIMM_SHOWN = 20
#: Width of the wrapped model lists.
WIDTH = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", choices=KINDS, default=None,
                        help="architectures, datasets or methods (default: all three)")
    parser.add_argument("--all", action="store_true", help="list every timm model too")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=WIDTH, initial_indent="  ", subsequent_indent="  ",
                         break_on_hyphens=False)


def architectures_text(*, everything: bool) -> str:
    rows: list[tuple[str, ...]] = [("name", "source", "params (M)", "forward MFLOP", "at px",
                                    "min px", "feature points")]
    for name, entry in sorted(registry().architectures.items()):
        f = entry.facts
        rows.append((name, entry.source, f"{f.params_millions:g}", f"{f.forward_mflops:g}",
                     str(f.ref_size), str(f.min_size), ",".join(f.feature_points) or "-"))
    lines = ["architectures:", *_table(rows)]
    tv = torchvision_models()
    lines += [f"torchvision: {len(tv)} classification models, as torchvision:NAME:",
              _wrapped(", ".join(tv))]
    timm = timm_models()
    if timm is None:
        lines.append(f"timm: not installed; {MSG_NO_TIMM}")
    else:
        shown = timm if everything else timm[:TIMM_SHOWN]
        more = "" if everything or len(timm) <= TIMM_SHOWN else ", ... (--all lists them)"
        lines += [f"timm: {len(timm)} models, as timm:NAME:", _wrapped(", ".join(shown) + more)]
    lines.append("huggingface (text datasets): any transformers sequence classifier, as hf:NAME "
                 "(a hub name, from the Hugging Face cache or downloaded where the machine can) "
                 "or hf:./folder; for example:")
    lines.append(_wrapped(", ".join(f"hf:{name}" for name in HF_EXAMPLES)))
    if not _has_transformers():
        lines.append(f"  transformers: not installed; {MSG_NO_TRANSFORMERS}")
    return "\n".join(lines) + "\n"


def _has_transformers() -> bool:
    from importlib.util import find_spec

    return find_spec("transformers") is not None


def datasets_text() -> str:
    rows: list[tuple[str, ...]] = [("name", "source", "channels", "px", "classes", "attributes",
                                    "how to get it")]
    for name, entry in sorted(registry().datasets.items()):
        f = entry.facts
        classes = str(len(f.class_names)) if f.class_names else "by target"
        attributes = ", ".join(f.attributes[:4]) + (", ..." if len(f.attributes) > 4 else "")
        if name == "imagefolder":  # both are read from the user's files when a spec compiles
            classes, attributes = "its folders", "its CSV"
        channels, size = str(f.channels), f"{f.image_size}{' (resizable)' if f.resizable else ''}"
        if f.modality == "text":
            channels, size = "text", "tokens"
        rows.append((name, entry.source, channels, size, classes,
                     attributes or "-", f.how_to_get))
    return "\n".join(["datasets:", *_table(rows)]) + "\n"


#: Keys a method takes that are not plain defaults: what the compiler fills in.
RESOLVED_DEFAULTS = {"hint": "second feature point", "guided": "as hint, or second point"}


def _method_keys(name: str) -> str:
    """``key = default, ...`` of a method's section, and the distill keys it uses."""
    model = {**METHOD_MODELS, **CONTROL_MODELS}[name]
    parts = []
    for key in SECTION_KEYS.get(name, {}):
        default = model.model_fields[key].default
        shown = RESOLVED_DEFAULTS.get(key) or (f"{default:g}" if isinstance(default, float)
                                               else str(default))
        parts.append(f"{key} = {shown}")
    uses = []
    if name in ("kd", "self", "random_teacher"):
        uses.append("distill's loss and t_squared")
    if name in STANDARDIZABLE:
        uses.append("logit_standardization")
    return ", ".join(parts) + ("; " if parts and uses else "") + (
        "uses " + ", ".join(uses) if uses else "")


def methods_text() -> str:
    rows: list[tuple[str, ...]] = [("name", "kind", "keys (defaults)", "source")]
    for kind, models in (("method", METHOD_MODELS), ("control", CONTROL_MODELS)):
        for name, model in models.items():
            source = model.citation + (f"; defaults: {model.defaults_from}"
                                       if model.defaults_from else "")
            rows.append((name, kind, _method_keys(name) or "-", source))
    head = ("methods (`distill { method = NAME }`, kd by default; a method's keys go in a "
            "section of its name, e.g. `dkd { beta = 6 }`):")
    return "\n".join([head, *_table(rows)]) + "\n"


def run(args: argparse.Namespace) -> int:
    parts = []
    if args.kind in (None, "architectures"):
        parts.append(architectures_text(everything=args.all))
    if args.kind in (None, "datasets"):
        parts.append(datasets_text())
    if args.kind in (None, "methods"):
        parts.append(methods_text())
    sys.stdout.write("\n".join(parts))
    return 0
