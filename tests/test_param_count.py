"""Parameter counts of published Transformers, from their hyper-parameters.

The exact totals are the counts Hugging Face reports for the released checkpoints
(``model.num_parameters()``: ``bert-base-uncased``, ``gpt2``, ``gpt2-medium``, ``gpt2-large``,
``gpt2-xl``, ``huggyllama/llama-7b``); the rounded ones are what the papers print. The Flax NNX
tests build modules with the same layer shapes and count their real parameter arrays, so the
formulas are checked against arrays, not only against numbers copied from elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from lmcourse import param_count as pc
from lmcourse.models.bert import Bert
from lmcourse.models.common import count_params

EXACT_TOTALS = [
    (pc.BERT_BASE, 109_482_240),
    (pc.BERT_LARGE, 335_141_888),
    (pc.GPT2_SMALL, 124_439_808),
    (pc.GPT2_MEDIUM, 354_823_168),
    (pc.GPT2_LARGE, 774_030_080),
    (pc.GPT2_XL, 1_557_611_200),
    (pc.LLAMA_7B, 6_738_415_616),
]


@pytest.mark.parametrize(("config", "expected"), EXACT_TOTALS, ids=lambda x: getattr(x, "name", ""))
def test_exact_totals_of_released_checkpoints(config, expected):
    assert config.param_count() == expected
    assert sum(config.breakdown().values()) == expected
    assert tuple(config.breakdown()) == pc.COMPONENTS


def test_function_api_matches_configs():
    assert pc.bert_param_count(30_522, 768, 12, 3_072, 512, 2) == 109_482_240
    assert pc.bert_param_count(30_522, 768, 12, 3_072, 512, 2, pooler=False) == 109_482_240 - (768 * 768 + 768)
    assert pc.gpt_param_count(50_257, 768, 12, 1_024) == 124_439_808
    assert pc.gpt_param_count(50_257, 1_600, 48, 1_024, d_ff=6_400) == 1_557_611_200
    assert pc.llama_param_count(32_000, 4_096, 32, 11_008) == 6_738_415_616


def test_bert_base_breakdown_by_hand():
    v, h, n_layers, i, p, t = 30_522, 768, 12, 3_072, 512, 2
    assert pc.BERT_BASE.breakdown() == {
        "embeddings": (v + p + t) * h,                      # 23,835,648
        "attention": n_layers * 4 * (h * h + h),            # 28,348,416
        "mlp": n_layers * (2 * h * i + i + h),              # 56,669,184
        "norm": 2 * h + n_layers * 4 * h,                   # 38,400
        "head": h * h + h,                                  # pooler 590,592
    }


def test_gpt3_175b_against_the_paper():
    n = pc.GPT3_175B.param_count()
    assert n == 174_604_259_328
    # Table D.1 prints "174,600" million: agreement to all printed digits (+-50M).
    assert abs(n - 174_600_000_000) <= 50_000_000
    # Table 2.1 prints "175.0B"; the formula agrees with the name 175B to the nearest billion
    # (0.23% below the printed 175.0B, a gap no documented convention closes: untying the
    # output matrix would give 175.22B).
    assert round(n / 1e9) == 175
    assert abs(n - 175.0e9) / 175.0e9 < 0.003
    untied = pc.gpt_param_count(50_257, 12_288, 96, 2_048, tied_embeddings=False)
    assert round(untied / 1e7) == 17_522


def test_published_totals_to_their_printed_precision():
    assert round(pc.BERT_BASE.param_count(), -7) == pc.BERT_BASE.published_params      # 110M
    assert round(pc.BERT_LARGE.param_count(), -7) == pc.BERT_LARGE.published_params    # 340M
    assert round(pc.LLAMA_7B.param_count(), -8) == pc.LLAMA_7B.published_params        # 6.7B
    # GPT-2: the paper's 117M/345M/762M/1542M were retracted by OpenAI; the corrected names
    # (openai/gpt-2 README and download folder names) are 124M, 355M, 774M, 1558M.
    corrected = {pc.GPT2_SMALL: 124, pc.GPT2_MEDIUM: 355, pc.GPT2_LARGE: 774, pc.GPT2_XL: 1_558}
    for config, millions in corrected.items():
        assert round(config.param_count() / 1e6) == millions
        assert round(config.param_count() / 1e6) != config.published_params // 1_000_000


def test_twelve_l_d_squared_rule():
    for config in (pc.GPT2_SMALL, pc.GPT2_XL, pc.GPT3_175B):
        parts = config.breakdown()
        layers, d = config.layers, config.d_model
        per_layer_blocks = parts["attention"] + parts["mlp"] + parts["norm"] - 2 * d
        assert per_layer_blocks == 12 * layers * d**2 + 13 * layers * d


def test_tied_and_untied_head_differ_by_the_embedding_matrix():
    tied = pc.gpt_param_count(100, 16, 2, 8)
    untied = pc.gpt_param_count(100, 16, 2, 8, tied_embeddings=False)
    assert untied - tied == 100 * 16
    assert pc.llama_param_count(100, 16, 2, 40) - pc.llama_param_count(100, 16, 2, 40, True) == 100 * 16


@given(
    vocab=st.integers(1, 100_000), d=st.integers(1, 4_096), layers=st.integers(1, 200),
    ctx=st.integers(1, 8_192), ff=st.integers(1, 20_000),
)
def test_each_gpt_layer_adds_the_same_count(vocab, d, layers, ctx, ff):
    one_more = pc.gpt_param_count(vocab, d, layers + 1, ctx, ff) - pc.gpt_param_count(vocab, d, layers, ctx, ff)
    assert one_more == 4 * (d * d + d) + (2 * d * ff + ff + d) + 4 * d


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vocab_size": -1}, {"hidden": 0}, {"layers": -12}, {"intermediate": 0},
        {"max_position": -512}, {"type_vocab": -1},
    ],
)
def test_bert_rejects_non_positive_sizes(kwargs):
    args = {"vocab_size": 30_522, "hidden": 768, "layers": 12, "intermediate": 3_072,
            "max_position": 512, "type_vocab": 2} | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        pc.bert_param_count(**args)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="d_model"):
        pc.gpt_param_count(50_257, -768, 12, 1_024)
    with pytest.raises(ValueError, match="n_ctx"):
        pc.gpt_param_count(50_257, 768, 12, 0)
    with pytest.raises(ValueError, match="d_ff"):
        pc.gpt_param_count(50_257, 768, 12, 1_024, d_ff=-1)
    with pytest.raises(ValueError, match="layers"):
        pc.llama_param_count(32_000, 4_096, 0, 11_008)
    with pytest.raises(ValueError, match="heads"):
        pc.GPTConfig("bad heads", vocab_size=10, d_model=10, layers=1, heads=3, n_ctx=4)
    with pytest.raises(ValueError, match="hidden"):
        pc.BertConfig(vocab_size=10, hidden_size=-8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=4, max_position_embeddings=4, type_vocab_size=2)
    with pytest.raises(ValueError, match="d_model must be an integer"):
        pc.gpt_param_count(50_257, 768.0, 12, 1_024)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layers must be an integer >= 1, got the bool"):
        pc.gpt_param_count(50_257, 768, True, 1_024)  # type: ignore[arg-type]
    # NumPy integers are integers.
    assert pc.gpt_param_count(np.int64(50_257), np.int32(768), 12, 1_024) == 124_439_808


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1, 2.5, "768", None, True])
@pytest.mark.parametrize(
    "call",
    [
        lambda v: pc.gpt_param_count(50_257, v, 12, 1_024),
        lambda v: pc.bert_param_count(30_522, v, 12, 3_072, 512, 2),
        lambda v: pc.llama_param_count(32_000, v, 32, 11_008),
        lambda v: pc.gpt_param_breakdown(50_257, 768, 12, v),
        lambda v: pc.llama_param_breakdown(32_000, 4_096, 32, v),
    ],
    ids=["gpt d_model", "bert hidden", "llama d_model", "gpt n_ctx", "llama d_ff"],
)
def test_every_size_rejects_nan_non_positive_and_non_integers_with_value_error(call, bad):
    with pytest.raises(ValueError, match="must be an integer"):
        call(bad)


def test_flags_must_be_bools():
    with pytest.raises(ValueError, match="tied_embeddings must be True or False"):
        pc.gpt_param_count(100, 16, 2, 8, tied_embeddings="no")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tied_embeddings must be True or False"):
        pc.llama_param_count(100, 16, 2, 40, tied_embeddings=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pooler must be True or False"):
        pc.bert_param_count(10, 4, 1, 8, 4, 2, pooler=None)  # type: ignore[arg-type]
    assert pc.gpt_param_count(100, 16, 2, 8, tied_embeddings=np.bool_(True)) == pc.gpt_param_count(100, 16, 2, 8)


def test_the_edges_of_the_valid_ranges_give_exact_counts():
    # The smallest allowed value of every size (1; 0 segment types for BERT) is accepted and
    # gives the count of the formula written out by hand.
    assert pc.gpt_param_count(1, 1, 1, 1, d_ff=1) == (1 + 1) * 1 + 4 * (1 + 1) + (2 + 1 + 1) + 4 + 2
    assert pc.bert_param_count(1, 1, 1, 1, 1, 0, pooler=False) == (1 + 1 + 0) + 4 * 2 + 4 + 2 + 4
    assert pc.llama_param_count(1, 1, 1, 1) == 1 + 4 + 3 + 2 + 1 + 1
    with pytest.raises(ValueError, match="type_vocab must be an integer >= 0"):
        pc.bert_param_count(1, 1, 1, 1, 1, -1)


# ---------------------------------------------------------------------------------------------
# The same counts on real Flax NNX parameter arrays
# ---------------------------------------------------------------------------------------------
class BertSkeleton(nnx.Module):
    """BERT's parameter layout (Hugging Face ``BertModel``) without a forward pass."""

    def __init__(self, v: int, h: int, n_layers: int, i: int, p: int, t: int, *, rngs: nnx.Rngs):
        self.token = nnx.Embed(v, h, rngs=rngs)
        self.position = nnx.Embed(p, h, rngs=rngs)
        self.segment = nnx.Embed(t, h, rngs=rngs)
        self.embed_norm = nnx.LayerNorm(h, rngs=rngs)
        self.layers = nnx.Sequential(*[BertLayer(h, i, rngs=rngs) for _ in range(n_layers)])
        self.pooler = nnx.Linear(h, h, rngs=rngs)


