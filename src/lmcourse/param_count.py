"""Count the parameters of a Transformer from its hyper-parameters.

Used in chapters: 01, 05, 07, 11; imported by ``lmcourse.flops``, ``lmcourse.models.bert``,
``lmcourse.models.gpt``, ``lmcourse.multitask``.

A parameter (参数) is one trainable number: one entry of a weight matrix, a bias vector, an
embedding table or a normalisation scale. A Transformer's count follows from a handful of
hyper-parameters, layer by layer; this module writes the count out per component so that
chapter 01 can check it against published totals and chapter 11 can turn it into memory,
FLOPs and money.

Three families are covered, each with the exact layout of its reference implementation:

* **BERT** (encoder; Devlin et al. 2019, §3 "Model Architecture"): learned token, position and
  segment ("token type") embeddings, post-LayerNorm blocks with biases everywhere, a pooler.
  Reference layout: Hugging Face ``BertModel``.
* **GPT-2 / GPT-3** (decoder; Radford et al. 2019, §2.3 and Table 2; Brown et al. 2020, §2.1 and
  Table 2.1): learned token and position embeddings, pre-LayerNorm blocks with biases, a final
  LayerNorm, output matrix tied to the token embedding. Reference layout: Hugging Face
  ``GPT2Model`` (whose count equals ``GPT2LMHeadModel``'s, the head being tied).
* **LLaMA** (decoder; Touvron et al. 2023, §2.2 and Table 2): no biases, RMSNorm (scale only),
  SwiGLU MLP with three matrices, rotary positions (no position table), untied output matrix.
  Reference layout: Hugging Face ``LlamaForCausalLM``.

Attention heads do not change the count (the projections are ``d_model x d_model`` however the
columns are split into heads); the configs keep ``heads`` for completeness and check that it
divides the width.

Every count is an exact Python ``int`` (no floating point), so billions are exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lmcourse.validation import check_bool, check_int, check_positive_float

#: The components every breakdown reports, in this order. ``head`` is BERT's pooler or an
#: untied output (LM head) matrix; it is 0 when the output matrix is tied to the embedding.
COMPONENTS: tuple[str, ...] = ("embeddings", "attention", "mlp", "norm", "head")


def _check_heads(width_name: str, width: int, heads: int) -> None:
    """Raise ``ValueError`` unless ``heads`` (>= 1) divides ``width``."""
    check_int("heads", heads, 1)
    if width % heads:
        raise ValueError(f"heads={heads} must divide {width_name}={width}")


def _as_breakdown(embeddings: int, attention: int, mlp: int, norm: int, head: int) -> dict[str, int]:
    values = (embeddings, attention, mlp, norm, head)
    return dict(zip(COMPONENTS, values, strict=True))


# --------------------------------------------------------------------------------------------
# BERT
# --------------------------------------------------------------------------------------------
def bert_param_breakdown(
    vocab_size: int,
    hidden: int,
    layers: int,
    intermediate: int,
    max_position: int,
    type_vocab: int,
    pooler: bool = True,
) -> dict[str, int]:
    """Parameters of a BERT encoder per component (Hugging Face ``BertModel`` layout).

    With vocabulary ``V``, width ``H``, ``L`` layers, MLP width ``I``, ``P`` positions and ``T``
    segment types:

    * ``embeddings = (V + P + T) * H``: token, position and segment tables;
    * ``attention = L * 4 * (H*H + H)``: query, key, value and output projections with biases;
    * ``mlp = L * (H*I + I + I*H + H)``: the two dense layers ``H -> I -> H`` with biases;
    * ``norm = 2*H + L * 2 * (2*H)``: LayerNorm scale and shift after the embeddings and twice
      per layer (after attention, after the MLP);
    * ``head = H*H + H`` with the pooler (dense layer on the ``[CLS]`` vector), else 0.

    Args:
        vocab_size: WordPiece vocabulary ``V`` (30,522 in the released BERT checkpoints).
        hidden: model width ``H``.
        layers: number of encoder layers ``L``.
        intermediate: MLP width ``I`` (``4 * H`` in BERT).
        max_position: number of learned positions ``P`` (512).
        type_vocab: number of segment types ``T`` (2; 0 for a model without segment embeddings).
        pooler: whether to count the pooler.

    Returns:
        ``{"embeddings", "attention", "mlp", "norm", "head"}`` -> exact counts (``int``).

    Raises:
        ValueError: if a size is not an integer or is below 1 (``type_vocab`` below 0), or
            ``pooler`` is not a bool.
    """
    v = check_int("vocab_size", vocab_size, 1)
    h = check_int("hidden", hidden, 1)
    n_layers = check_int("layers", layers, 1)
    i = check_int("intermediate", intermediate, 1)
    p = check_int("max_position", max_position, 1)
    t = check_int("type_vocab", type_vocab, 0)
    with_pooler = check_bool("pooler", pooler)
    return _as_breakdown(
        embeddings=(v + p + t) * h,
        attention=n_layers * 4 * (h * h + h),
        mlp=n_layers * (h * i + i + i * h + h),
        norm=2 * h + n_layers * 2 * (2 * h),
        head=(h * h + h) if with_pooler else 0,
    )


def bert_param_count(
    vocab_size: int,
    hidden: int,
    layers: int,
    intermediate: int,
    max_position: int,
    type_vocab: int,
    pooler: bool = True,
) -> int:
    """Total parameters of a BERT encoder: the sum of :func:`bert_param_breakdown`.

    Example: BERT-base (``30522, 768, 12, 3072, 512, 2``) has 109,482,240 parameters with the
    pooler, the count Hugging Face reports for ``bert-base-uncased``; Devlin et al. (2019, §3)
    round it to 110M.

    Raises:
        ValueError: as :func:`bert_param_breakdown`.
    """
    return sum(
        bert_param_breakdown(vocab_size, hidden, layers, intermediate, max_position, type_vocab, pooler).values()
    )


# --------------------------------------------------------------------------------------------
# GPT-2 / GPT-3
# --------------------------------------------------------------------------------------------
def gpt_param_breakdown(
    vocab_size: int,
    d_model: int,
    layers: int,
    n_ctx: int,
    d_ff: int | None = None,
    tied_embeddings: bool = True,
) -> dict[str, int]:
    """Parameters of a GPT-2-style decoder per component (Hugging Face ``GPT2Model`` layout).

    With vocabulary ``V``, width ``d``, ``L`` layers, context ``n_ctx`` and MLP width ``f``:

    * ``embeddings = (V + n_ctx) * d``: token and position tables;
    * ``attention = L * (d*3d + 3d + d*d + d) = L * 4 * (d*d + d)``: fused query/key/value
      projection and output projection, with biases;
    * ``mlp = L * (d*f + f + f*d + d)``: ``d -> f -> d`` with biases;
    * ``norm = L * 2 * (2*d) + 2*d``: two LayerNorms (scale and shift) per layer and a final one;
    * ``head = V * d`` when the output matrix is untied, 0 when it reuses the token embedding.

    With ``f = 4d`` the layers hold ``12*L*d**2 + 13*L*d`` parameters: the well-known
    ``N ~ 12 * L * d_model**2`` rule.

    Args:
        vocab_size: BPE vocabulary ``V`` (50,257 for GPT-2 and GPT-3).
        d_model: width ``d``.
        layers: number of decoder blocks ``L``.
        n_ctx: context length ``n_ctx`` = number of learned positions (1,024 GPT-2; 2,048 GPT-3).
        d_ff: MLP width ``f``; ``None`` means ``4 * d_model`` (GPT-2 and GPT-3).
        tied_embeddings: whether the output matrix is the token embedding (GPT-2: yes).

    Returns:
        ``{"embeddings", "attention", "mlp", "norm", "head"}`` -> exact counts (``int``).

    Raises:
        ValueError: if a size is not an integer or is below 1, or ``tied_embeddings`` is not a
            bool.
    """
    v = check_int("vocab_size", vocab_size, 1)
    d = check_int("d_model", d_model, 1)
    n_layers = check_int("layers", layers, 1)
    ctx = check_int("n_ctx", n_ctx, 1)
    tied = check_bool("tied_embeddings", tied_embeddings)
    f = 4 * d if d_ff is None else check_int("d_ff", d_ff, 1)
    return _as_breakdown(
        embeddings=(v + ctx) * d,
        attention=n_layers * 4 * (d * d + d),
        mlp=n_layers * (d * f + f + f * d + d),
        norm=n_layers * 2 * (2 * d) + 2 * d,
        head=0 if tied else v * d,
    )


def gpt_param_count(
    vocab_size: int,
    d_model: int,
    layers: int,
    n_ctx: int,
    d_ff: int | None = None,
    tied_embeddings: bool = True,
) -> int:
    """Total parameters of a GPT-2-style decoder: the sum of :func:`gpt_param_breakdown`.

    Example: GPT-2 small (``50257, 768, 12, 1024``) has 124,439,808 parameters, the count
    Hugging Face reports for ``gpt2``.

    Raises:
        ValueError: as :func:`gpt_param_breakdown`.
    """
    return sum(gpt_param_breakdown(vocab_size, d_model, layers, n_ctx, d_ff, tied_embeddings).values())


# --------------------------------------------------------------------------------------------
# LLaMA
# --------------------------------------------------------------------------------------------
def llama_param_breakdown(
    vocab_size: int,
    d_model: int,
    layers: int,
    d_ff: int,
    tied_embeddings: bool = False,
) -> dict[str, int]:
    """Parameters of a LLaMA-style decoder per component (Hugging Face ``LlamaForCausalLM``).

    No biases, RMSNorm with a scale only, rotary positions (nothing learned), SwiGLU MLP:

    * ``embeddings = V * d``: the token table (no position table);
    * ``attention = L * 4 * d*d``: query, key, value, output projections, no biases (one key/value
      head per query head, as in LLaMA-1 and LLaMA-2 7B);
    * ``mlp = L * 3 * d*f``: gate and up projections ``d -> f``, down projection ``f -> d``;
    * ``norm = L * 2 * d + d``: two RMSNorm scales per layer and a final one;
    * ``head = V * d`` when untied (LLaMA), 0 when tied.

    Args:
        vocab_size: SentencePiece vocabulary ``V`` (32,000 for LLaMA-1).
        d_model: width ``d``.
        layers: number of decoder blocks ``L``.
        d_ff: SwiGLU hidden width ``f`` (11,008 for LLaMA-7B).
        tied_embeddings: whether the output matrix is the token embedding.

    Returns:
        ``{"embeddings", "attention", "mlp", "norm", "head"}`` -> exact counts (``int``).

    Raises:
        ValueError: if a size is not an integer or is below 1, or ``tied_embeddings`` is not a
            bool.
    """
    v = check_int("vocab_size", vocab_size, 1)
    d = check_int("d_model", d_model, 1)
    n_layers = check_int("layers", layers, 1)
    f = check_int("d_ff", d_ff, 1)
    tied = check_bool("tied_embeddings", tied_embeddings)
    return _as_breakdown(
        embeddings=v * d,
        attention=n_layers * 4 * d * d,
        mlp=n_layers * 3 * d * f,
        norm=n_layers * 2 * d + d,
        head=0 if tied else v * d,
    )


def llama_param_count(
    vocab_size: int,
    d_model: int,
    layers: int,
    d_ff: int,
    tied_embeddings: bool = False,
) -> int:
    """Total parameters of a LLaMA-style decoder: the sum of :func:`llama_param_breakdown`.

    Example: LLaMA-7B (``32000, 4096, 32, 11008``) has 6,738,415,616 parameters, the count
    Hugging Face reports for ``LlamaForCausalLM``; Touvron et al. (2023, Table 2) call it 6.7B.

    Raises:
        ValueError: as :func:`llama_param_breakdown`.
    """
    return sum(llama_param_breakdown(vocab_size, d_model, layers, d_ff, tied_embeddings).values())


# --------------------------------------------------------------------------------------------
# Configurations of published models
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of a BERT encoder: the one BERT configuration of the course.

    The model (:class:`lmcourse.models.bert.Bert`) is built from it, chapter 01 counts published
    models with it and chapter 05 checks the count against the built model. Field names are
    Hugging Face's ``config.json`` keys (so :meth:`from_json` reads a checkpoint's file); the
    defaults are all-MiniLM-L6-v2's (22,713,216 parameters with the pooler).

    Attributes:
        vocab_size: WordPiece vocabulary ``V``.
        hidden_size: model width ``H``.
        num_hidden_layers: encoder layers ``L``.
        num_attention_heads: heads (do not change the count; must divide ``hidden_size``).
        intermediate_size: MLP width ``I``.
        max_position_embeddings: learned positions ``P``.
        type_vocab_size: segment types ``T``.
        layer_norm_eps: LayerNorm epsilon (finite, > 0; no parameters).
        pooler: whether the count includes the pooler (the model always builds one).
        name: model name (for tables).
        published_params: the total as printed in ``source`` (rounded by its authors).
        source: where the hyper-parameters and ``published_params`` come from.

    Raises:
        ValueError: on construction, if a size is not an integer >= 1, ``hidden_size`` is not
            divisible by ``num_attention_heads``, ``layer_norm_eps`` is not finite and > 0, or
            ``pooler`` is not a bool (the message names the field).
    """

    vocab_size: int = 30_522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1_536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pooler: bool = True
    name: str = field(default="", repr=False)
    published_params: int | None = field(default=None, repr=False)
    source: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            check_int(name, getattr(self, name), 1)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        check_positive_float("layer_norm_eps", self.layer_norm_eps)
        check_bool("pooler", self.pooler)

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read the fields above from a Hugging Face ``config.json`` (other keys are ignored).

        Raises:
            ValueError: the file asks for an activation other than ``gelu`` (erf) or position
                embeddings other than ``absolute``, which :class:`lmcourse.models.bert.Bert`
                does not implement, or a field is out of range.
        """
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act={raw['hidden_act']!r}, only 'gelu' (erf) is supported")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: position_embedding_type={raw['position_embedding_type']!r}, "
                             "only 'absolute' (a learned table of positions) is supported")
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps")
        return cls(**{k: raw[k] for k in keys if k in raw})

    def breakdown(self) -> dict[str, int]:
        """Parameters per component, see :func:`bert_param_breakdown` (the one BERT formula)."""
        return bert_param_breakdown(self.vocab_size, self.hidden_size, self.num_hidden_layers,
                                    self.intermediate_size, self.max_position_embeddings,
                                    self.type_vocab_size, self.pooler)

    def param_count(self) -> int:
        """Total parameters (exact ``int``)."""
        return sum(self.breakdown().values())


@dataclass(frozen=True)
class GPTConfig:
    """Hyper-parameters of a GPT-2-style decoder, with the size its authors published.

    Attributes:
        name: model name.
        vocab_size, d_model, layers, n_ctx, d_ff, tied_embeddings: see
            :func:`gpt_param_breakdown` (``d_ff=None`` means ``4 * d_model``).
        heads: attention heads (do not change the count; must divide ``d_model``).
        published_params: the total as printed in the source (rounded by its authors).
        source: where the hyper-parameters and ``published_params`` come from.
    """

    name: str
    vocab_size: int
    d_model: int
    layers: int
    heads: int
    n_ctx: int
    d_ff: int | None = None
    tied_embeddings: bool = True
    published_params: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.breakdown()
        _check_heads("d_model", self.d_model, self.heads)

    def breakdown(self) -> dict[str, int]:
        """Parameters per component, see :func:`gpt_param_breakdown`."""
        return gpt_param_breakdown(self.vocab_size, self.d_model, self.layers, self.n_ctx,
                                   self.d_ff, self.tied_embeddings)

    def param_count(self) -> int:
        """Total parameters (exact ``int``)."""
        return sum(self.breakdown().values())


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a LLaMA-style decoder, with the size its authors published.

    Attributes:
        name: model name.
        vocab_size, d_model, layers, d_ff, tied_embeddings: see :func:`llama_param_breakdown`.
        heads: attention heads (do not change the count; must divide ``d_model``).
        published_params: the total as printed in the source (rounded by its authors).
        source: where the hyper-parameters and ``published_params`` come from.
    """

    name: str
    vocab_size: int
    d_model: int
    layers: int
    heads: int
    d_ff: int
    tied_embeddings: bool = False
    published_params: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.breakdown()
        _check_heads("d_model", self.d_model, self.heads)

    def breakdown(self) -> dict[str, int]:
        """Parameters per component, see :func:`llama_param_breakdown`."""
        return llama_param_breakdown(self.vocab_size, self.d_model, self.layers, self.d_ff,
                                     self.tied_embeddings)

    def param_count(self) -> int:
        """Total parameters (exact ``int``)."""
        return sum(self.breakdown().values())


