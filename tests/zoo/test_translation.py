"""cn2en as a batched encoder-decoder: its own translations, padding that changes nothing, and
SequenceAttribution's gaps recomputed from plain forwards."""

import io
import pickle

import pytest
import torch

pytest.importorskip("cn2en")

from pathattr.methods.sequence import SequenceAttribution  # noqa: E402
from pathattr.zoo import translation  # noqa: E402
from pathattr.zoo.translation import cn2en  # noqa: E402

SENTENCES = ["我爱你。", "他是我的朋友。", "我不知道。", "今天天气很好。", "你叫什么名字？"]


def test_greedy_translation_is_cn2ens_own():
    from cn2en.model import Model

    reference = Model()
    m = cn2en()
    for s in SENTENCES:
        assert m.translate(s) == reference.translate(s)
    assert m.translate("我爱你。") == "i love you ."


def test_a_padded_batch_equals_each_sentence_alone():
    m = cn2en()
    srcs = [m.source_ids(s) for s in SENTENCES[:3]]
    width = max(map(len, srcs))
    ids = torch.tensor([s + [m.source_pad] * (width - len(s)) for s in srcs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in srcs])
    dec = torch.tensor([[0, 5, 9]] * 3)
    with torch.no_grad():
        together = m(ids, mask, dec)
        for i, s in enumerate(srcs):
            alone = m(torch.tensor([s]), None, dec[i:i + 1])
            torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-5)


def _score_change(m, src, tgt, base):
    """S_t(x) - S_t(x') per target from two plain forwards (log-probabilities)."""
    dec = torch.tensor([[0, *tgt[:-1]]])
    dec_base = base[:, len(src):]
    with torch.no_grad():
        hi = m(torch.tensor([src]), None, dec).log_softmax(-1)[0, range(len(tgt)), tgt]
        lo = m(base[:, :len(src)], None, dec_base).log_softmax(-1)[0, range(len(tgt)), tgt]
    return hi - lo


@pytest.mark.parametrize("method,bound", [("ig", 1e-4), ("deeplift", 1e-5)])
def test_each_targets_gap_is_recomputed_from_plain_forwards(method, bound):
    m = cn2en()
    src = m.source_ids("他是我的朋友。")
    tgt = m.translate_ids(src)
    base = m.baselines(len(src), len(tgt))
    r = SequenceAttribution(m, method).attribute(torch.tensor([src]), target_ids=torch.tensor(
        [tgt]), baselines=base, score="logprob", **({"steps": 64} if method == "ig" else {}))
    change = _score_change(m, src, tgt, base)
    torch.testing.assert_close(r.info["output_delta"][0], change, rtol=1e-5, atol=1e-5)
    gap = r.scores[0].sum(-1) - change
    torch.testing.assert_close(r.delta[0], gap, rtol=1e-4, atol=1e-5)
    assert (gap.abs() <= bound * change.abs()).all()
    # target t sees the source and the decoder positions up to its own input, nothing after
    for t in range(len(tgt)):
        assert (r.scores[0, t, len(src) + t + 1:] == 0).all()


def test_deeplift_sums_to_delta_in_float64():
    m = translation.Cn2En().double().eval()
    src = m.source_ids("我爱你。")
    tgt = m.translate_ids(src)
    base = m.baselines(len(src), len(tgt))
    r = SequenceAttribution(m, "deeplift").attribute(
        torch.tensor([src]), target_ids=torch.tensor([tgt]), baselines=base, score="logprob")
    change = _score_change(m, src, tgt, base)
    assert ((r.scores[0].sum(-1) - change).abs() <= 1e-10 * change.abs()).all()


def test_vocabularies_are_per_side_and_the_pickles_are_data_only():
    m = cn2en()
    src = torch.tensor([m.source_ids("我爱你。")])
    sa = SequenceAttribution(m, "deeplift")
    # a target id beyond the source vocabulary is fine on the English side
    big = m.target_pad - 1
    assert big >= m.source_pad
    sa.attribute(src, target_ids=torch.tensor([[big]]), baselines=m.baselines(src.shape[1], 1))
    with pytest.raises(ValueError, match="target_ids holds id"):
        sa.attribute(src, target_ids=torch.tensor([[m.target_pad + 1]]))

    class Evil:
        def __reduce__(self):
            return (eval, ("1",))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.eval"):
        translation._LangUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
