"""The IG paper's translation application on a pretrained translator: attributions of each
English output word of ``cn2en`` to the Chinese source characters, with word alignments
written down for the sentences it translates correctly as the ground truth.

Per sentence the translation is cn2en's own greedy output; each target word is explained by
its log-probability under teacher forcing, from zero embeddings on both sides (the paper's
baseline). Alignment: for each gold pair (an English word and the characters it translates),
whether the source character with the largest attribution is one of them (top-1 accuracy,
bootstrap interval over pairs), against the chance of a uniformly random character.
Completeness: each target's relative gap by steps and with the error-controlled rule.
Needs ``cn2en`` (``tools/install_cn2en.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..metrics.statistics import bootstrap
from .common import fmt, progress, table, timer, write_results

#: (sentence, {English word: the Chinese characters it translates}) for sentences cn2en
#: translates correctly; only words of its output are scored.
GOLD = (
    ("我爱你。", {"i": "我", "love": "爱", "you": "你"}),
    ("你爱我。", {"you": "你", "love": "爱", "me": "我"}),
    ("他爱她。", {"he": "他", "loves": "爱", "her": "她"}),
    ("我喜欢狗。", {"i": "我", "like": "喜欢", "dogs": "狗"}),
    ("他是老师。", {"he": "他", "teacher": "老师"}),
    ("她是学生。", {"she's": "她", "student": "学生"}),
    ("我很累。", {"tired": "累"}),
    ("我想喝水。", {"drink": "喝", "water": "水"}),
    ("她很漂亮。", {"beautiful": "漂亮"}),
    ("我是医生。", {"doctor": "医生"}),
    ("他跑得很快。", {"he": "他", "runs": "跑", "fast": "快"}),
    ("我喜欢音乐。", {"i": "我", "like": "喜欢", "music": "音乐"}),
    ("我不喜欢咖啡。", {"like": "喜欢", "coffee": "咖啡"}),
    ("他在看书。", {"he": "他", "reading": "看", "book": "书"}),
    ("我昨天很忙。", {"busy": "忙", "yesterday": "昨天"}),
    ("他是我的朋友。", {"he's": "他", "my": "我", "friend": "朋友"}),
    ("我不知道。", {"know": "知道"}),
    ("我在家。", {"home": "家"}),
    ("我们走吧。", {"go": "走"}),
)
METHODS = ("ig", "ig-auto", "deeplift", "idg", "left-ig", "input-x-gradient")
FULL = {"sentences": len(GOLD), "methods": METHODS, "steps": (8, 16, 32, 64), "tol": 0.01,
        "pictures": 4}
QUICK = {"sentences": 3, "methods": ("ig", "deeplift"), "steps": (8, 32), "tol": 0.01,
         "pictures": 1}


def _attribute(model, method: str, src: list[int], tgt: list[int], **options):
    from ..methods.sequence import SequenceAttribution

    name, extra = ("ig", {"steps": "auto"}) if method == "ig-auto" else (method, {})
    sa = SequenceAttribution(model, name)
    return sa.attribute(torch.tensor([src]), target_ids=torch.tensor([tgt]),
                        baselines=model.baselines(len(src), len(tgt)), score="logprob",
                        **{**extra, **options})


def alignment(model, methods, sentences, tol: float) -> tuple[dict, list]:
    """Top-1 alignment hits per method over the gold pairs, and the chance rate per pair."""
    hits: dict[str, list[float]] = {m: [] for m in methods}
    chance, pairs, gaps = [], [], {m: [] for m in methods}
    for sentence, gold in sentences:
        src = model.source_ids(sentence)
        tgt = model.translate_ids(src)
        words, chars = model.target_tokens(tgt), model.source_tokens(src)[:-1]  # no EOS
        scored = [(t, w) for t, w in enumerate(words) if w in gold]
        for method in methods:
            kw = {"tol": tol} if method == "ig-auto" else {}
            r = _attribute(model, method, src, tgt, **kw)
            rel = (r.delta[0].abs() / r.info["output_delta"][0].abs().clamp_min(1e-12))
            gaps[method] += rel.tolist()
            for t, w in scored:
                row = r.scores[0, t, :len(chars)]
                hits[method].append(float(chars[int(row.argmax())] in gold[w]))
        for _, w in scored:
            chance.append(sum(c in gold[w] for c in chars) / len(chars))
            pairs.append((sentence, w))
    return {m: {"hits": hits[m], "gaps": gaps[m]} for m in methods}, [chance, pairs]


def completeness(model, sentences, steps, tol: float) -> dict:
    """IG's relative gap per target token by steps and with ``steps="auto"``."""
    rows: dict[str, dict] = {}
    evals = []
    for n in [*steps, "auto"]:
        rel = []
        for sentence, _ in sentences:
            src = model.source_ids(sentence)
            tgt = model.translate_ids(src)
            kw = {"steps": n} if n != "auto" else {"steps": "auto", "tol": tol}
            r = _attribute(model, "ig", src, tgt, **kw)
            rel += (r.delta[0].abs() / r.info["output_delta"][0].abs().clamp_min(1e-12)).tolist()
            if n == "auto":
                evals += r.info["gradient_evaluations"][0].tolist()
        rows[str(n)] = {"median": float(np.median(rel)), "max": float(np.max(rel)),
                        "within_tol": float(np.mean(np.array(rel) <= tol))}
    rows["auto"]["mean_evaluations"] = float(np.mean(evals))
    rows["auto"]["max_evaluations"] = int(np.max(evals))
    return rows