_BERT_SOURCE = ("Devlin et al. 2019, BERT (NAACL-HLT 2019, pp. 4171-4186; arXiv:1810.04805v2), §3 "
                "'Model Architecture' (L, H, A and 'Total Parameters=110M' / '340M'), §3 'Input/Output "
                "Representations' (WordPiece, '30,000 token vocabulary'; a learned sentence A/B "
                "embedding) and Appendix A.2 (sequences of at most 512 tokens); the vocabulary size "
                "30,522 is the line count of the released vocab.txt")
_GPT2_SOURCE = ("Radford et al. 2019, 'Language Models are Unsupervised Multitask Learners' (OpenAI "
                "report), §2.3 (vocabulary 50,257, context 1,024) and Table 2 (layers, d_model, "
                "117M/345M/762M/1542M). The openai/gpt-2 README retracts the paper's counts ('our "
                "original parameter counts were wrong due to an error (in our previous blog posts "
                "and paper)'); its download commands (DEVELOPERS.md) name the models 124M, 355M, "
                "774M and 1558M")
_GPT3_SOURCE = ("Brown et al. 2020, 'Language Models are Few-Shot Learners' (arXiv:2005.14165v4), "
                "Table 2.1 (n_params 175.0B, 96 layers, d_model 12,288, 96 heads, context 2,048), "
                "§2.1 ('the same model and architecture as GPT-2' apart from alternating sparse "
                "attention patterns, which add no parameters) and Table D.1 (params 174,600M)")

