"""Attribute every token of a continuation to the prompt and the tokens before it — the IG
paper's translation experiment, for today's language models — on one shared path.

Teacher forcing: the sequence is ``s = prompt + targets``; target ``t`` (at position ``P + t``)
is scored from the logits at position ``P + t - 1``, which a causal LM computes from positions
``<= P + t - 1`` only. On one straight path in embedding space over the whole sequence,

    IG_t(s)_l = (e_l - e'_l) . int_0^1 dS_t/de_l (e' + a (e - e')) da,

the gradient of ``S_t`` at positions ``l >= P + t`` is exactly zero, so IG of target ``t`` on the
shared path equals IG on its prefix alone. One forward per path point serves all ``T`` targets;
each target adds one backward on that forward's graph (``engine.per_output_grads``). Per-token
attribution (Captum's ``LLMGradientAttribution``) runs a forward per target and path point.

``method="deeplift"`` (Rescale, exact summation-to-delta through attention, softmax and
normalisation, see ``deeplift.composite``) needs no path: one forward on the baseline sequence,
one on the sequence, then one backward per target, all from the token embeddings.

Encoder-decoders (T5, BART, Marian): the same over the encoder tokens and the decoder tokens
``<= t`` (the start token and the targets before ``t``), both embeddings on one path.

Prompts of a batch may be padded (left or right): each prompt is moved to the right end (left
padding), position ids count real tokens only (``cumsum(mask) - 1``, when the model takes
``position_ids``), and the attention mask travels with every path point, so each prompt's
result is independent of the others. ``SequenceResult.input_ids`` is the sequence as explained.
"""

from .attribution import METHODS, SequenceAttribution, mlp_neurons
from .result import SequenceResult, word_groups
from .scores import SCORES, ScoreInputs, register_score
from .tokens import MAX_NEW_TOKENS, left_align

__all__ = ["MAX_NEW_TOKENS", "METHODS", "SCORES", "ScoreInputs", "SequenceAttribution",
           "SequenceResult", "left_align", "mlp_neurons", "register_score", "word_groups"]
