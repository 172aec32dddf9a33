"""Tokenizers for a GPT: characters, and byte-level byte-pair encoding (BPE) written from scratch.

Used in chapters: 07, 11.

* :class:`CharTokenizer`: one token per character, the vocabulary being the characters of a text
  (Karpathy's char-rnn and nanoGPT's ``shakespeare_char``).
* :func:`train_bpe` / :class:`BPE`: byte-pair encoding (Sennrich, Haddow & Birch 2016, *Neural
  Machine Translation of Rare Words with Subword Units*, arXiv:1508.07909, Algorithm 1), in the
  byte-level form of GPT-2 (Radford et al. 2019, *Language Models are Unsupervised Multitask
  Learners*, section 2.2): tokens start as the 256 byte values of the UTF-8 text, so every
  string, in any script, can be encoded and decodes back exactly; training then repeatedly merges
  the most frequent adjacent pair of tokens into a new token, ``256 + k`` for the ``k``-th merge.

Pre-tokenisation (GPT-2's). Before training and encoding, the text is cut into pieces by the
regular expression :data:`PRETOKENIZE_PATTERN`, and merges never cross a piece boundary: English
contractions (``'s``, ``'ll``...), a run of letters with at most one space before it (``" king"``),
a run of digits (same), a run of other symbols (same), and runs of white space (the last space
before a word is left to that word). The pattern is GPT-2's, written for Python's ``re``, which
has no ``\\p{L}``: ``[^\\W\\d_]`` is "a letter", ``\\d`` a digit. Pieces are cut, never changed:
their concatenation is the text. ``pattern=None`` skips this step (the whole text is one piece,
slow on long texts).

Training counts pairs the classic way: over the *distinct* pieces, each weighted by how often it
occurs, and after a merge only the pieces that held the merged pair are re-counted. Ties between
equally frequent pairs go to the smallest pair of ids, so training is deterministic.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from lmcourse.validation import check_ids, check_int

#: GPT-2's pre-tokenisation pattern, for Python's ``re`` (see the module docstring).
PRETOKENIZE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\w\s]|_)+|\s+(?!\S)|\s+"""
#: Token ids ``0..255`` are the byte values; merge ``k`` makes token ``N_BYTES + k``.
N_BYTES = 256