BERT_BASE = BertConfig(vocab_size=30_522, hidden_size=768, num_hidden_layers=12,
                       num_attention_heads=12, intermediate_size=3_072,
                       max_position_embeddings=512, type_vocab_size=2, name="BERT-base",
                       published_params=110_000_000, source=_BERT_SOURCE)
BERT_LARGE = BertConfig(vocab_size=30_522, hidden_size=1_024, num_hidden_layers=24,
                        num_attention_heads=16, intermediate_size=4_096,
                        max_position_embeddings=512, type_vocab_size=2, name="BERT-large",
                        published_params=340_000_000, source=_BERT_SOURCE)
GPT2_SMALL = GPTConfig("GPT-2 small", vocab_size=50_257, d_model=768, layers=12, heads=12,
                       n_ctx=1_024, published_params=117_000_000, source=_GPT2_SOURCE)
GPT2_MEDIUM = GPTConfig("GPT-2 medium", vocab_size=50_257, d_model=1_024, layers=24, heads=16,
                        n_ctx=1_024, published_params=345_000_000, source=_GPT2_SOURCE)
GPT2_LARGE = GPTConfig("GPT-2 large", vocab_size=50_257, d_model=1_280, layers=36, heads=20,
                       n_ctx=1_024, published_params=762_000_000, source=_GPT2_SOURCE)