class BertLayer(nnx.Module):
    def __init__(self, h: int, i: int, *, rngs: nnx.Rngs):
        self.query = nnx.Linear(h, h, rngs=rngs)
        self.key = nnx.Linear(h, h, rngs=rngs)
        self.value = nnx.Linear(h, h, rngs=rngs)
        self.attn_out = nnx.Linear(h, h, rngs=rngs)
        self.attn_norm = nnx.LayerNorm(h, rngs=rngs)
        self.up = nnx.Linear(h, i, rngs=rngs)
        self.down = nnx.Linear(i, h, rngs=rngs)
        self.mlp_norm = nnx.LayerNorm(h, rngs=rngs)


class GPTSkeleton(nnx.Module):
    """GPT-2's parameter layout (Hugging Face ``GPT2Model``) without a forward pass."""

    def __init__(self, v: int, d: int, n_layers: int, ctx: int, *, tied: bool = True, rngs: nnx.Rngs):
        self.token = nnx.Embed(v, d, rngs=rngs)
        self.position = nnx.Embed(ctx, d, rngs=rngs)
        self.blocks = nnx.Sequential(*[GPTBlock(d, rngs=rngs) for _ in range(n_layers)])
        self.final_norm = nnx.LayerNorm(d, rngs=rngs)
        if not tied:
            self.lm_head = nnx.Linear(d, v, use_bias=False, rngs=rngs)