# ----------------------------------------------------------------------------------------------
# characters
# ----------------------------------------------------------------------------------------------
class CharTokenizer:
    """One token per character; token ids are the ranks of the characters in sorted order.

    >>> tok = CharTokenizer.from_text("to be or not")
    >>> tok.vocab_size, tok.encode("be").tolist(), tok.decode(tok.encode("not to"))
    (7, [1, 2], 'not to')

    Attributes:
        chars: the vocabulary, sorted; ``chars[i]`` is token ``i``.
    """

    def __init__(self, chars: Iterable[str]):
        """Build from the vocabulary ``chars`` (any iterable of 1-character strings).

        Raises:
            ValueError: an element is not a single character, or the vocabulary is empty.
        """
        chars = sorted(set(chars))
        bad = [c for c in chars if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise ValueError(f"the vocabulary must hold single characters, got {bad[:5]!r}")
        if not chars:
            raise ValueError("the vocabulary is empty; build it from a non-empty text")
        self.chars: tuple[str, ...] = tuple(chars)
        self._codes = np.array([ord(c) for c in chars], dtype=np.int64)   # sorted code points
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is every distinct character of ``text``.

        Raises:
            ValueError: ``text`` is not a non-empty ``str``.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        return cls(text)

    @property
    def vocab_size(self) -> int:
        """Number of tokens (distinct characters)."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``: int32 array of shape ``(len(text),)``.

        Raises:
            ValueError: ``text`` is not a ``str``, or holds a character outside the vocabulary
                (the message names it, its position and code point, and how to fix it: build the
                tokenizer from a text holding every character, e.g. all splits together, or
                remove/replace the character first).
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.searchsorted(self._codes, codes)
        ids_clipped = np.minimum(ids, len(self._codes) - 1)
        unknown = self._codes[ids_clipped] != codes
        if unknown.any():
            pos = int(np.argmax(unknown))
            char = text[pos]
            raise ValueError(
                f"character {char!r} (U+{ord(char):04X}) at position {pos} is not in the vocabulary "
                f"of {self.vocab_size} characters ({int(unknown.sum())} unknown character(s) in "
                "all); build the tokenizer from a text that holds every character "
                "(e.g. CharTokenizer.from_text(train + val + test)), or remove or replace it")
        return ids_clipped.astype(np.int32)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text of the token ids ``ids`` (any shape, flattened).

        Raises:
            ValueError: an id is not an integer in ``[0, vocab_size)``.
        """
        ids = check_ids("ids", ids, self.vocab_size, size_name="vocab_size")
        return "".join(self.chars[i] for i in ids.reshape(-1).tolist())


# ----------------------------------------------------------------------------------------------
# byte-pair encoding
# ----------------------------------------------------------------------------------------------
def pretokenize(text: str, pattern: str | None = PRETOKENIZE_PATTERN) -> list[str]:
    """Cut ``text`` into pieces by ``pattern``; the pieces concatenate back to ``text``.

    >>> pretokenize("Thou art'st 2 fools!  Go")
    ['Thou', ' art', "'s", 't', ' 2', ' fools', '!', ' ', ' Go']

    Raises:
        ValueError: the pattern skipped some characters (it must match every character).
    """
    if pattern is None:
        return [text] if text else []
    pieces = re.findall(pattern, text)
    if sum(map(len, pieces)) != len(text):
        raise ValueError(f"the pre-tokenisation pattern {pattern!r} skips characters of the text; "
                         "it must match every character (end it with alternatives such as `|\\s+|.`)")
    return pieces


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``ids``, left to right, by ``new_id``.

    >>> merge_pair([1, 2, 2, 2, 1, 2], (2, 2), 9)
    [1, 9, 2, 1, 2]
    """
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _pairs(ids: list[int]) -> Iterable[tuple[int, int]]:
    return zip(ids, ids[1:], strict=False)


@dataclass(frozen=True)
class BPE:
    """A trained byte-level BPE tokenizer (see the module docstring).

    Attributes:
        merges: ``merges[k] = (a, b)``: token ``256 + k`` is token ``a`` followed by token ``b``;
            applied in this order.
        pattern: the pre-tokenisation regular expression (``None``: none).
        vocab: ``vocab[i]`` is the bytes of token ``i`` (derived from ``merges``).
    """

    merges: tuple[tuple[int, int], ...]
    pattern: str | None = PRETOKENIZE_PATTERN
    vocab: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _ranks: dict[tuple[int, int], int] = field(init=False, repr=False, compare=False)
    _cache: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        vocab = [bytes([b]) for b in range(N_BYTES)]
        for k, (a, b) in enumerate(self.merges):
            if not (0 <= a < N_BYTES + k and 0 <= b < N_BYTES + k):
                raise ValueError(f"merge {k} = {(a, b)} uses a token that does not exist yet "
                                 f"(ids must be < {N_BYTES + k})")
            vocab.append(vocab[a] + vocab[b])
        object.__setattr__(self, "vocab", tuple(vocab))
        object.__setattr__(self, "_ranks", {pair: k for k, pair in enumerate(self.merges)})
        object.__setattr__(self, "_cache", {})

    @property
    def vocab_size(self) -> int:
        """``256 + len(merges)``."""
        return N_BYTES + len(self.merges)

    def encode_piece(self, piece: str) -> tuple[int, ...]:
        """Token ids of one pre-tokenised piece: start from its UTF-8 bytes, then apply the
        merges in training order (always the lowest-ranked pair present next), as GPT-2 does."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        ids = list(piece.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(_pairs(ids), key=lambda p: self._ranks.get(p, len(self.merges)))
            rank = self._ranks.get(pair)
            if rank is None:            # no pair of this piece was ever merged
                break
            ids = merge_pair(ids, pair, N_BYTES + rank)
        out = tuple(ids)
        self._cache[piece] = out
        return out

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text``: int32 array of shape ``(n_tokens,)``; any string can be encoded.

        Raises:
            ValueError: ``text`` is not a ``str``.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        for piece in pretokenize(text, self.pattern):
            ids.extend(self.encode_piece(piece))
        return np.array(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text of token ids ``ids`` (any shape, flattened): their bytes joined, decoded as
        UTF-8. ``decode(encode(s)) == s`` for every string; a sequence cut inside a multi-byte
        character (e.g. a model's sample) decodes that character as U+FFFD, as GPT-2 does.

        Raises:
            ValueError: an id is not an integer in ``[0, vocab_size)``.
        """
        ids = check_ids("ids", ids, self.vocab_size, size_name="vocab_size")
        return b"".join(self.vocab[i] for i in ids.reshape(-1).tolist()).decode("utf-8", errors="replace")

    def token_strings(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """Each token of ``ids`` as text (bytes decoded with U+FFFD for partial characters), to show
        how a text was cut.

        Raises:
            ValueError: an id is not an integer in ``[0, vocab_size)``.
        """
        ids = check_ids("ids", ids, self.vocab_size, size_name="vocab_size")
        return [self.vocab[i].decode("utf-8", errors="replace") for i in ids.reshape(-1).tolist()]


def train_bpe(text: str, vocab_size: int, pattern: str | None = PRETOKENIZE_PATTERN) -> BPE:
    """Learn ``vocab_size - 256`` merges on ``text`` (Sennrich et al. 2016, Algorithm 1, byte-level).

    1. Cut ``text`` into pieces (:func:`pretokenize`) and count each distinct piece.
    2. Write each distinct piece as its UTF-8 bytes; count every adjacent pair of tokens, each
       occurrence weighted by the piece's count.
    3. Repeat: merge the most frequent pair (ties: the smallest pair of ids) into a new token, in
       every piece that holds it, and update the counts of those pieces only.

    Args:
        text: the training text.
        vocab_size: tokens wanted, at least 256 (the bytes); e.g. 512 or 1024.
        pattern: pre-tokenisation pattern (default GPT-2's, :data:`PRETOKENIZE_PATTERN`).

    Returns:
        :class:`BPE` with ``vocab_size`` tokens.

    Raises:
        ValueError: ``text`` is not a ``str``; ``vocab_size`` is not an integer >= 256; or the
            text has fewer distinct pairs than merges wanted (the message says how many merges
            it allowed: lower ``vocab_size`` or give more text).
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    vocab_size = check_int("vocab_size", vocab_size, N_BYTES)
    piece_counts = Counter(pretokenize(text, pattern))
    words = [list(piece.encode("utf-8")) for piece in piece_counts]   # distinct pieces, as ids
    counts = list(piece_counts.values())

    pair_counts: Counter[tuple[int, int]] = Counter()
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)  # pair → pieces holding it
    for w, ids in enumerate(words):
        for pair in _pairs(ids):
            pair_counts[pair] += counts[w]
            where[pair].add(w)

    merges: list[tuple[int, int]] = []
    while len(merges) < vocab_size - N_BYTES:
        if not pair_counts:
            raise ValueError(f"the text allows only {len(merges)} merges (no adjacent pair of "
                             f"tokens is left); use vocab_size <= {N_BYTES + len(merges)} or a "
                             "longer text")
        top = max(pair_counts.values())
        best = min(p for p, c in pair_counts.items() if c == top)
        new_id = N_BYTES + len(merges)
        merges.append(best)
        for w in where.pop(best):
            old = words[w]
            for pair in _pairs(old):              # forget this piece's pairs ...
                pair_counts[pair] -= counts[w]
                if pair_counts[pair] == 0:
                    del pair_counts[pair]
            words[w] = merge_pair(old, best, new_id)
            for pair in _pairs(words[w]):         # ... and count them again after the merge
                pair_counts[pair] += counts[w]
                where[pair].add(w)
        pair_counts.pop(best, None)
    return BPE(tuple(merges), pattern)
