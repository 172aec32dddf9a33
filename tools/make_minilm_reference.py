"""Write ``tests/data/minilm_reference.npz``: all-MiniLM-L6-v2 sentence embeddings of fixed
sentences computed by the reference implementation (sentence-transformers on PyTorch), from the
same SHA-256-checked local model folder that :func:`lmcourse.models.bert.load_minilm` uses.

``tests/test_bert.py`` compares our Flax NNX implementation against this file, so CI needs
neither PyTorch nor sentence-transformers. To regenerate (PyTorch CPU and sentence-transformers
installed in the venv)::

    .venv/bin/python tools/make_minilm_reference.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "minilm_reference.npz"

# Fixed sentences: paraphrase pairs, unrelated pairs, punctuation, numbers, accents, a long one,
# Chinese characters (split one per token by BERT's basic tokenizer) and an unknown-word case.
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome.",
    "The new movie is so great!",
    "The cat sits outside.",
    "The dog plays in the garden.",
    "I love pasta.",
    "Do you like pizza?",
    "How do I reset my password?",
    "I forgot my password and cannot log in.",
    "Stock markets fell sharply on Monday after the interest-rate decision.",
    "Café au lait costs €3.50 in Zürich, naïvely speaking.",
    "Attention is all you need: the Transformer relies entirely on self-attention, "
    "dispensing with recurrence and convolutions entirely, which makes it parallelisable "
    "and faster to train on modern accelerators than recurrent networks.",
    "大模型的参数",
    "qwertyuiopasdfgh zxcvbnm",
]


def main() -> None:
    from sentence_transformers import SentenceTransformer

    from lmcourse.data.pretrained import pretrained_dir

    folder = pretrained_dir()
    model = SentenceTransformer(str(folder), device="cpu")
    emb = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True,
                       normalize_embeddings=False)  # the model's own Normalize module applies
    n_params = sum(p.numel() for p in model.parameters())
    import sentence_transformers
    import torch
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT, sentences=np.array(SENTENCES), embeddings=emb.astype(np.float32),
        n_params=np.int64(n_params),
        versions=np.array([f"torch {torch.__version__}",
                           f"sentence-transformers {sentence_transformers.__version__}"]))
    print(f"{OUT}: {emb.shape} float32, norms {np.linalg.norm(emb, axis=1).min():.6f}.."
          f"{np.linalg.norm(emb, axis=1).max():.6f}, {n_params:,} parameters (PyTorch)")


if __name__ == "__main__":
    main()