GPT2_XL = GPTConfig("GPT-2 XL", vocab_size=50_257, d_model=1_600, layers=48, heads=25,
                    n_ctx=1_024, published_params=1_542_000_000, source=_GPT2_SOURCE)
GPT3_175B = GPTConfig("GPT-3 175B", vocab_size=50_257, d_model=12_288, layers=96, heads=96,
                      n_ctx=2_048, published_params=175_000_000_000, source=_GPT3_SOURCE)
LLAMA_7B = LlamaConfig("LLaMA-7B", vocab_size=32_000, d_model=4_096, layers=32, heads=32,
                       d_ff=11_008, published_params=6_700_000_000,
                       source="Touvron et al. 2023, LLaMA (arXiv:2302.13971v1), Table 2 (6.7B, "
                              "dimension 4096, 32 heads, 32 layers) and §2.2 (SwiGLU of width 2/3 * 4d; the reference code "
                              "rounds it up to a multiple of 256: 11,008). The paper (§2.1, "
                              "'Tokenizer') names the tokenizer (BPE, SentencePiece) but not its "
                              "size; 32,000 is the vocabulary of the released tokenizer")

#: The published models above, smallest first.
KNOWN_MODELS: tuple[BertConfig | GPTConfig | LlamaConfig, ...] = (
    BERT_BASE, GPT2_SMALL, BERT_LARGE, GPT2_MEDIUM, GPT2_LARGE, GPT2_XL, LLAMA_7B, GPT3_175B,
)