def pictures(model, sentences, k: int) -> dict:
    from ..viz.sequence import sequence_figure

    out = {}
    for i, (sentence, _) in enumerate(sentences[:k]):
        src = model.source_ids(sentence)
        tgt = model.translate_ids(src)
        r = _attribute(model, "ig", src, tgt, steps=64)
        dec = [0, *tgt[:-1]]
        tokens = model.source_tokens(src) + model.target_tokens(dec)
        tokens[len(src)] = "SOS"
        out[f"alignment_{i}"] = sequence_figure(tokens, model.target_tokens(tgt),
                                                r.scores[0].double().numpy(), shift=1)
    return out


def run(out_dir: Path, quick: bool = False) -> dict:
    """Run the translation reproduction and write ``out_dir``; returns the ``results.json``
    document. Cost: about a minute on two cores (tiny sizes: seconds)."""
    from ..zoo.translation import cn2en

    s = QUICK if quick else FULL
    sentences = GOLD[:s["sentences"]]
    with timer() as total:
        model = cn2en()
        translations = {sent: model.translate(sent) for sent, _ in sentences}
        res, (chance, pairs) = alignment(model, s["methods"], sentences, s["tol"])
        summary = {}
        for m, v in res.items():
            ci = bootstrap(v["hits"], seed=0)
            summary[m] = {"accuracy": ci.mean, "low": ci.low, "high": ci.high,
                          "median_gap": float(np.median(v["gaps"])),
                          "max_gap": float(np.max(v["gaps"]))}
            progress(f"{m}: top-1 alignment {ci}")
        sweep = completeness(model, sentences, s["steps"], s["tol"])
        figures = pictures(model, sentences, s["pictures"])
    numbers = {"translations": translations, "alignment": summary,
               "chance": float(np.mean(chance)), "pairs": len(pairs),
               "completeness": sweep}
    return write_results(out_dir, "translation", s, numbers, _report(s, numbers, total["s"]),
                         figures, total["s"])


def _report(s: dict, n: dict, seconds: float) -> str:
    rows = [[m, f"{fmt(v['accuracy'])} [{fmt(v['low'])}, {fmt(v['high'])}]",
             fmt(v["median_gap"]), fmt(v["max_gap"])] for m, v in n["alignment"].items()]
    sweep = [[k, fmt(v["median"]), fmt(v["max"]), f"{100 * v['within_tol']:.0f} %"]
             for k, v in n["completeness"].items()]
    auto = n["completeness"]["auto"]
    pics = ", ".join(f"`alignment_{i}.png`" for i in range(s["pictures"]))
    return "\n\n".join([
        "# Translation: IG on a pretrained Chinese-to-English translator",
        f"cn2en (GRU encoder-decoder, 4.6 M parameters); {len(n['translations'])} sentences, "
        f"its greedy translations explained word by word (log-probability, teacher forcing), "
        f"zero embeddings as the baseline on both sides. Total time {seconds:.0f} s.",
        table(["source", "cn2en"], [[k, v] for k, v in n["translations"].items()]),
        "## Alignment against written-down word alignments",
        f"Top-1: the source character with the largest attribution is one the English word "
        f"translates; {n['pairs']} pairs, 95 % bootstrap interval; chance (a uniformly random "
        f"character): {fmt(n['chance'])}. Gap: each target's |δ| / |S_t(x) - S_t(x')| "
        f"(median, max; IDG is not complete by design, left-IG's δ is against its cut).",
        table(["method", "top-1 alignment", "median gap", "max gap"], rows),
        "## Completeness of IG by steps",
        f"Each target token's relative gap (Gauss-Legendre); `auto`: tol {s['tol']}, "
        f"{fmt(auto['mean_evaluations'])} gradient evaluations per target on average, at most "
        f"{auto['max_evaluations']}.",
        table(["steps", "median gap", "max gap", f"within {s['tol']}"], sweep),
        f"## Pictures\n\n{pics}: IG (64 steps) of each target word (rows) to the source "
        f"characters, the decoder's start token and the words before it (columns).",
    ])