class GPTBlock(nnx.Module):
    def __init__(self, d: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(d, rngs=rngs)
        self.qkv = nnx.Linear(d, 3 * d, rngs=rngs)
        self.proj = nnx.Linear(d, d, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, rngs=rngs)
        self.fc = nnx.Linear(d, 4 * d, rngs=rngs)
        self.fc_proj = nnx.Linear(4 * d, d, rngs=rngs)


class LlamaSkeleton(nnx.Module):
    """LLaMA's parameter layout (Hugging Face ``LlamaForCausalLM``) without a forward pass."""

    def __init__(self, v: int, d: int, n_layers: int, f: int, *, rngs: nnx.Rngs):
        self.token = nnx.Embed(v, d, rngs=rngs)
        self.blocks = nnx.Sequential(*[LlamaBlock(d, f, rngs=rngs) for _ in range(n_layers)])
        self.final_norm = nnx.RMSNorm(d, rngs=rngs)
        self.lm_head = nnx.Linear(d, v, use_bias=False, rngs=rngs)


class LlamaBlock(nnx.Module):
    def __init__(self, d: int, f: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.RMSNorm(d, rngs=rngs)
        self.q, self.k, self.v, self.o = (nnx.Linear(d, d, use_bias=False, rngs=rngs) for _ in range(4))
        self.norm2 = nnx.RMSNorm(d, rngs=rngs)
        self.gate = nnx.Linear(d, f, use_bias=False, rngs=rngs)
        self.up = nnx.Linear(d, f, use_bias=False, rngs=rngs)
        self.down = nnx.Linear(f, d, use_bias=False, rngs=rngs)


def test_tiny_bert_module_matches_formula():
    model = BertSkeleton(v=97, h=16, n_layers=3, i=40, p=12, t=2, rngs=nnx.Rngs(0))
    # by hand: (97+12+2)*16 + 3*4*(16*16+16) + 3*(2*16*40+40+16) + (2*16+3*4*16) + (16*16+16)
    assert 1_776 + 3_264 + 4_008 + 224 + 272 == 9_544
    assert count_params(model) == pc.bert_param_count(97, 16, 3, 40, 12, 2) == 9_544


@pytest.mark.parametrize("tied", [True, False])
def test_tiny_gpt_module_matches_formula(tied):
    model = GPTSkeleton(101, 24, 2, 16, tied=tied, rngs=nnx.Rngs(0))
    assert count_params(model) == pc.gpt_param_count(101, 24, 2, 16, tied_embeddings=tied)


def test_tiny_llama_module_matches_formula():
    model = LlamaSkeleton(64, 32, 2, 88, rngs=nnx.Rngs(0))
    assert count_params(model) == pc.llama_param_count(64, 32, 2, 88)


def test_full_size_gpt2_small_module_shapes_match_hf_count():
    # nnx.eval_shape builds the module with abstract arrays: shapes without 0.5 GB of memory.
    abstract = nnx.eval_shape(lambda: GPTSkeleton(50_257, 768, 12, 1_024, rngs=nnx.Rngs(0)))
    assert count_params(abstract) == 124_439_808


def test_formula_equals_our_flax_bert_minilm():
    # The one BERT formula (pc.BertConfig.param_count) against the real parameter arrays of the
    # course's Flax Bert, built at MiniLM's size with abstract arrays (no memory, no weights).
    config = pc.BertConfig()
    abstract = nnx.eval_shape(lambda: Bert(config, rngs=nnx.Rngs(0)))
    assert count_params(abstract) == config.param_count() == 22_713_216
    parts = config.breakdown()
    assert count_params(abstract.pooler) == parts["head"]
    # Wrong formula rejected: without the pooler the count is short by exactly its d² + d.
    assert pc.BertConfig(pooler=False).param_count() == 22_713_216 - (384 * 384 + 384)


def test_bert_base_config_builds_a_flax_bert_of_its_count():
    abstract = nnx.eval_shape(lambda: Bert(pc.BERT_BASE, rngs=nnx.Rngs(0)))
    assert count_params(abstract) == pc.BERT_BASE.param_count() == 109_482_240
